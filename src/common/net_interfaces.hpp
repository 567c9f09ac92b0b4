#pragma once
// This machine's network interfaces and their addresses (getifaddrs), for
// telling on which interface a connection arrived (issue 16 item 3).
#include <string>
#include <vector>

#include "common/ip_network.hpp"

namespace kr::net {

struct NetInterface {
  std::string name;
  unsigned index = 0;
  // Each configured address with its prefix ("fd00:1::1/64"): `base` keeps
  // the address itself (not masked), so it is both the address and, with
  // contains(), its on-link network.
  struct Address {
    IpAddress address;
    int prefix = 0;
    IpNetwork network() const;
  };
  std::vector<Address> addresses;
};

// Every interface with at least one IPv4 or IPv6 address. Empty on failure.
std::vector<NetInterface> list_interfaces();

// fe80::/10.
bool is_link_local(const IpAddress& a);

}  // namespace kr::net
