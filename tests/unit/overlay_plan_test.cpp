#include <gtest/gtest.h>

#include "overlay/plan.hpp"

using namespace kr::overlay;
using json = nlohmann::json;

namespace {

uint32_t ip(const char* s) { return *parse_ipv4(s); }

DesiredOverlay desired(int id = 1) {
  auto cfg = parse_subnet_config("10.128.0.0/12/6/14");
  json o{{"runner_id", id},
         {"overlay_subnet", cfg.runner_subnet(id).str()},
         {"overlay_gateway", format_ipv4(cfg.runner_gateway(id))},
         {"host_overlay_ip", "10.128.0.1"},
         {"host_physical_ip", "198.51.100.1"},
         {"overlay_network_cidr", "10.128.0.0/12"},
         {"host_ip_on_runner_subnet", format_ipv4(cfg.host_ip_on_runner_subnet(id))}};
  DesiredOverlay d;
  d.alloc = parse_allocation(o, 100, std::nullopt);
  d.local_ip = ip("198.51.100.11");
  return d;
}

}  // namespace

TEST(OverlayPlan, VxlanComparison) {
  auto want = desired_vxlan(desired());
  EXPECT_EQ(want.vni, 101u);
  EXPECT_EQ(want.remote, ip("198.51.100.1"));
  EXPECT_EQ(want.local, ip("198.51.100.11"));
  EXPECT_EQ(want.port, 4789);
  EXPECT_FALSE(want.learning);
  EXPECT_TRUE(vxlan_differences(want, want).empty());
  auto other = desired_vxlan(desired(3));
  auto diffs = vxlan_differences(want, other);
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_EQ(diffs[0], "VNI 101 -> 103");
  VxlanAttrs stale = want;
  stale.port = 8472;
  stale.remote = ip("127.0.0.1");
  stale.learning = true;
  EXPECT_EQ(vxlan_differences(stale, want).size(), 3u);
}

TEST(OverlayPlan, BridgeAddresses) {
  IfAddr want{ip("10.128.64.1"), 18};
  auto same = plan_bridge_addresses({want}, want);
  EXPECT_FALSE(same.add);
  EXPECT_TRUE(same.remove.empty());
  IfAddr old{ip("10.128.192.1"), 18}, wrong_prefix{ip("10.128.64.1"), 24};
  auto plan = plan_bridge_addresses({old, wrong_prefix}, want);
  EXPECT_TRUE(plan.add);
  EXPECT_EQ(plan.remove, (std::vector<IfAddr>{old, wrong_prefix}));
  EXPECT_TRUE(plan_bridge_addresses({}, want).add);
}

TEST(OverlayPlan, Routes) {
  auto want = desired_route(desired());
  EXPECT_EQ(want.str(), "10.128.0.0/12 via 10.128.64.254");
  auto ok = plan_routes({want}, want);
  EXPECT_FALSE(ok.add);
  EXPECT_TRUE(ok.remove.empty());
  RouteEntry old_gw{want.dst, ip("10.128.192.254")};
  RouteEntry old_cidr{*parse_cidr("10.0.0.0/8"), ip("10.128.64.254")};
  auto plan = plan_routes({old_gw, old_cidr, old_gw}, want);
  EXPECT_TRUE(plan.add);
  EXPECT_EQ(plan.remove, (std::vector<RouteEntry>{old_gw, old_cidr}));
}

TEST(OverlayPlan, RulesGoIntoDockerUserWhenItExists) {
  auto rules = desired_rules(desired(), true);
  ASSERT_EQ(rules.size(), 4u);
  using V = std::vector<std::string>;
  EXPECT_EQ(rules[0].chain, "INPUT");
  EXPECT_EQ(rules[0].spec, (V{"-p", "udp", "--dport", "4789", "!", "-s", "198.51.100.1", "-m", "comment",
                              "--comment", "kohakuriver-overlay", "-j", "DROP"}));
  EXPECT_EQ(rules[0].insert_at, 1);
  EXPECT_EQ(rules[1].chain, "DOCKER-USER");
  EXPECT_EQ(rules[1].spec, (V{"-s", "10.128.0.0/12", "-m", "comment", "--comment", "kohakuriver-overlay", "-j", "ACCEPT"}));
  EXPECT_EQ(rules[2].chain, "DOCKER-USER");
  EXPECT_EQ(rules[2].insert_at, 2);
  EXPECT_EQ(rules[3].table, "nat");
  EXPECT_EQ(rules[3].str(),
            "-t nat -A POSTROUTING -s 10.128.0.0/12 ! -d 10.128.0.0/12 -m comment --comment kohakuriver-overlay -j "
            "MASQUERADE");
  auto plain = desired_rules(desired(), false);
  EXPECT_EQ(plain[1].chain, "FORWARD");
  EXPECT_EQ(plain[1].str(), "-t filter -I FORWARD 1 -s 10.128.0.0/12 -m comment --comment kohakuriver-overlay -j ACCEPT");
}

