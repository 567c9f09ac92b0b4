#include <gtest/gtest.h>

#include "access/access_setup.hpp"
#include "api/access_policy.hpp"
#include "common/ip_network.hpp"
#include "config/config.hpp"

using kr::api::AccessPolicy;
using kr::api::AccessRules;
using kr::api::classify_endpoint;
using kr::api::decide_access;
using kr::api::EndpointClass;
using kr::api::HttpRequest;
using kr::net::parse_ip;
using kr::net::parse_network;

namespace {

kr::net::IpNetwork N(const char* s) {
  auto n = parse_network(s);
  EXPECT_TRUE(n) << s;
  return n.value_or(kr::net::IpNetwork{});
}

AccessRules default_rules() {
  AccessRules r;
  r.workload_networks = {{N("172.30.0.0/16"), "DOCKER_NETWORK_SUBNET"}, {N("10.200.0.0/24"), "VM_BRIDGE_SUBNET"}};
  return r;
}

bool allowed(const AccessRules& r, const char* ip, const char* method, const char* path) {
  return decide_access(r, parse_ip(ip), classify_endpoint(method, path)).allowed;
}

}  // namespace

TEST(IpNetwork, ParsesAndContains) {
  EXPECT_TRUE(N("10.0.0.0/8").contains(*parse_ip("10.255.1.2")));
  EXPECT_FALSE(N("10.0.0.0/8").contains(*parse_ip("11.0.0.1")));
  EXPECT_EQ(N("10.1.2.3/8").to_string(), "10.0.0.0/8");  // host bits cleared
  EXPECT_EQ(N("10.1.2.3").to_string(), "10.1.2.3/32");
  EXPECT_TRUE(N("0.0.0.0/0").contains(*parse_ip("8.8.8.8")));
  EXPECT_TRUE(N("fd00::/8").contains(*parse_ip("fd12::1")));
  EXPECT_FALSE(N("fd00::/8").contains(*parse_ip("10.0.0.1")));
  // A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6.
  EXPECT_TRUE(N("172.30.0.0/16").contains(*parse_ip("::ffff:172.30.0.7")));
  EXPECT_EQ(parse_ip("::ffff:172.30.0.7")->to_string(), "172.30.0.7");
  for (const char* bad : {"", "10.0.0.0/33", "10.0.0/8", "10.0.0.0/", "10.0.0.0/8x", "abc", "1.2.3.4.5", "::1/129"})
    EXPECT_FALSE(parse_network(bad)) << bad;
}

TEST(IpNetwork, Loopback) {
  EXPECT_TRUE(kr::net::is_loopback(*parse_ip("127.0.0.1")));
  EXPECT_TRUE(kr::net::is_loopback(*parse_ip("127.8.9.1")));
  EXPECT_TRUE(kr::net::is_loopback(*parse_ip("::1")));
  EXPECT_TRUE(kr::net::is_loopback(*parse_ip("::ffff:127.0.0.1")));
  EXPECT_FALSE(kr::net::is_loopback(*parse_ip("10.0.0.1")));
  EXPECT_FALSE(kr::net::is_loopback(*parse_ip("::2")));
}

TEST(AccessPolicy, ClassifiesEndpoints) {
  EXPECT_EQ(classify_endpoint("GET", "/healthz"), EndpointClass::Health);
  EXPECT_EQ(classify_endpoint("GET", "/metrics"), EndpointClass::Metrics);
  EXPECT_EQ(classify_endpoint("GET", "/ws/tunnel/kohakuriver-task-1"), EndpointClass::Tunnel);
  EXPECT_EQ(classify_endpoint("POST", "/api/vps/12/vm-heartbeat"), EndpointClass::VmAgent);
  EXPECT_EQ(classify_endpoint("POST", "/api/vps/12/vm-phone-home"), EndpointClass::VmAgent);
  for (auto [m, p] : std::initializer_list<std::pair<const char*, const char*>>{
           {"POST", "/api/execute"}, {"POST", "/api/kill"}, {"POST", "/api/pause"}, {"POST", "/api/resume"},
           {"POST", "/api/vps/create"}, {"POST", "/api/vps/stop/3"}, {"GET", "/api/fs/3/list"},
           {"POST", "/api/docker/sync/x"}, {"GET", "/ws/task/3/terminal"}, {"GET", "/ws/forward/c/22"},
           {"GET", "/ws/fs/3/watch"}, {"GET", "/api/vps/snapshots/3"}, {"POST", "/api/vps/3/vm-restart"},
           {"GET", "/api/vps/vm-instances"}, {"GET", "/api/vps/12/vm-heartbeat"}, {"GET", "/healthz/"},
           {"GET", "/ws/tunnel/"}, {"GET", "/ws/tunnel/a/b"}, {"GET", "/nonexistent"}, {"GET", "/"}})
    EXPECT_EQ(classify_endpoint(m, p), EndpointClass::Control) << m << " " << p;
}

