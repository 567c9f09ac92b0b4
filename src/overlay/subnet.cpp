#include "overlay/subnet.hpp"

#include <charconv>
#include <vector>

namespace kr::overlay {

using json = nlohmann::json;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<int> parse_int(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

}  // namespace

std::optional<uint32_t> parse_ipv4(std::string_view text) {
  auto parts = split(text, '.');
  if (parts.size() != 4) return std::nullopt;
  uint32_t addr = 0;
  for (auto part : parts) {
    if (part.empty() || part.size() > 3) return std::nullopt;
    if (part.size() > 1 && part[0] == '0') return std::nullopt;  // no octal-looking forms
    for (char c : part)
      if (c < '0' || c > '9') return std::nullopt;
    int v = 0;
    std::from_chars(part.data(), part.data() + part.size(), v);
    if (v > 255) return std::nullopt;
    addr = (addr << 8) | static_cast<uint32_t>(v);
  }
  return addr;
}

std::string format_ipv4(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
         "." + std::to_string(a & 255);
}

bool is_loopback(uint32_t addr) { return (addr >> 24) == 127; }

std::string Ipv4Net::str() const { return format_ipv4(addr) + "/" + std::to_string(prefix); }

std::optional<Ipv4Net> parse_cidr(std::string_view text, bool strict) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = parse_ipv4(text.substr(0, slash));
  auto prefix_text = text.substr(slash + 1);
  if (!addr || prefix_text.empty() || prefix_text.size() > 2) return std::nullopt;
  for (char c : prefix_text)
    if (c < '0' || c > '9') return std::nullopt;
  auto prefix = parse_int(prefix_text);
  if (!prefix || *prefix > 32) return std::nullopt;
  Ipv4Net net{0, *prefix};
  net.addr = *addr & net.mask();
  if (strict && net.addr != *addr) return std::nullopt;
  return net;
}

Ipv4Net SubnetConfig::runner_subnet(int id) const {
  return {base + (static_cast<uint32_t>(id) << subnet_bits), 32 - subnet_bits};
}

SubnetConfig parse_subnet_config(std::string_view text) {
  auto parts = split(trim(text), '/');
  if (parts.size() != 4)
    throw std::invalid_argument("overlay subnet '" + std::string(text) +
                                "' must have the form BASE/NETWORK_PREFIX/NODE_BITS/SUBNET_BITS");
  auto base = parse_ipv4(trim(parts[0]));
  if (!base) throw std::invalid_argument("overlay subnet base '" + std::string(parts[0]) + "' is not an IPv4 address");
  auto np = parse_int(parts[1]), nb = parse_int(parts[2]), sb = parse_int(parts[3]);
  if (!np || !nb || !sb)
    throw std::invalid_argument("overlay subnet '" + std::string(text) + "': prefix and bit counts must be integers");
  if (*np + *nb + *sb != 32)
    throw std::invalid_argument("overlay subnet '" + std::string(text) +
                                "': NETWORK_PREFIX + NODE_BITS + SUBNET_BITS must equal 32");
  if (*np < 1 || *np > 24) throw std::invalid_argument("overlay subnet: NETWORK_PREFIX must be 1..24");
  if (*nb < 1 || *nb > 16) throw std::invalid_argument("overlay subnet: NODE_BITS must be 1..16");
  if (*sb < 8) throw std::invalid_argument("overlay subnet: SUBNET_BITS must be at least 8");
  SubnetConfig c;
  c.network_prefix = *np;
  c.node_bits = *nb;
  c.subnet_bits = *sb;
  c.base = *base & Ipv4Net{0, *np}.mask();
  return c;
}

json Allocation::to_json() const {
  return json{{"runner_id", runner_id},
              {"overlay_subnet", subnet.str()},
              {"overlay_gateway", format_ipv4(gateway)},
              {"host_overlay_ip", format_ipv4(host_overlay_ip)},
              {"host_physical_ip", format_ipv4(host_physical_ip)},
              {"overlay_network_cidr", overlay_cidr.str()},
              {"host_ip_on_runner_subnet", format_ipv4(host_ip_on_subnet)},
              {"vni", vni}};
}

namespace {

std::string field_text(const json& o, const char* key, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) {
    if (required) throw AllocationError(std::string("overlay allocation from the host lacks '") + key + "'");
    return {};
  }
  if (!it->is_string())
    throw AllocationError(std::string("overlay allocation field '") + key + "' is not a string");
  return it->get<std::string>();
}

