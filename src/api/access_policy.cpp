#include "api/access_policy.hpp"

#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace kr::api {

namespace {

// Path segments without the leading '/', keeping empty ones.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  for (;;) {
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool any_contains(const std::vector<net::IpNetwork>& nets, const net::IpAddress& a) {
  return std::any_of(nets.begin(), nets.end(), [&](const net::IpNetwork& n) { return n.contains(a); });
}

const WorkloadNetwork* workload_match(const AccessRules& rules, const net::IpAddress& a) {
  for (const auto& w : rules.workload_networks)
    if (w.network.contains(a)) return &w;
  return nullptr;
}

}  // namespace

EndpointClass classify_endpoint(std::string_view method, std::string_view path) {
  // Exact shapes only: "/healthz/" or "/ws/tunnel/a/b" are not these
  // endpoints (the router would answer 307/404), so they count as control.
  auto seg = segments(path);
  if (seg.size() == 1 && seg[0] == "healthz") return EndpointClass::Health;
  if (seg.size() == 1 && seg[0] == "metrics") return EndpointClass::Metrics;
  if (seg.size() == 3 && seg[0] == "ws" && seg[1] == "tunnel" && !seg[2].empty()) return EndpointClass::Tunnel;
  if (method == "POST" && seg.size() == 4 && seg[0] == "api" && seg[1] == "vps" && !seg[2].empty() &&
      (seg[3] == "vm-heartbeat" || seg[3] == "vm-phone-home"))
    return EndpointClass::VmAgent;
  return EndpointClass::Control;
}

bool is_runner_bridge(const net::NetInterface& iface, const std::vector<std::string>& bridge_names,
                      const std::vector<WorkloadNetwork>& networks) {
  if (std::find(bridge_names.begin(), bridge_names.end(), iface.name) != bridge_names.end()) return true;
  for (const auto& a : iface.addresses) {
    if (a.address.v6) continue;
    for (const auto& w : networks)
      if (!w.network.base.v6 && w.network.contains(a.address)) return true;
  }
  return false;
}

std::optional<WorkloadNetwork> arrival_network(const Caller& caller, const std::vector<net::NetInterface>& interfaces,
                                               const std::vector<std::string>& bridge_names,
                                               const std::vector<WorkloadNetwork>& networks) {
  if (!caller.address) return std::nullopt;
  const net::IpAddress& peer = *caller.address;
  const bool link_local = net::is_link_local(peer);
  for (const auto& iface : interfaces) {
    if (!is_runner_bridge(iface, bridge_names, networks)) continue;
    const std::string where = iface.name + " (a runner bridge)";
    // fe80::/64 is on every interface: only the peer's scope tells which.
    if (link_local) {
      if (caller.scope_id != 0 && iface.index == caller.scope_id)
        return WorkloadNetwork{*net::parse_network("fe80::/10"), "link-local address on " + where};
      continue;
    }
    for (const auto& a : iface.addresses) {
      if (a.address.v6 && !net::is_link_local(a.address) && a.network().contains(peer))
        return WorkloadNetwork{a.network(), "IPv6 prefix on " + where};
      if (caller.local && a.address == *caller.local)
        return WorkloadNetwork{net::IpNetwork{a.address, a.address.v6 ? 128 : 32},
                               "a connection to the address of " + where};
    }
  }
  return std::nullopt;
}

AccessDecision decide_access(const AccessRules& rules, const Caller& who, EndpointClass endpoint,
                             const std::vector<net::NetInterface>& interfaces) {
  if (endpoint == EndpointClass::Health) return {};
  const std::optional<net::IpAddress>& caller = who.address;
  if (caller && net::is_loopback(*caller)) return {};
  if (caller) {
    std::optional<WorkloadNetwork> w;
    if (const WorkloadNetwork* m = workload_match(rules, *caller))
      w = *m;
    else
      w = arrival_network(who, interfaces, rules.bridge_names, rules.workload_networks);
    if (w) {
      if (endpoint == EndpointClass::Tunnel || endpoint == EndpointClass::VmAgent) return {};
      return {false, "Forbidden: containers and VMs cannot use the runner's control API",
              "the caller is on a container/VM network (" + w->network.to_string() + " from " + w->source +
                  "); only /healthz, /ws/tunnel/{id} and the VM agent endpoints are served there"};
    }
  }
  // Ordinary clients. The tunnel and VM agent handlers check who is
  // calling themselves; to anyone else those are plain endpoints.
  if (endpoint == EndpointClass::Metrics) {
    const auto& list = rules.metrics_allowed.empty() ? rules.api_allowed : rules.metrics_allowed;
    if (list.empty() || (caller && any_contains(list, *caller))) return {};
    const char* key = rules.metrics_allowed.empty() ? "API_ALLOWED_CLIENTS" : "METRICS_ALLOWED_CLIENTS";
    return {false, "Forbidden: client address not allowed", std::string("add it to ") + key};
  }
  if (rules.api_allowed.empty() || (caller && any_contains(rules.api_allowed, *caller))) return {};
  return {false, "Forbidden: client address not allowed", "add it to API_ALLOWED_CLIENTS"};
}