TEST(AccessPolicy, ContainersReachOnlyHealthTunnelAndAgent) {
  auto r = default_rules();
  const char* container = "172.30.0.5";
  EXPECT_TRUE(allowed(r, container, "GET", "/healthz"));
  EXPECT_TRUE(allowed(r, container, "GET", "/ws/tunnel/kohakuriver-task-5"));
  EXPECT_TRUE(allowed(r, "10.200.0.10", "POST", "/api/vps/7/vm-heartbeat"));
  EXPECT_FALSE(allowed(r, container, "POST", "/api/execute"));
  EXPECT_FALSE(allowed(r, container, "GET", "/metrics"));
  EXPECT_FALSE(allowed(r, container, "GET", "/ws/forward/kohakuriver-vps-1/22"));
  EXPECT_FALSE(allowed(r, "10.200.0.10", "POST", "/api/vps/create"));
  EXPECT_FALSE(allowed(r, "::ffff:172.30.9.9", "POST", "/api/kill"));
  auto d = decide_access(r, parse_ip(container), EndpointClass::Control);
  EXPECT_NE(d.setting.find("DOCKER_NETWORK_SUBNET"), std::string::npos) << d.setting;
}

TEST(AccessPolicy, OthersAsUpstreamUnlessListed) {
  auto r = default_rules();
  EXPECT_TRUE(allowed(r, "192.168.1.10", "POST", "/api/execute"));
  EXPECT_TRUE(allowed(r, "192.168.1.10", "GET", "/metrics"));
  EXPECT_TRUE(allowed(r, "127.0.0.1", "POST", "/api/execute"));

  r.api_allowed = {N("192.168.1.10"), N("10.9.0.0/16")};
  EXPECT_TRUE(allowed(r, "192.168.1.10", "POST", "/api/execute"));
  EXPECT_TRUE(allowed(r, "10.9.3.3", "POST", "/api/execute"));
  EXPECT_FALSE(allowed(r, "192.168.1.11", "POST", "/api/execute"));
  EXPECT_TRUE(allowed(r, "192.168.1.11", "GET", "/healthz"));
  EXPECT_TRUE(allowed(r, "127.0.0.1", "POST", "/api/execute"));  // loopback always
  EXPECT_TRUE(allowed(r, "::1", "POST", "/api/execute"));
  // /metrics follows the API list unless it has its own.
  EXPECT_FALSE(allowed(r, "192.168.1.11", "GET", "/metrics"));
  EXPECT_TRUE(allowed(r, "10.9.3.3", "GET", "/metrics"));
  r.metrics_allowed = {N("192.168.1.11")};
  EXPECT_TRUE(allowed(r, "192.168.1.11", "GET", "/metrics"));
  EXPECT_FALSE(allowed(r, "10.9.3.3", "GET", "/metrics"));
  EXPECT_FALSE(allowed(r, "192.168.1.11", "POST", "/api/execute"));
  // A listed address inside a container network is still a container.
  r.api_allowed.push_back(N("172.30.0.0/16"));
  EXPECT_FALSE(allowed(r, "172.30.0.5", "POST", "/api/execute"));
  // No parsable peer: an ordinary, unlisted client.
  EXPECT_FALSE(decide_access(r, std::nullopt, EndpointClass::Control).allowed);
  EXPECT_TRUE(decide_access(r, std::nullopt, EndpointClass::Health).allowed);
}

