#pragma once
// What the runner's side of the overlay must look like for one allocation
// (tunnel-overlay.md §3.5–3.8, decisions O1–O8, O12), and what to change to
// get there from what exists. Pure functions: the I/O layers (netlink.cpp,
// iptables.cpp, docker_network.cpp) gather the current state, ask these
// functions, and carry out the answer.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "overlay/subnet.hpp"

namespace kr::overlay {

// Fixed names (upstream hard-codes them; the host and operators' scripts rely on them).
inline constexpr const char* kBridgeName = "kohaku-overlay";
inline constexpr const char* kVxlanName = "vxlan0";
// Every iptables rule the runner adds carries this comment, so that repair
// and cleanup find exactly our rules whatever CIDR they were made for.
inline constexpr const char* kRuleComment = "kohakuriver-overlay";

struct DesiredOverlay {
  Allocation alloc;
  uint32_t local_ip = 0;  // this runner's underlay address (the registered url's IP)
  uint16_t port = 4789;   // OVERLAY_VXLAN_PORT
  int mtu = 1450;         // OVERLAY_MTU
  std::string network_name = "kohakuriver-overlay";  // OVERLAY_NETWORK_NAME
};

// ---- VXLAN device ----
struct VxlanAttrs {
  uint32_t vni = 0;
  uint32_t local = 0;
  uint32_t remote = 0;
  uint16_t port = 0;
  bool learning = false;
  bool operator==(const VxlanAttrs&) const = default;
};
VxlanAttrs desired_vxlan(const DesiredOverlay& d);
// Human-readable differences ("VNI 101 -> 103"); empty when equal. VXLAN
// attributes cannot be changed in place, so any difference means recreate.
std::vector<std::string> vxlan_differences(const VxlanAttrs& have, const VxlanAttrs& want);

// ---- bridge addresses ----
struct IfAddr {
  uint32_t addr = 0;
  int prefix = 0;
  bool operator==(const IfAddr&) const = default;
  std::string str() const { return format_ipv4(addr) + "/" + std::to_string(prefix); }
};
struct AddressPlan {
  bool add = false;            // the gateway/prefix is missing
  std::vector<IfAddr> remove;  // every other IPv4 address on our bridge (O2: an old gateway)
};
AddressPlan plan_bridge_addresses(const std::vector<IfAddr>& have, IfAddr want);

// ---- routes (main table, IPv4) ----
struct RouteEntry {
  Ipv4Net dst;
  uint32_t gateway = 0;  // 0: none (connected)
  bool operator==(const RouteEntry&) const = default;
  std::string str() const;
};
struct RoutePlan {
  std::vector<RouteEntry> remove;  // stale routes through our bridge (old CIDR or next hop)
  bool add = false;                // desired route missing (added with replace semantics)
};
// `have`: non-connected routes whose next hop leaves through the bridge,
// plus every route whose destination equals want.dst.
RoutePlan plan_routes(const std::vector<RouteEntry>& have, const RouteEntry& want);
RouteEntry desired_route(const DesiredOverlay& d);

// ---- iptables (decisions O7, O8) ----
struct IptablesRule {
  std::string table;              // "filter" or "nat"
  std::string chain;
  std::vector<std::string> spec;  // match/target arguments, without the chain
  int insert_at = 0;              // 1-based position for -I; 0 = append (-A)
  bool operator==(const IptablesRule&) const = default;
  std::string str() const;        // for logs: "-t nat POSTROUTING -s …"
};
// FORWARD-path ACCEPTs for the overlay CIDR (into DOCKER-USER when it exists,
// else at the top of FORWARD), the NAT masquerade for traffic leaving the
// overlay, and the INPUT drop of VXLAN UDP from anyone but the host (O8).
std::vector<IptablesRule> desired_rules(const DesiredOverlay& d, bool docker_user_exists);
// Chains that may hold our (commented) rules: {table, chain}.
std::vector<std::pair<std::string, std::string>> managed_chains();
// Splits one `iptables -S` line into arguments (double quotes group words).
std::vector<std::string> split_rule_line(std::string_view line);
// The argument lists (after "-A <chain>") of the rules in an `iptables -S
// <chain>` listing that carry our comment.
std::vector<std::vector<std::string>> our_rules_in_listing(std::string_view listing, std::string_view chain);
// The uncommented rules upstream's runner adds for a CIDR (for cleanup of
// nodes that ran the Python runner, O13).
std::vector<IptablesRule> upstream_rules(const Ipv4Net& cidr);

// ---- Docker network (§3.7, O2, O4) ----
nlohmann::json overlay_network_create_body(const DesiredOverlay& d);
// Differences between `docker network inspect` output and what we want
// (bridge device, subnet, gateway, .254 kept out of IPAM); empty = keep.
std::vector<std::string> overlay_network_differences(const nlohmann::json& inspect, const DesiredOverlay& d);
// True when the network matches but for the .254 reservation: the network
// upstream's runner creates (its _setup_docker_network_sync has no aux
// address). With containers attached it is kept as it is (issue 18: a
// switch from the Python runner detaches nothing).
bool lacks_only_host_reservation(const nlohmann::json& inspect, const DesiredOverlay& d);

// ---- the network a task or VPS container joins (O12) ----
struct ContainerNetwork {
  bool overlay = false;  // false: the caller's default network (kohakuriver-net)
  std::string name;      // overlay network name when overlay
  std::string gateway;   // overlay gateway (tunnel URL host) when overlay
};
// A container that needs the overlay cannot run: what() is the reason the
// task report carries.
class NetworkUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// `ready`: the applied allocation when the overlay is up, else nullopt with
// `down_reason` saying why. A reserved_ip needs the overlay and must be a
// usable address of our subnet (not network, broadcast, gateway or the
// host's .254); otherwise NetworkUnavailable.
ContainerNetwork choose_container_network(const std::optional<Allocation>& ready, std::string_view network_name,
                                          std::string_view down_reason,
                                          const std::optional<std::string>& reserved_ip);

}  // namespace kr::overlay
