#include <gtest/gtest.h>

#include "overlay/subnet.hpp"

using namespace kr::overlay;
using json = nlohmann::json;

namespace {
uint32_t ip(const char* s) { return *parse_ipv4(s); }
}  // namespace

TEST(OverlaySubnet, ParsesStrictDottedQuads) {
  EXPECT_EQ(parse_ipv4("10.128.64.1"), 0x0A804001u);
  EXPECT_EQ(format_ipv4(0x0A804001u), "10.128.64.1");
  for (const char* bad : {"", "10.0.0", "10.0.0.256", "10.0.0.01", "a.b.c.d", "10.0.0.1 ", "1.2.3.4.5"})
    EXPECT_FALSE(parse_ipv4(bad)) << bad;
  EXPECT_TRUE(is_loopback(ip("127.0.0.1")));
  EXPECT_TRUE(is_loopback(ip("127.255.0.9")));
  EXPECT_FALSE(is_loopback(ip("128.0.0.1")));
}

TEST(OverlaySubnet, ParsesCidrs) {
  auto n = parse_cidr("10.128.64.0/18", true);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->str(), "10.128.64.0/18");
  EXPECT_TRUE(n->contains(ip("10.128.127.255")));
  EXPECT_FALSE(n->contains(ip("10.128.128.0")));
  EXPECT_FALSE(parse_cidr("10.128.64.1/18", true));
  EXPECT_EQ(parse_cidr("10.128.64.1/18")->str(), "10.128.64.0/18");
  EXPECT_FALSE(parse_cidr("10.0.0.0/33"));
  EXPECT_FALSE(parse_cidr("10.0.0.0"));
  EXPECT_TRUE(Ipv4Net({ip("10.128.0.0"), 12}).contains(*parse_cidr("10.128.64.0/18")));
}

TEST(OverlaySubnet, DefaultLayoutMatchesTheHost) {
  auto c = parse_subnet_config("10.128.0.0/12/6/14");
  EXPECT_EQ(c.overlay_cidr().str(), "10.128.0.0/12");
  EXPECT_EQ(c.max_runners(), 63);
  EXPECT_EQ(c.runner_subnet(1).str(), "10.128.64.0/18");
  EXPECT_EQ(format_ipv4(c.runner_gateway(1)), "10.128.64.1");
  EXPECT_EQ(format_ipv4(c.host_ip_on_runner_subnet(1)), "10.128.64.254");
  EXPECT_EQ(format_ipv4(c.host_overlay_ip()), "10.128.0.1");
  EXPECT_EQ(c.runner_subnet(2).str(), "10.128.128.0/18");
  EXPECT_EQ(c.runner_subnet(63).str(), "10.143.192.0/18");
  EXPECT_EQ(format_ipv4(c.host_ip_on_runner_subnet(63)), "10.143.192.254");
}

TEST(OverlaySubnet, OtherLayoutsFromTheSpec) {
  auto c = parse_subnet_config("10.0.0.0/8/8/16");
  EXPECT_EQ(c.runner_subnet(1).str(), "10.1.0.0/16");
  EXPECT_EQ(c.runner_subnet(255).str(), "10.255.0.0/16");
  auto d = parse_subnet_config(" 172.16.0.0/12/4/16 ");
  EXPECT_EQ(d.runner_subnet(1).str(), "172.17.0.0/16");
  EXPECT_EQ(format_ipv4(d.host_ip_on_runner_subnet(1)), "172.17.0.254");
  EXPECT_EQ(parse_subnet_config("10.0.0.0/16/8/8").runner_subnet(3).str(), "10.0.3.0/24");
  // Host bits of BASE are cleared, like the host does.
  EXPECT_EQ(parse_subnet_config("10.130.5.7/12/6/14").overlay_cidr().str(), "10.128.0.0/12");
}

TEST(OverlaySubnet, RejectsWhatTheHostRejects) {
  for (const char* bad : {"10.0.0.0/8/8/8", "10.0.0.0/24/0/8", "10.0.0.0/8/17/7", "10.0.0.0/12/6", "x/12/6/14",
                          "10.0.0.0/a/6/14", "10.0.0.0/25/1/6"})
    EXPECT_THROW(parse_subnet_config(bad), std::invalid_argument) << bad;
}