TEST(AccessPolicy, CheckAnswersFastApi403AndLearnsNetworks) {
  AccessPolicy p(default_rules());
  HttpRequest req;
  req.method = "POST";
  req.path = "/api/execute";
  req.remote_ip = "172.31.0.4";
  EXPECT_FALSE(p.check(req));
  EXPECT_TRUE(p.add_workload_networks({{N("172.31.0.0/16"), "Docker network kohakuriver-net"}}));
  EXPECT_FALSE(p.add_workload_networks({{N("172.31.0.0/16"), "again"}}));
  auto res = p.check(req);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_EQ(nlohmann::json::parse(res->body).at("detail"),
            "Forbidden: containers and VMs cannot use the runner's control API");
  EXPECT_TRUE(p.check(req));  // still refused the second time (only the log is once)
  EXPECT_GE(p.describe().size(), 3u);
}

TEST(AccessPolicy, RulesFromConfig) {
  kr::config::RunnerConfig cfg;
  auto r = kr::access::access_rules_from_config(cfg);
  ASSERT_EQ(r.workload_networks.size(), 2u);  // overlay disabled by default
  EXPECT_EQ(r.workload_networks[0].network.to_string(), "172.30.0.0/16");
  EXPECT_EQ(r.workload_networks[1].network.to_string(), "10.200.0.0/24");
  cfg.overlay_enabled = true;
  cfg.api_allowed_clients = {"10.0.0.1", "10.1.0.0/16"};
  r = kr::access::access_rules_from_config(cfg);
  ASSERT_EQ(r.workload_networks.size(), 3u);
  EXPECT_EQ(r.workload_networks[2].network.to_string(), "10.128.0.0/12");
  EXPECT_EQ(r.workload_networks[2].source, "OVERLAY_SUBNET");
  ASSERT_EQ(r.api_allowed.size(), 2u);
  EXPECT_TRUE(r.metrics_allowed.empty());
}

TEST(AccessPolicy, IpamSubnetsFromDockerInspect) {
  auto j = nlohmann::json::parse(R"({"Name":"kohakuriver-net","IPAM":{"Driver":"default","Config":[
      {"Subnet":"172.30.0.0/16","Gateway":"172.30.0.1"},{"Subnet":"fd00:1::/64"},{"Gateway":"x"}]}})");
  auto nets = kr::access::ipam_networks(j, "Docker network kohakuriver-net");
  ASSERT_EQ(nets.size(), 2u);
  EXPECT_EQ(nets[0].network.to_string(), "172.30.0.0/16");
  EXPECT_EQ(nets[1].network.to_string(), "fd00:1::/64");
  EXPECT_TRUE(kr::access::ipam_networks(nlohmann::json::parse(R"({"IPAM":null})"), "x").empty());
}

TEST(AccessPolicy, ConfigRejectsBadClientEntries) {
  auto ok = kr::config::parse_config_text("API_ALLOWED_CLIENTS = [\"10.0.0.1\", \"10.0.0.0/8\"]\n", "t.py");
  EXPECT_EQ(ok.config.api_allowed_clients.size(), 2u);
  try {
    kr::config::parse_config_text("METRICS_ALLOWED_CLIENTS = [\"10.0.0.0/40\"]\n", "t.py");
    FAIL() << "accepted a bad CIDR";
  } catch (const kr::config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("METRICS_ALLOWED_CLIENTS[0]"), std::string::npos) << e.what();
  }
}

// Issue 16 item 3: IPv6 callers are classified by where they arrived.
namespace {

kr::net::NetInterface iface(const char* name, unsigned index, std::vector<std::pair<const char*, int>> addrs) {
  kr::net::NetInterface i;
  i.name = name;
  i.index = index;
  for (auto& [a, p] : addrs) i.addresses.push_back({*parse_ip(a), p});
  return i;
}

std::vector<kr::net::NetInterface> node_interfaces() {
  return {
      iface("lo", 1, {{"127.0.0.1", 8}, {"::1", 128}}),
      // The LAN: IPv6 link-local and a ULA prefix too.
      iface("eth0", 2, {{"192.168.1.10", 24}, {"fe80::1", 64}, {"fd99:1::10", 64}}),
      // kohakuriver-net's bridge: found by its IPv4 gateway address.
      iface("br-0123456789ab", 5, {{"172.30.0.1", 16}, {"fe80::2", 64}, {"fd00:30::1", 64}}),
      // The VM bridge, found by name (no IPv4 address on it here).
      iface("kohaku-br0", 7, {{"fe80::3", 64}, {"2001:db8:7::1", 64}}),
  };
}

kr::api::Caller caller(const char* ip, std::uint32_t scope = 0, const char* local = nullptr) {
  return kr::api::Caller{parse_ip(ip), scope, local ? parse_ip(local) : std::nullopt};
}

}  // namespace

