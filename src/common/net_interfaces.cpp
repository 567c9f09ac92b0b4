#include "common/net_interfaces.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <bit>
#include <cstring>
#include <map>

namespace kr::net {

namespace {

std::optional<IpAddress> from_sockaddr(const sockaddr* sa) {
  if (!sa) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  else
    return std::nullopt;
  return parse_ip(buf);
}

// Netmask → prefix length (contiguous masks, as the kernel reports them).
int prefix_of(const sockaddr* mask) {
  if (!mask) return 0;
  const unsigned char* b = nullptr;
  std::size_t n = 0;
  if (mask->sa_family == AF_INET) {
    b = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
    n = 4;
  } else if (mask->sa_family == AF_INET6) {
    b = reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
    n = 16;
  }
  int bits = 0;
  for (std::size_t i = 0; i < n; ++i) bits += std::popcount(static_cast<unsigned>(b[i]));
  return bits;
}

}  // namespace

IpNetwork NetInterface::Address::network() const {
  auto n = parse_network(address.to_string() + "/" + std::to_string(prefix));
  return n ? *n : IpNetwork{address, address.v6 ? 128 : 32};
}

bool is_link_local(const IpAddress& a) { return a.v6 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80; }

std::vector<NetInterface> list_interfaces() {
  ifaddrs* head = nullptr;
  if (getifaddrs(&head) != 0) return {};
  std::map<std::string, NetInterface> by_name;
  for (ifaddrs* i = head; i; i = i->ifa_next) {
    if (!i->ifa_name) continue;
    auto addr = from_sockaddr(i->ifa_addr);
    if (!addr) continue;
    auto& iface = by_name[i->ifa_name];
    if (iface.name.empty()) {
      iface.name = i->ifa_name;
      iface.index = if_nametoindex(i->ifa_name);
    }
    iface.addresses.push_back({*addr, prefix_of(i->ifa_netmask)});
  }
  freeifaddrs(head);
  std::vector<NetInterface> out;
  for (auto& [name, iface] : by_name) out.push_back(std::move(iface));
  return out;
}

}  // namespace kr::net
