#pragma once
// The runner's overlay devices through rtnetlink (libnl-route-3; never the
// `ip` command): the `kohaku-overlay` bridge with the gateway address, the
// `vxlan0` port toward the host, and the route to the rest of the overlay.
// Blocking calls: run them off the I/O thread (run_blocking).
#include <stdexcept>
#include <string>
#include <vector>

#include "overlay/plan.hpp"

struct nl_sock;

namespace kr::overlay {

class NetlinkError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Netlink {
 public:
  Netlink();  // throws NetlinkError when the rtnetlink socket cannot be opened
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  // Brings bridge, VXLAN, bridge address and route to `d`, repairing or
  // recreating what differs (O1/O2) and leaving what matches untouched.
  // Returns one line per change made (empty: everything was in place).
  // Throws NetlinkError with an operator-facing reason (e.g. no VXLAN
  // support in the kernel).
  std::vector<std::string> apply(const DesiredOverlay& d);

  // Deletes vxlan0 and the bridge, and every main-table route to one of
  // `cidrs` or through the bridge. Returns what was removed.
  std::vector<std::string> remove_all(const std::vector<Ipv4Net>& cidrs);

  bool link_exists(const std::string& name);

  // ---- the VM NAT bridge and per-VM TAPs (vm.md §13) ----
  // A bridge `name` that is up and carries `address` (added only when
  // absent; other addresses stay, as upstream). Returns the changes made.
  std::vector<std::string> ensure_bridge(const std::string& name, const IfAddr& address);
  // Attaches an existing link to `master`, sets it up and, when `mtu` > 0,
  // its MTU. Throws NetlinkError when either link is missing.
  void attach_to_bridge(const std::string& name, const std::string& master, int mtu = 0);
  // Deletes link `name`; false when there was none.
  bool delete_link_named(const std::string& name);
  // The link's master's name, "" when none or when the link is missing.
  std::string master_of(const std::string& name);
  // The IPv4 addresses on link `name` (empty when missing).
  std::vector<IfAddr> addresses_of(const std::string& name);

 private:
  nl_sock* sk_ = nullptr;
};

// Sets /proc/sys/net/ipv4/ip_forward to 1 (O6). Returns true when it was
// changed. Throws NetlinkError when it cannot be read or written.
bool ensure_ip_forward();

}  // namespace kr::overlay