namespace {
json reply_overlay() {
  return json::parse(R"({"runner_id": 1, "overlay_subnet": "10.128.64.0/18", "overlay_gateway": "10.128.64.1",
    "host_overlay_ip": "10.128.0.1", "host_physical_ip": "192.0.2.1",
    "overlay_network_cidr": "10.128.0.0/12", "host_ip_on_runner_subnet": "10.128.64.254"})");
}
}  // namespace

TEST(OverlayAllocation, ParsesTheHostsReply) {
  auto a = parse_allocation(reply_overlay(), 100, std::nullopt);
  EXPECT_EQ(a.runner_id, 1);
  EXPECT_EQ(a.subnet.str(), "10.128.64.0/18");
  EXPECT_EQ(format_ipv4(a.gateway), "10.128.64.1");
  EXPECT_EQ(format_ipv4(a.host_physical_ip), "192.0.2.1");
  EXPECT_EQ(a.overlay_cidr.str(), "10.128.0.0/12");
  EXPECT_EQ(format_ipv4(a.host_ip_on_subnet), "10.128.64.254");
  EXPECT_EQ(a.vni, 101u);
  EXPECT_EQ(a.to_json()["overlay_subnet"], "10.128.64.0/18");
  EXPECT_EQ(parse_allocation(reply_overlay(), 5000, std::nullopt).vni, 5001u);
}

TEST(OverlayAllocation, ComputesTheHostAddressWhenAbsent) {  // O3
  auto o = reply_overlay();
  o.erase("host_ip_on_runner_subnet");
  EXPECT_EQ(format_ipv4(parse_allocation(o, 100, std::nullopt).host_ip_on_subnet), "10.128.64.254");
  o["host_ip_on_runner_subnet"] = "";
  EXPECT_EQ(format_ipv4(parse_allocation(o, 100, std::nullopt).host_ip_on_subnet), "10.128.64.254");
}

TEST(OverlayAllocation, RefusesLoopbackHostAddress) {  // O9
  auto o = reply_overlay();
  o["host_physical_ip"] = "127.0.0.1";
  try {
    parse_allocation(o, 100, std::nullopt);
    FAIL() << "accepted a loopback host_physical_ip";
  } catch (const AllocationError& e) {
    EXPECT_NE(std::string(e.what()).find("HOST_REACHABLE_ADDRESS"), std::string::npos) << e.what();
  }
  o["host_physical_ip"] = "0.0.0.0";
  EXPECT_THROW(parse_allocation(o, 100, std::nullopt), AllocationError);
}

TEST(OverlayAllocation, FallsBackToTheConfiguredCidr) {
  auto o = reply_overlay();
  o.erase("overlay_network_cidr");
  EXPECT_THROW(parse_allocation(o, 100, std::nullopt), AllocationError);
  auto a = parse_allocation(o, 100, parse_cidr("10.128.0.0/12"));
  EXPECT_EQ(a.overlay_cidr.str(), "10.128.0.0/12");
}

TEST(OverlayAllocation, RejectsInconsistentAllocations) {
  struct Case {
    const char* key;
    json value;
  };
  for (const auto& c : std::vector<Case>{{"runner_id", "1"},
                                         {"runner_id", 0},
                                         {"overlay_subnet", "10.128.64.1/18"},
                                         {"overlay_subnet", "nonsense"},
                                         {"overlay_gateway", "10.128.128.1"},
                                         {"overlay_gateway", "10.128.64.0"},
                                         {"host_physical_ip", "host.example"},
                                         {"host_physical_ip", nullptr},
                                         {"overlay_network_cidr", "10.200.0.0/16"},
                                         {"host_ip_on_runner_subnet", "10.128.64.1"},
                                         {"host_ip_on_runner_subnet", "10.129.0.254"}}) {
    auto o = reply_overlay();
    o[c.key] = c.value;
    EXPECT_THROW(parse_allocation(o, 100, std::nullopt), AllocationError) << c.key << "=" << c.value;
  }
  EXPECT_THROW(parse_allocation(json::array(), 100, std::nullopt), AllocationError);
  EXPECT_THROW(parse_allocation(reply_overlay(), 0xFFFFFF, std::nullopt), AllocationError);  // VNI > 24 bits
}