TEST(ArrivalNetwork, RunnerBridges) {
  auto rules = default_rules();
  rules.bridge_names = {"kohaku-br0"};
  auto ifs = node_interfaces();
  EXPECT_FALSE(kr::api::is_runner_bridge(ifs[0], rules.bridge_names, rules.workload_networks));
  EXPECT_FALSE(kr::api::is_runner_bridge(ifs[1], rules.bridge_names, rules.workload_networks));
  EXPECT_TRUE(kr::api::is_runner_bridge(ifs[2], rules.bridge_names, rules.workload_networks));
  EXPECT_TRUE(kr::api::is_runner_bridge(ifs[3], rules.bridge_names, rules.workload_networks));
}

TEST(ArrivalNetwork, LinkLocalByScopeUlaAndGlobalByBridgePrefix) {
  auto rules = default_rules();
  rules.bridge_names = {"kohaku-br0"};
  const auto ifs = node_interfaces();
  auto decide = [&](const kr::api::Caller& c) {
    return decide_access(rules, c, EndpointClass::Control, ifs);
  };
  // Link-local from a runner bridge (by the peer's scope): a container/VM.
  auto d = decide(caller("fe80::42:acff:fe1e:2", 5, "fe80::2"));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.detail, "Forbidden: containers and VMs cannot use the runner's control API");
  EXPECT_NE(d.setting.find("br-0123456789ab"), std::string::npos) << d.setting;
  EXPECT_FALSE(decide(caller("fe80::5054:ff:fe00:1", 7)).allowed);
  // The same link-local address from the LAN is an ordinary client.
  EXPECT_TRUE(decide(caller("fe80::42:acff:fe1e:2", 2, "fe80::1")).allowed);
  // No scope: not decidable by interface, so not a container.
  EXPECT_TRUE(decide(caller("fe80::42:acff:fe1e:2", 0)).allowed);
  // ULA / global prefixes configured on runner bridges.
  EXPECT_FALSE(decide(caller("fd00:30::2", 0, "fd00:30::1")).allowed);
  EXPECT_FALSE(decide(caller("2001:db8:7::99")).allowed);
  // ULA on the LAN stays an ordinary client.
  EXPECT_TRUE(decide(caller("fd99:1::20", 0, "fd99:1::10")).allowed);
  // A connection to a bridge's own address, whatever its source.
  EXPECT_FALSE(decide(caller("fd77::5", 0, "fd00:30::1")).allowed);
  EXPECT_FALSE(decide(caller("10.9.9.9", 0, "172.30.0.1")).allowed);
  // Endpoints containers may use stay open to them.
  EXPECT_TRUE(decide_access(rules, caller("fe80::9", 5), EndpointClass::Tunnel, ifs).allowed);
  EXPECT_TRUE(decide_access(rules, caller("fe80::9", 5), EndpointClass::Health, ifs).allowed);
  // Without interface information only the configured networks count.
  EXPECT_TRUE(decide_access(rules, caller("fe80::9", 5), EndpointClass::Control).allowed);
}

TEST(ArrivalNetwork, PolicyUsesTheRequestsScopeAndLocalAddress) {
  auto rules = default_rules();
  AccessPolicy policy(rules);
  policy.set_interface_source([] { return node_interfaces(); });
  HttpRequest req;
  req.method = "POST";
  req.path = "/api/execute";
  req.remote_ip = "fe80::42:acff:fe1e:2";
  req.remote_scope_id = 5;
  req.local_ip = "fe80::2";
  auto refused = policy.check(req);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  req.remote_scope_id = 2;
  req.local_ip = "fe80::1";
  EXPECT_FALSE(policy.check(req));
}