uint32_t required_ip(const json& o, const char* key) {
  auto text = field_text(o, key, true);
  auto ip = parse_ipv4(text);
  if (!ip)
    throw AllocationError(std::string("overlay allocation field '") + key + "' is not an IPv4 address: '" + text +
                          "'");
  return *ip;
}

}  // namespace

Allocation parse_allocation(const json& o, int vxlan_id_base, std::optional<Ipv4Net> fallback_cidr) {
  if (!o.is_object()) throw AllocationError("overlay allocation from the host is not a JSON object");
  Allocation a;
  auto id = o.find("runner_id");
  if (id == o.end() || !id->is_number_integer())
    throw AllocationError("overlay allocation from the host lacks an integer 'runner_id'");
  auto id_value = id->get<int64_t>();
  if (id_value < 1 || id_value > 65535)
    throw AllocationError("overlay runner_id " + std::to_string(id_value) + " is out of range (1..65535)");
  a.runner_id = static_cast<int>(id_value);

  auto subnet_text = field_text(o, "overlay_subnet", true);
  auto subnet = parse_cidr(subnet_text, true);
  if (!subnet || subnet->prefix < 8 || subnet->prefix > 30)
    throw AllocationError("overlay_subnet '" + subnet_text + "' is not an IPv4 network (a.b.c.d/8..30)");
  a.subnet = *subnet;

  a.gateway = required_ip(o, "overlay_gateway");
  if (!a.subnet.contains(a.gateway) || a.gateway == a.subnet.addr || a.gateway == a.subnet.broadcast())
    throw AllocationError("overlay_gateway " + format_ipv4(a.gateway) + " is not a host address of " +
                          a.subnet.str());

  a.host_physical_ip = required_ip(o, "host_physical_ip");
  if (is_loopback(a.host_physical_ip) || a.host_physical_ip == 0)
    throw AllocationError("the host announced host_physical_ip " + format_ipv4(a.host_physical_ip) +
                          ", which other machines cannot reach; set HOST_REACHABLE_ADDRESS on the host to its "
                          "real address (the overlay stays down until then)");

  auto host_overlay = field_text(o, "host_overlay_ip", false);
  if (!host_overlay.empty()) {
    auto ip = parse_ipv4(host_overlay);
    if (!ip) throw AllocationError("host_overlay_ip '" + host_overlay + "' is not an IPv4 address");
    a.host_overlay_ip = *ip;
  }

  auto cidr_text = field_text(o, "overlay_network_cidr", false);
  if (!cidr_text.empty()) {
    auto cidr = parse_cidr(cidr_text, true);
    if (!cidr || cidr->prefix < 1) throw AllocationError("overlay_network_cidr '" + cidr_text + "' is not an IPv4 network");
    a.overlay_cidr = *cidr;
  } else if (fallback_cidr) {
    a.overlay_cidr = *fallback_cidr;
  } else {
    throw AllocationError("overlay allocation from the host lacks 'overlay_network_cidr'");
  }
  if (!a.overlay_cidr.contains(a.subnet))
    throw AllocationError("overlay_subnet " + a.subnet.str() + " is not inside overlay_network_cidr " +
                          a.overlay_cidr.str());

  auto on_subnet = field_text(o, "host_ip_on_runner_subnet", false);
  if (on_subnet.empty()) {
    a.host_ip_on_subnet = a.subnet.addr + 254;  // O3: the host's fixed offset
  } else {
    auto ip = parse_ipv4(on_subnet);
    if (!ip) throw AllocationError("host_ip_on_runner_subnet '" + on_subnet + "' is not an IPv4 address");
    a.host_ip_on_subnet = *ip;
  }
  if (!a.subnet.contains(a.host_ip_on_subnet) || a.host_ip_on_subnet == a.gateway)
    throw AllocationError("host_ip_on_runner_subnet " + format_ipv4(a.host_ip_on_subnet) +
                          " must be an address of " + a.subnet.str() + " other than the gateway");

  int64_t vni = static_cast<int64_t>(vxlan_id_base) + a.runner_id;
  if (vxlan_id_base < 0 || vni > 0xFFFFFF)
    throw AllocationError("VXLAN id OVERLAY_VXLAN_ID + runner_id = " + std::to_string(vni) +
                          " does not fit in 24 bits");
  a.vni = static_cast<uint32_t>(vni);
  return a;
}

}  // namespace kr::overlay
