#include "overlay/plan.hpp"

#include <algorithm>

namespace kr::overlay {

using json = nlohmann::json;

VxlanAttrs desired_vxlan(const DesiredOverlay& d) {
  return VxlanAttrs{d.alloc.vni, d.local_ip, d.alloc.host_physical_ip, d.port, false};
}

std::vector<std::string> vxlan_differences(const VxlanAttrs& have, const VxlanAttrs& want) {
  std::vector<std::string> out;
  auto ip = [](uint32_t a) { return a ? format_ipv4(a) : std::string("none"); };
  if (have.vni != want.vni) out.push_back("VNI " + std::to_string(have.vni) + " -> " + std::to_string(want.vni));
  if (have.local != want.local) out.push_back("local " + ip(have.local) + " -> " + ip(want.local));
  if (have.remote != want.remote) out.push_back("remote " + ip(have.remote) + " -> " + ip(want.remote));
  if (have.port != want.port)
    out.push_back("dstport " + std::to_string(have.port) + " -> " + std::to_string(want.port));
  if (have.learning != want.learning) out.push_back(want.learning ? "learning off -> on" : "learning on -> off");
  return out;
}

AddressPlan plan_bridge_addresses(const std::vector<IfAddr>& have, IfAddr want) {
  AddressPlan plan;
  plan.add = std::find(have.begin(), have.end(), want) == have.end();
  for (const auto& a : have)
    if (!(a == want)) plan.remove.push_back(a);
  return plan;
}

std::string RouteEntry::str() const {
  return dst.str() + (gateway ? " via " + format_ipv4(gateway) : std::string());
}

RoutePlan plan_routes(const std::vector<RouteEntry>& have, const RouteEntry& want) {
  RoutePlan plan;
  plan.add = true;
  for (const auto& r : have) {
    if (r == want) {
      plan.add = false;
    } else if (std::find(plan.remove.begin(), plan.remove.end(), r) == plan.remove.end()) {
      plan.remove.push_back(r);
    }
  }
  return plan;
}

RouteEntry desired_route(const DesiredOverlay& d) { return RouteEntry{d.alloc.overlay_cidr, d.alloc.host_ip_on_subnet}; }

std::string IptablesRule::str() const {
  std::string s = "-t " + table + " " + (insert_at ? "-I " + chain + " " + std::to_string(insert_at) : "-A " + chain);
  for (const auto& a : spec) s += " " + a;
  return s;
}

std::vector<IptablesRule> desired_rules(const DesiredOverlay& d, bool docker_user_exists) {
  const std::string cidr = d.alloc.overlay_cidr.str();
  const std::string fwd = docker_user_exists ? "DOCKER-USER" : "FORWARD";
  auto with_comment = [](std::vector<std::string> match, std::vector<std::string> target) {
    match.insert(match.end(), {"-m", "comment", "--comment", kRuleComment});
    match.insert(match.end(), target.begin(), target.end());
    return match;
  };
  return {
      {"filter", "INPUT",
       with_comment({"-p", "udp", "--dport", std::to_string(d.port), "!", "-s", format_ipv4(d.alloc.host_physical_ip)},
                    {"-j", "DROP"}),
       1},
      {"filter", fwd, with_comment({"-s", cidr}, {"-j", "ACCEPT"}), 1},
      {"filter", fwd, with_comment({"-d", cidr}, {"-j", "ACCEPT"}), 2},
      {"nat", "POSTROUTING", with_comment({"-s", cidr, "!", "-d", cidr}, {"-j", "MASQUERADE"}), 0},
  };
}

std::vector<std::pair<std::string, std::string>> managed_chains() {
  return {{"filter", "INPUT"}, {"filter", "FORWARD"}, {"filter", "DOCKER-USER"}, {"nat", "POSTROUTING"}};
}

std::vector<std::string> split_rule_line(std::string_view line) {
  std::vector<std::string> out;
  std::string cur;
  bool in_quotes = false, have = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_quotes) {
      if (c == '\\' && i + 1 < line.size()) {
        cur.push_back(line[++i]);
      } else if (c == '"') {
        in_quotes = false;
      } else {
        cur.push_back(c);
      }
    } else if (c == '"') {
      in_quotes = true;
      have = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (have) out.push_back(std::move(cur));
      cur.clear();
      have = false;
    } else {
      cur.push_back(c);
      have = true;
    }
  }
  if (have) out.push_back(std::move(cur));
  return out;
}

std::vector<std::vector<std::string>> our_rules_in_listing(std::string_view listing, std::string_view chain) {
  std::vector<std::vector<std::string>> out;
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\n', start);
    if (end == std::string_view::npos) end = listing.size();
    auto args = split_rule_line(listing.substr(start, end - start));
    start = end + 1;
    if (args.size() < 3 || args[0] != "-A" || args[1] != chain) continue;
    bool ours = false;
    for (size_t i = 2; i + 1 < args.size(); ++i)
      if (args[i] == "--comment" && args[i + 1] == kRuleComment) ours = true;
    if (ours) out.emplace_back(args.begin() + 2, args.end());
  }
  return out;
}