AccessPolicy::AccessPolicy(AccessRules rules) : rules_(std::move(rules)) {}

bool AccessPolicy::add_workload_networks(const std::vector<WorkloadNetwork>& nets) {
  bool added = false;
  for (const auto& n : nets) {
    bool known = std::any_of(rules_.workload_networks.begin(), rules_.workload_networks.end(),
                             [&](const WorkloadNetwork& w) { return w.network == n.network; });
    if (known) continue;
    rules_.workload_networks.push_back(n);
    spdlog::info("Source-address policy: {} ({}) is a container/VM network", n.network.to_string(), n.source);
    added = true;
  }
  return added;
}

void AccessPolicy::add_bridge_name(const std::string& name) {
  if (name.empty() ||
      std::find(rules_.bridge_names.begin(), rules_.bridge_names.end(), name) != rules_.bridge_names.end())
    return;
  rules_.bridge_names.push_back(name);
  spdlog::info("Source-address policy: connections arriving on {} come from containers/VMs", name);
}

const std::vector<net::NetInterface>& AccessPolicy::interfaces() {
  // Bridges appear later (the VM bridge at the first VM, kohakuriver-net
  // when Docker creates it): re-read, but not for every request.
  const auto now = std::chrono::steady_clock::now();
  if (interfaces_read_ == std::chrono::steady_clock::time_point{} || now - interfaces_read_ >= std::chrono::seconds(2)) {
    interfaces_ = interface_source_ ? interface_source_() : net::list_interfaces();
    interfaces_read_ = now;
  }
  return interfaces_;
}

std::optional<HttpResponse> AccessPolicy::check(const HttpRequest& req) {
  const auto caller = net::parse_ip(req.remote_ip);
  const Caller arrival{caller, req.remote_scope_id, net::parse_ip(req.local_ip)};
  const auto endpoint = classify_endpoint(req.method, req.path);
  // Interfaces only matter for a caller that is neither loopback nor on a
  // configured container/VM network.
  static const std::vector<net::NetInterface> kNone;
  const bool by_arrival = endpoint != EndpointClass::Health && caller && !net::is_loopback(*caller) &&
                          !workload_match(rules_, *caller);
  const auto decision = decide_access(rules_, arrival, endpoint, by_arrival ? interfaces() : kNone);
  if (decision.allowed) return std::nullopt;
  // Once per address: a looping client must not flood the log. The set is
  // bounded; past the bound, refusals are only counted at debug level.
  const std::string who = caller ? caller->to_string() : "<unknown>";
  if (logged_.size() < 4096 && logged_.insert(who).second)
    spdlog::warn("Refused {} {} from {}: {} (logged once per address)", req.method, req.path, who, decision.setting);
  else
    spdlog::debug("Refused {} {} from {}", req.method, req.path, who);
  return HttpResponse::detail(403, decision.detail);
}

std::vector<std::string> AccessPolicy::describe() const {
  std::vector<std::string> out;
  std::string nets;
  for (const auto& w : rules_.workload_networks)
    nets += (nets.empty() ? "" : ", ") + w.network.to_string() + " (" + w.source + ")";
  out.push_back("container/VM networks (only /healthz, their tunnel and VM agent endpoints): " +
                (nets.empty() ? std::string("none") : nets));
  std::string bridges;
  for (const auto& b : rules_.bridge_names) bridges += (bridges.empty() ? "" : ", ") + b;
  out.push_back("connections arriving on the runner's bridges count as containers/VMs (IPv6 link-local by "
                "interface, the bridges' IPv6 prefixes, their addresses): " +
                (bridges.empty() ? std::string("bridges found by their IPv4 networks") : bridges +
                                                                                   " and bridges found by their IPv4 networks"));
  auto list = [](const std::vector<net::IpNetwork>& l) {
    std::string s;
    for (const auto& n : l) s += (s.empty() ? "" : ", ") + n.to_string();
    return s;
  };
  out.push_back("control API: " + (rules_.api_allowed.empty()
                                       ? std::string("open to every other client (API_ALLOWED_CLIENTS unset)")
                                       : "loopback and " + list(rules_.api_allowed) + " (API_ALLOWED_CLIENTS)"));
  if (!rules_.metrics_allowed.empty())
    out.push_back("/metrics: loopback and " + list(rules_.metrics_allowed) + " (METRICS_ALLOWED_CLIENTS)");
  else
    out.push_back("/metrics: same as the control API (METRICS_ALLOWED_CLIENTS unset)");
  return out;
}

std::vector<net::IpNetwork> parse_client_list(const std::vector<std::string>& entries, std::string_view key) {
  std::vector<net::IpNetwork> out;
  for (const auto& e : entries) {
    auto n = net::parse_network(e);
    if (!n)
      throw std::invalid_argument(std::string(key) + ": '" + e +
                                  "' is not an IP address or network (e.g. \"10.0.0.5\" or \"10.0.0.0/24\")");
    out.push_back(*n);
  }
  return out;
}

}  // namespace kr::api
