#pragma once
// Source-address policy (decisions.md "Source-address policy", S-NOAUTH).
//
// Containers and VMs run on networks this runner owns (kohakuriver-net, the
// overlay, the VM bridge). Their processes can reach the runner's port
// through the bridge gateway, so without a check a task could ask the runner
// to start a privileged container with the host's / mounted. Callers from
// those networks may reach only what they need: /healthz, the tunnel
// endpoint (whose handler checks which container is calling) and the VM
// guest agent endpoints (whose handler checks which VM is calling). Every
// other endpoint answers them 403 {"detail": ...}.
//
// Everyone else is served as upstream serves them, unless the operator lists
// the allowed clients (API_ALLOWED_CLIENTS; /metrics: METRICS_ALLOWED_CLIENTS,
// defaulting to the API list). Loopback is always allowed. The host sends no
// credentials, so addresses are all there is to go on (wire compatibility).
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_types.hpp"
#include "common/ip_network.hpp"
#include "common/net_interfaces.hpp"

namespace kr::api {

// What an endpoint is, as far as the policy is concerned.
enum class EndpointClass {
  Health,   // GET /healthz: open to everyone
  Tunnel,   // /ws/tunnel/{container}: containers (the handler checks identity)
  VmAgent,  // POST /api/vps/{id}/vm-heartbeat, vm-phone-home: VMs (handler checks identity)
  Metrics,  // GET /metrics
  Control,  // everything else (all host-facing routes, unknown paths included)
};
EndpointClass classify_endpoint(std::string_view method, std::string_view path);

// A network whose members are this runner's containers or VMs, with where
// it came from (named in log lines so an operator knows what to change).
struct WorkloadNetwork {
  net::IpNetwork network;
  std::string source;  // e.g. "DOCKER_NETWORK_SUBNET", "Docker network kohakuriver-net"
};

struct AccessRules {
  std::vector<WorkloadNetwork> workload_networks;
  // Interfaces of this runner's bridges by name (VM_BRIDGE_NAME, the
  // overlay bridge, kohakuriver-net's bridge as Docker names it).
  std::vector<std::string> bridge_names;
  std::vector<net::IpNetwork> api_allowed;      // empty: no restriction (upstream)
  std::vector<net::IpNetwork> metrics_allowed;  // empty: same as api_allowed
};

struct AccessDecision {
  bool allowed = true;
  std::string detail;   // the 403 body's detail when refused
  std::string setting;  // what an operator would change (for the log line)
};

// A caller as the server saw it: its address, the IPv6 scope it came
// with (a link-local peer's interface index, else 0) and the local address
// it connected to.
struct Caller {
  std::optional<net::IpAddress> address;  // nullopt: no parsable peer address
  std::uint32_t scope_id = 0;
  std::optional<net::IpAddress> local;
};

// Which interfaces are this runner's bridges (kohakuriver-net's bridge, the
// VM bridge, the overlay bridge): those named here, and any interface
// holding an IPv4 address inside one of the IPv4 container/VM networks
// (a bridge carries its network's gateway).
bool is_runner_bridge(const net::NetInterface& iface, const std::vector<std::string>& bridge_names,
                      const std::vector<WorkloadNetwork>& networks);

// The container/VM network a caller belongs to by where it arrived (issue
// 16 item 3), for callers no configured network covers: a link-local IPv6
// peer whose scope is a runner bridge; an address inside an IPv6 prefix
// configured on a runner bridge (ULA or global); a connection to an address
// of a runner bridge. Link-local and ULA callers arriving elsewhere (a LAN)
// are not matched: they stay ordinary clients.
std::optional<WorkloadNetwork> arrival_network(const Caller& caller, const std::vector<net::NetInterface>& interfaces,
                                               const std::vector<std::string>& bridge_names,
                                               const std::vector<WorkloadNetwork>& networks);

// Pure decision. A caller without a parsable address counts as an ordinary
// non-loopback client. `interfaces` (this machine's, with `rules.bridge_names`)
// classify callers by where they arrived; empty: by address only.
AccessDecision decide_access(const AccessRules& rules, const Caller& caller, EndpointClass endpoint,
                             const std::vector<net::NetInterface>& interfaces = {});
inline AccessDecision decide_access(const AccessRules& rules, const std::optional<net::IpAddress>& caller,
                                    EndpointClass endpoint) {
  return decide_access(rules, Caller{caller, 0, std::nullopt}, endpoint);
}

// The rules plus Docker's view of the networks (learnt at run time) and the
// once-per-address refusal log. Single-threaded: used on the I/O thread.
class AccessPolicy {
 public:
  explicit AccessPolicy(AccessRules rules);

  // Adds networks (e.g. kohakuriver-net's IPAM subnets from Docker); ones
  // already known are skipped. Returns true when something was added.
  bool add_workload_networks(const std::vector<WorkloadNetwork>& nets);
  // Adds a runner bridge's interface name (skipped when known).
  void add_bridge_name(const std::string& name);

  // Where this machine's interfaces come from (tests); by default
  // getifaddrs, re-read at most every 2 s.
  using InterfaceSource = std::function<std::vector<net::NetInterface>()>;
  void set_interface_source(InterfaceSource source) { interface_source_ = std::move(source); }

  // nullopt: let the request through; otherwise the 403 to send.
  std::optional<HttpResponse> check(const HttpRequest& req);

  const AccessRules& rules() const { return rules_; }
  // Human-readable effective policy, one line per item (doctor, start-up log).
  std::vector<std::string> describe() const;

 private:
  const std::vector<net::NetInterface>& interfaces();

  AccessRules rules_;
  std::set<std::string> logged_;  // addresses already logged as refused
  InterfaceSource interface_source_;
  std::vector<net::NetInterface> interfaces_;
  std::chrono::steady_clock::time_point interfaces_read_{};
};

// Parses API_ALLOWED_CLIENTS-style entries; throws std::invalid_argument
// naming the first bad entry.
std::vector<net::IpNetwork> parse_client_list(const std::vector<std::string>& entries, std::string_view key);

}  // namespace kr::api
