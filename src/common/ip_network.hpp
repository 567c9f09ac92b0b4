#pragma once
// IP addresses and networks (CIDRs) for the source-address policy: parsing,
// containment, loopback. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a
// dual-stack socket reports for an IPv4 peer) are treated as the IPv4 address.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kr::net {

struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 uses the first 4

  std::string to_string() const;
  bool operator==(const IpAddress&) const = default;
};

std::optional<IpAddress> parse_ip(std::string_view text);
// 127.0.0.0/8 and ::1.
bool is_loopback(const IpAddress& a);

struct IpNetwork {
  IpAddress base;  // host bits cleared
  int prefix = 0;  // 0..32 (IPv4) or 0..128 (IPv6)

  bool contains(const IpAddress& a) const;
  std::string to_string() const;  // "10.0.0.0/8"
  bool operator==(const IpNetwork&) const = default;
};

// "10.1.2.3" (a /32 or /128), "10.0.0.0/8", "fd00::/8". Host bits set in the
// address are cleared (like Python's ipaddress.ip_network(strict=False)).
std::optional<IpNetwork> parse_network(std::string_view text);

}  // namespace kr::net
