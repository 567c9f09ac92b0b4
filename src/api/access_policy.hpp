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
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_types.hpp"
#include "common/ip_network.hpp"

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
  std::vector<net::IpNetwork> api_allowed;      // empty: no restriction (upstream)
  std::vector<net::IpNetwork> metrics_allowed;  // empty: same as api_allowed
};

struct AccessDecision {
  bool allowed = true;
  std::string detail;   // the 403 body's detail when refused
  std::string setting;  // what an operator would change (for the log line)
};

// Pure decision. `caller` nullopt (no parsable peer address) counts as an
// ordinary non-loopback client.
AccessDecision decide_access(const AccessRules& rules, const std::optional<net::IpAddress>& caller,
                             EndpointClass endpoint);

// The rules plus Docker's view of the networks (learnt at run time) and the
// once-per-address refusal log. Single-threaded: used on the I/O thread.
class AccessPolicy {
 public:
  explicit AccessPolicy(AccessRules rules);

  // Adds networks (e.g. kohakuriver-net's IPAM subnets from Docker); ones
  // already known are skipped. Returns true when something was added.
  bool add_workload_networks(const std::vector<WorkloadNetwork>& nets);

  // nullopt: let the request through; otherwise the 403 to send.
  std::optional<HttpResponse> check(const HttpRequest& req);

  const AccessRules& rules() const { return rules_; }
  // Human-readable effective policy, one line per item (doctor, start-up log).
  std::vector<std::string> describe() const;

 private:
  AccessRules rules_;
  std::set<std::string> logged_;  // addresses already logged as refused
};

// Parses API_ALLOWED_CLIENTS-style entries; throws std::invalid_argument
// naming the first bad entry.
std::vector<net::IpNetwork> parse_client_list(const std::vector<std::string>& entries, std::string_view key);

}  // namespace kr::api
