// VM networking in NAT ("standard") mode (vm.md §13): the bridge with the
// gateway address, IPv4 forwarding, the NAT/forward rules, per-VM TAP
// devices and the address pool. Netlink through libnl (overlay::Netlink),
// never the `ip` command; firewall rules through `iptables` (decision O7).
//
// Overlay mode (the VM's address reserved at the host, TAP on
// kohaku-overlay, MTU 1450) is not implemented yet: see docs/vm-status.md.
//
// The pool is pure logic; everything else blocks (netlink, iptables): call
// it off the I/O thread.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kr::vm {

// Addresses for VMs on the NAT bridge: the subnet's .10 … .254 (upstream),
// lowest free first. In memory; rebuilt from the recovered VMs at start.
class NatIpPool {
 public:
  // `subnet` is VM_BRIDGE_SUBNET ("10.200.0.0/24"), `gateway` is kept out
  // of the pool. Throws std::invalid_argument for a subnet that is not an
  // IPv4 network of prefix 8…24 (the pool needs the .10–.254 range).
  NatIpPool(const std::string& subnet, const std::string& gateway);

  std::optional<std::string> allocate();        // nullopt: pool exhausted
  bool mark_used(const std::string& ip);        // false: not a pool address
  void release(const std::string& ip);
  bool in_use(const std::string& ip) const { return used_.count(ip) > 0; }
  int prefix_len() const { return prefix_; }
  std::size_t free_count() const;

 private:
  std::uint32_t first_ = 0, last_ = 0, gateway_ = 0;
  int prefix_ = 24;
  std::set<std::string> used_;
};

struct NatBridgeSettings {
  std::string bridge_name;  // VM_BRIDGE_NAME
  std::string subnet;       // VM_BRIDGE_SUBNET
  std::string gateway;      // VM_BRIDGE_GATEWAY
};

// Every VM NAT rule carries this comment, so cleanup finds exactly ours.
inline constexpr const char* kVmRuleComment = "kohakuriver-vm";

// The iptables rules of §13.1 as {table, argv after the table}: a -C check
// argv and an add argv per rule, in upstream's order (MASQUERADE appended;
// the two FORWARD ACCEPTs inserted at position 1).
struct VmNatRule {
  std::string table;
  std::string chain;
  std::vector<std::string> spec;  // match + target, with our comment
  bool insert_first = false;      // -I chain 1, else -A
};
std::vector<VmNatRule> vm_nat_rules(const std::string& subnet);

// Bridge up with the gateway address (prefix of the subnet), ip_forward on,
// the NAT rules present. Returns the changes made. Throws std::runtime_error
// with an operator-facing reason.
std::vector<std::string> ensure_nat_network(const NatBridgeSettings& settings);

// Creates the persistent TAP `name` through /dev/net/tun (TUNSETIFF +
// TUNSETPERSIST; an existing one is reused), attaches it to `bridge` and
// sets it up (and its MTU when mtu > 0). Throws std::runtime_error.
void create_tap(const std::string& name, const std::string& bridge, int mtu = 0);

// Deletes the TAP (or any link) `name`; false when it did not exist. Never
// throws (problems are logged).
bool delete_tap(const std::string& name);

}  // namespace kr::vm
