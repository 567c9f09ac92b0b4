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

 private:
  nl_sock* sk_ = nullptr;
};

// Sets /proc/sys/net/ipv4/ip_forward to 1 (O6). Returns true when it was
// changed. Throws NetlinkError when it cannot be read or written.
bool ensure_ip_forward();

}  // namespace kr::overlay
