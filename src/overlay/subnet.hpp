#pragma once
// IPv4 address maths of the VXLAN overlay (tunnel-overlay.md §3.3–3.4) and
// the validated form of the host's registration-reply `overlay` object
// (decisions O3, O9, O11, O14: IPv4 only). Pure functions, no I/O.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kr::overlay {

// Strict dotted quad ("10.0.0.1"), host byte order.
std::optional<uint32_t> parse_ipv4(std::string_view text);
std::string format_ipv4(uint32_t addr);
bool is_loopback(uint32_t addr);  // 127.0.0.0/8

struct Ipv4Net {
  uint32_t addr = 0;  // network address (host bits cleared)
  int prefix = 0;     // 0..32

  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  bool contains(uint32_t a) const { return (a & mask()) == addr; }
  bool contains(const Ipv4Net& n) const { return n.prefix >= prefix && contains(n.addr); }
  uint32_t broadcast() const { return addr | ~mask(); }
  std::string str() const;  // "10.128.0.0/12"
  bool operator==(const Ipv4Net&) const = default;
};

// "a.b.c.d/p". Host bits are cleared when `strict` is false, refused when true.
std::optional<Ipv4Net> parse_cidr(std::string_view text, bool strict = false);

// OVERLAY_SUBNET: "BASE/NETWORK_PREFIX/NODE_BITS/SUBNET_BITS" parsed exactly
// as the host does (§3.3). Throws std::invalid_argument with the reason.
struct SubnetConfig {
  uint32_t base = 0;  // masked to network_prefix
  int network_prefix = 0;
  int node_bits = 0;
  int subnet_bits = 0;

  Ipv4Net overlay_cidr() const { return {base, network_prefix}; }
  int max_runners() const { return (1 << node_bits) - 1; }
  Ipv4Net runner_subnet(int id) const;
  uint32_t runner_gateway(int id) const { return runner_subnet(id).addr + 1; }
  uint32_t host_ip_on_runner_subnet(int id) const { return runner_subnet(id).addr + 254; }
  uint32_t host_overlay_ip() const { return base + 1; }
};
SubnetConfig parse_subnet_config(std::string_view text);

// The host's allocation for this runner, validated. Everything the runner
// configures derives from it (O11: the reply, not OVERLAY_SUBNET, is the
// source of truth).
struct Allocation {
  int runner_id = 0;
  Ipv4Net subnet;                  // overlay_subnet, e.g. 10.128.64.0/18
  uint32_t gateway = 0;            // overlay_gateway (bridge address)
  uint32_t host_overlay_ip = 0;    // informational
  uint32_t host_physical_ip = 0;   // VXLAN remote
  Ipv4Net overlay_cidr;            // whole overlay, e.g. 10.128.0.0/12
  uint32_t host_ip_on_subnet = 0;  // next hop to the rest of the overlay (.254)
  uint32_t vni = 0;                // OVERLAY_VXLAN_ID + runner_id

  bool operator==(const Allocation&) const = default;
  nlohmann::json to_json() const;  // the reply's field names, for status/logs
};

class AllocationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Validates the reply's `overlay` object. `vxlan_id_base` is OVERLAY_VXLAN_ID,
// `fallback_cidr` the configured overlay CIDR (used only when the reply lacks
// overlay_network_cidr). Throws AllocationError with an operator-facing
// sentence: missing/invalid fields, a gateway outside the subnet, a loopback
// or unspecified host_physical_ip (O9), a VNI beyond 24 bits. An absent or
// empty host_ip_on_runner_subnet becomes subnet + 254 (O3).
Allocation parse_allocation(const nlohmann::json& overlay, int vxlan_id_base, std::optional<Ipv4Net> fallback_cidr);

}  // namespace kr::overlay