TEST(OverlayPlan, FindsOurRulesInAListing) {
  const char* listing =
      "-N DOCKER-USER\n"
      "-A DOCKER-USER -s 10.128.0.0/12 -m comment --comment kohakuriver-overlay -j ACCEPT\n"
      "-A DOCKER-USER -d 10.128.0.0/12 -m comment --comment \"kohakuriver-overlay\" -j ACCEPT\n"
      "-A DOCKER-USER -s 10.0.0.0/8 -m comment --comment \"someone else's rule\" -j ACCEPT\n"
      "-A DOCKER-USER -j RETURN\n"
      "-A FORWARD -s 10.128.0.0/12 -m comment --comment kohakuriver-overlay -j ACCEPT\n";
  auto ours = our_rules_in_listing(listing, "DOCKER-USER");
  ASSERT_EQ(ours.size(), 2u);
  EXPECT_EQ(ours[0], (std::vector<std::string>{"-s", "10.128.0.0/12", "-m", "comment", "--comment",
                                               "kohakuriver-overlay", "-j", "ACCEPT"}));
  EXPECT_EQ(ours[1][1], "10.128.0.0/12");
  EXPECT_EQ(split_rule_line("-A X -m comment --comment \"a b \\\"c\\\"\" -j ACCEPT")[5], "a b \"c\"");
  EXPECT_TRUE(our_rules_in_listing("", "INPUT").empty());
}

TEST(OverlayPlan, UpstreamRulesForCleanup) {
  auto r = upstream_rules(*parse_cidr("10.128.0.0/12"));
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[2].str(), "-t nat -A POSTROUTING -s 10.128.0.0/12 ! -d 10.128.0.0/12 -j MASQUERADE");
}

TEST(OverlayPlan, DockerNetworkKeepsTheHostAddressOutOfIpam) {  // O4
  auto d = desired();
  auto body = overlay_network_create_body(d);
  EXPECT_EQ(body["Name"], "kohakuriver-overlay");
  EXPECT_EQ(body["Options"]["com.docker.network.bridge.name"], "kohaku-overlay");
  EXPECT_EQ(body["Options"]["com.docker.network.driver.mtu"], "1450");
  EXPECT_EQ(body["Options"]["com.docker.network.bridge.enable_ip_masquerade"], "false");
  const auto& pool = body["IPAM"]["Config"][0];
  EXPECT_EQ(pool["Subnet"], "10.128.64.0/18");
  EXPECT_EQ(pool["Gateway"], "10.128.64.1");
  EXPECT_EQ(pool["AuxiliaryAddresses"]["kohakuriver-host"], "10.128.64.254");

  // What `docker network inspect` returns for it: nothing to change.
  json inspect{{"Name", "kohakuriver-overlay"}, {"Options", body["Options"]}, {"IPAM", body["IPAM"]},
               {"Containers", json::object()}};
  EXPECT_TRUE(overlay_network_differences(inspect, d).empty());
  // Another allocation, a missing aux address, upstream's network: rebuild.
  EXPECT_EQ(overlay_network_differences(inspect, desired(3)).size(), 3u);  // subnet, gateway, aux
  json upstream = inspect;
  upstream["IPAM"]["Config"][0].erase("AuxiliaryAddresses");
  EXPECT_EQ(overlay_network_differences(upstream, d).size(), 1u);
  // Upstream's network is kept while containers use it (issue 18); nothing
  // else is excused.
  EXPECT_TRUE(lacks_only_host_reservation(upstream, d));
  EXPECT_FALSE(lacks_only_host_reservation(inspect, d));
  EXPECT_FALSE(lacks_only_host_reservation(upstream, desired(3)));
  json other_bridge = inspect;
  other_bridge["Options"]["com.docker.network.bridge.name"] = "br-123";
  EXPECT_FALSE(overlay_network_differences(other_bridge, d).empty());
  EXPECT_FALSE(overlay_network_differences(json::object(), d).empty());
  EXPECT_FALSE(lacks_only_host_reservation(other_bridge, d));
  json upstream_other_bridge = upstream;
  upstream_other_bridge["Options"]["com.docker.network.bridge.name"] = "br-123";
  EXPECT_FALSE(lacks_only_host_reservation(upstream_other_bridge, d));
}

TEST(OverlayPlan, ContainerNetworkChoice) {  // O12
  auto d = desired();
  // Overlay down: default network, unless the task needs an overlay address.
  auto def = choose_container_network(std::nullopt, "kohakuriver-overlay", "no VXLAN", std::nullopt);
  EXPECT_FALSE(def.overlay);
  EXPECT_FALSE(choose_container_network(std::nullopt, "kohakuriver-overlay", "x", std::string()).overlay);
  try {
    choose_container_network(std::nullopt, "kohakuriver-overlay", "kernel has no VXLAN", std::string("10.128.64.7"));
    FAIL();
  } catch (const NetworkUnavailable& e) {
    EXPECT_EQ(std::string(e.what()),
              "reserved_ip 10.128.64.7 needs the VXLAN overlay network, which is not available on this node: kernel "
              "has no VXLAN");
  }
  // Overlay up.
  auto net = choose_container_network(d.alloc, "kohakuriver-overlay", "", std::nullopt);
  EXPECT_TRUE(net.overlay);
  EXPECT_EQ(net.name, "kohakuriver-overlay");
  EXPECT_EQ(net.gateway, "10.128.64.1");
  EXPECT_TRUE(choose_container_network(d.alloc, "kohakuriver-overlay", "", std::string("10.128.64.7")).overlay);
  EXPECT_TRUE(choose_container_network(d.alloc, "kohakuriver-overlay", "", std::string("10.128.127.253")).overlay);
  for (const char* bad : {"10.128.128.7", "10.128.64.1", "10.128.64.254", "10.128.64.0", "10.128.127.255", "nope"})
    EXPECT_THROW(choose_container_network(d.alloc, "kohakuriver-overlay", "", std::string(bad)), NetworkUnavailable)
        << bad;
}
