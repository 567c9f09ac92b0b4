#include "vm/vm_network.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "overlay/iptables.hpp"
#include "overlay/netlink.hpp"
#include "overlay/subnet.hpp"

namespace kr::vm {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

NatIpPool::NatIpPool(const std::string& subnet, const std::string& gateway) {
  auto net = overlay::parse_cidr(subnet);
  if (!net || net->prefix < 8 || net->prefix > 24)
    throw std::invalid_argument("VM_BRIDGE_SUBNET must be an IPv4 network with a prefix of 8 to 24, not '" + subnet + "'");
  prefix_ = net->prefix;
  // Upstream: the first three octets of the subnet, .10 … .254.
  const std::uint32_t base = net->addr & 0xFFFFFF00u;
  first_ = base + 10;
  last_ = base + 254;
  gateway_ = overlay::parse_ipv4(gateway).value_or(0);
}

std::optional<std::string> NatIpPool::allocate() {
  for (std::uint32_t a = first_; a <= last_; ++a) {
    if (a == gateway_) continue;
    std::string ip = overlay::format_ipv4(a);
    if (used_.insert(ip).second) return ip;
  }
  return std::nullopt;
}

bool NatIpPool::mark_used(const std::string& ip) {
  auto a = overlay::parse_ipv4(ip);
  if (!a || *a < first_ || *a > last_ || *a == gateway_) return false;
  used_.insert(overlay::format_ipv4(*a));
  return true;
}

void NatIpPool::release(const std::string& ip) { used_.erase(ip); }

std::size_t NatIpPool::free_count() const {
  std::size_t n = last_ - first_ + 1;
  if (gateway_ >= first_ && gateway_ <= last_) --n;
  return n - used_.size();
}

std::vector<VmNatRule> vm_nat_rules(const std::string& subnet) {
  const std::vector<std::string> comment{"-m", "comment", "--comment", kVmRuleComment};
  auto with = [&](std::vector<std::string> spec, std::vector<std::string> target) {
    spec.insert(spec.end(), comment.begin(), comment.end());
    spec.insert(spec.end(), target.begin(), target.end());
    return spec;
  };
  return {
      VmNatRule{"nat", "POSTROUTING", with({"-s", subnet, "!", "-d", subnet}, {"-j", "MASQUERADE"}), false},
      VmNatRule{"filter", "FORWARD", with({"-s", subnet}, {"-j", "ACCEPT"}), true},
      VmNatRule{"filter", "FORWARD", with({"-d", subnet}, {"-j", "ACCEPT"}), true},
  };
}

std::vector<std::string> ensure_nat_network(const NatBridgeSettings& s) {
  std::vector<std::string> changes;
  auto net = overlay::parse_cidr(s.subnet);
  auto gw = overlay::parse_ipv4(s.gateway);
  if (!net) throw std::runtime_error("VM_BRIDGE_SUBNET is not an IPv4 network: '" + s.subnet + "'");
  if (!gw) throw std::runtime_error("VM_BRIDGE_GATEWAY is not an IPv4 address: '" + s.gateway + "'");
  try {
    overlay::Netlink nl;
    auto c = nl.ensure_bridge(s.bridge_name, overlay::IfAddr{*gw, net->prefix});
    changes.insert(changes.end(), c.begin(), c.end());
    if (overlay::ensure_ip_forward()) changes.push_back("net.ipv4.ip_forward = 1");
  } catch (const overlay::NetlinkError& e) {
    throw std::runtime_error(e.what());
  }
  const std::string cidr = overlay::format_ipv4(net->addr) + "/" + std::to_string(net->prefix);
  for (const auto& r : vm_nat_rules(cidr)) {
    std::vector<std::string> check{"iptables", "-w", "10", "-t", r.table, "-C", r.chain};
    check.insert(check.end(), r.spec.begin(), r.spec.end());
    auto res = overlay::run_command(check, std::chrono::seconds(20));
    if (!res.spawned) throw std::runtime_error("the `iptables` command is needed for the VM NAT rules: " + res.output);
    if (res.exit_code == 0) continue;
    std::vector<std::string> add{"iptables", "-w", "10", "-t", r.table};
    if (r.insert_first)
      add.insert(add.end(), {"-I", r.chain, "1"});
    else
      add.insert(add.end(), {"-A", r.chain});
    add.insert(add.end(), r.spec.begin(), r.spec.end());
    res = overlay::run_command(add, std::chrono::seconds(20));
    std::string text;
    for (std::size_t i = 5; i < add.size(); ++i) text += (text.empty() ? "" : " ") + add[i];
    if (res.exit_code != 0) throw std::runtime_error("cannot add iptables rule `-t " + r.table + " " + text + "`: " + res.output);
    changes.push_back("iptables -t " + r.table + " " + text);
  }
  return changes;
}

void create_tap(const std::string& name, const std::string& bridge, int mtu) {
  if (name.empty() || name.size() >= IFNAMSIZ) throw std::runtime_error("bad TAP device name '" + name + "'");
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /dev/net/tun: " + errno_text(errno));
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, name.c_str(), name.size());
  // Creates the device, or attaches to an existing persistent one.
  if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot create TAP " + name + " (TUNSETIFF): " + errno_text(e));
  }
  // Persistent: it outlives this descriptor so QEMU (and a restarted QEMU)
  // opens it by name.
  if (::ioctl(fd, TUNSETPERSIST, 1) < 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot make TAP " + name + " persistent: " + errno_text(e));
  }
  ::close(fd);
  try {
    overlay::Netlink nl;
    nl.attach_to_bridge(name, bridge, mtu);
  } catch (const overlay::NetlinkError& e) {
    delete_tap(name);
    throw std::runtime_error(std::string("cannot attach TAP ") + name + " to " + bridge + ": " + e.what());
  }
}

bool delete_tap(const std::string& name) {
  try {
    overlay::Netlink nl;
    return nl.delete_link_named(name);
  } catch (const std::exception& e) {
    spdlog::warn("Cannot delete TAP {}: {}", name, e.what());
    return false;
  }
}

}  // namespace kr::vm