std::vector<IptablesRule> upstream_rules(const Ipv4Net& cidr) {
  const std::string c = cidr.str();
  return {{"filter", "FORWARD", {"-s", c, "-j", "ACCEPT"}, 0},
          {"filter", "FORWARD", {"-d", c, "-j", "ACCEPT"}, 0},
          {"nat", "POSTROUTING", {"-s", c, "!", "-d", c, "-j", "MASQUERADE"}, 0}};
}

json overlay_network_create_body(const DesiredOverlay& d) {
  const auto& a = d.alloc;
  json pool = {{"Subnet", a.subnet.str()},
               {"Gateway", format_ipv4(a.gateway)},
               // O4: the host's VXLAN address on our subnet is never handed to a container.
               {"AuxiliaryAddresses", json{{"kohakuriver-host", format_ipv4(a.host_ip_on_subnet)}}}};
  return json{{"Name", d.network_name},
              {"Driver", "bridge"},
              {"CheckDuplicate", true},
              {"IPAM", json{{"Driver", "default"}, {"Config", json::array({pool})}}},
              {"Options", json{{"com.docker.network.bridge.name", kBridgeName},
                               {"com.docker.network.driver.mtu", std::to_string(d.mtu)},
                               {"com.docker.network.bridge.enable_icc", "true"},
                               {"com.docker.network.bridge.enable_ip_masquerade", "false"}}},
              {"Labels", json{{"kohakuriver.overlay", "true"}}}};
}

namespace {
std::string str_at(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

namespace {
std::vector<std::string> network_differences(const json& inspect, const DesiredOverlay& d, bool check_reservation) {
  std::vector<std::string> out;
  const json options = inspect.is_object() && inspect.contains("Options") ? inspect["Options"] : json::object();
  auto bridge = str_at(options, "com.docker.network.bridge.name");
  if (bridge != kBridgeName) out.push_back("bridge device '" + bridge + "' instead of " + kBridgeName);
  auto mtu = str_at(options, "com.docker.network.driver.mtu");
  if (mtu != std::to_string(d.mtu)) out.push_back("MTU '" + mtu + "' instead of " + std::to_string(d.mtu));
  json pools = json::array();
  if (inspect.is_object() && inspect.contains("IPAM") && inspect["IPAM"].is_object() &&
      inspect["IPAM"].contains("Config") && inspect["IPAM"]["Config"].is_array())
    pools = inspect["IPAM"]["Config"];
  if (pools.size() != 1) {
    out.push_back(std::to_string(pools.size()) + " IPAM pools instead of one");
    return out;
  }
  const json& pool = pools[0];
  auto subnet = str_at(pool, "Subnet");
  if (subnet != d.alloc.subnet.str()) out.push_back("subnet '" + subnet + "' instead of " + d.alloc.subnet.str());
  auto gateway = str_at(pool, "Gateway");
  if (gateway != format_ipv4(d.alloc.gateway))
    out.push_back("gateway '" + gateway + "' instead of " + format_ipv4(d.alloc.gateway));
  if (!check_reservation) return out;
  bool aux = false;
  if (pool.contains("AuxiliaryAddresses") && pool["AuxiliaryAddresses"].is_object())
    for (const auto& [k, v] : pool["AuxiliaryAddresses"].items())
      if (v.is_string() && v.get<std::string>() == format_ipv4(d.alloc.host_ip_on_subnet)) aux = true;
  if (!aux) out.push_back(format_ipv4(d.alloc.host_ip_on_subnet) + " not kept out of IPAM");
  return out;
}
}  // namespace

std::vector<std::string> overlay_network_differences(const json& inspect, const DesiredOverlay& d) {
  return network_differences(inspect, d, true);
}

bool lacks_only_host_reservation(const json& inspect, const DesiredOverlay& d) {
  return !network_differences(inspect, d, true).empty() && network_differences(inspect, d, false).empty();
}

ContainerNetwork choose_container_network(const std::optional<Allocation>& ready, std::string_view network_name,
                                          std::string_view down_reason,
                                          const std::optional<std::string>& reserved_ip) {
  const bool wants_ip = reserved_ip && !reserved_ip->empty();
  if (!ready) {
    if (wants_ip)
      throw NetworkUnavailable("reserved_ip " + *reserved_ip +
                               " needs the VXLAN overlay network, which is not available on this node: " +
                               std::string(down_reason.empty() ? "not configured" : down_reason));
    return ContainerNetwork{};
  }
  ContainerNetwork net{true, std::string(network_name), format_ipv4(ready->gateway)};
  if (wants_ip) {
    auto ip = parse_ipv4(*reserved_ip);
    if (!ip) throw NetworkUnavailable("reserved_ip '" + *reserved_ip + "' is not an IPv4 address");
    const auto& s = ready->subnet;
    if (!s.contains(*ip))
      throw NetworkUnavailable("reserved_ip " + *reserved_ip + " is not in this node's overlay subnet " + s.str());
    if (*ip == s.addr || *ip == s.broadcast() || *ip == ready->gateway || *ip == ready->host_ip_on_subnet)
      throw NetworkUnavailable("reserved_ip " + *reserved_ip +
                               " is the network, broadcast, gateway or host address of " + s.str());
  }
  return net;
}

}  // namespace kr::overlay
