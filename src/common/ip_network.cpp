#include "common/ip_network.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace kr::net {

std::optional<IpAddress> parse_ip(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string s(text);
  // A zone index ("fe80::1%eth0") is not part of the address.
  if (auto pct = s.find('%'); pct != std::string::npos) s.resize(pct);
  IpAddress a;
  if (s.find(':') == std::string::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, s.c_str(), &v4) != 1) return std::nullopt;
    std::memcpy(a.bytes.data(), &v4, 4);
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) != 1) return std::nullopt;
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(&v6, kMapped, 12) == 0) {
    std::memcpy(a.bytes.data(), reinterpret_cast<const std::uint8_t*>(&v6) + 12, 4);
    return a;
  }
  a.v6 = true;
  std::memcpy(a.bytes.data(), &v6, 16);
  return a;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

bool is_loopback(const IpAddress& a) {
  if (!a.v6) return a.bytes[0] == 127;
  for (int i = 0; i < 15; ++i)
    if (a.bytes[i] != 0) return false;
  return a.bytes[15] == 1;
}

namespace {
IpAddress masked(IpAddress a, int prefix) {
  const int total = a.v6 ? 16 : 4;
  for (int i = 0; i < total; ++i) {
    int keep = std::max(0, std::min(8, prefix - 8 * i));
    a.bytes[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  for (int i = total; i < 16; ++i) a.bytes[i] = 0;
  return a;
}
}  // namespace

bool IpNetwork::contains(const IpAddress& a) const {
  return a.v6 == base.v6 && masked(a, prefix) == base;
}

std::string IpNetwork::to_string() const { return base.to_string() + "/" + std::to_string(prefix); }

std::optional<IpNetwork> parse_network(std::string_view text) {
  auto slash = text.find('/');
  auto addr = parse_ip(text.substr(0, slash));
  if (!addr) return std::nullopt;
  const int max = addr->v6 ? 128 : 32;
  int prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3) return std::nullopt;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || end != p.data() + p.size() || prefix < 0 || prefix > max) return std::nullopt;
    // An IPv4-mapped IPv6 network is written with a v6 prefix.
    if (!addr->v6 && text.substr(0, slash).find(':') != std::string_view::npos) {
      if (prefix < 96) return std::nullopt;
      prefix -= 96;
    }
  }
  return IpNetwork{masked(*addr, prefix), prefix};
}

}  // namespace kr::net
