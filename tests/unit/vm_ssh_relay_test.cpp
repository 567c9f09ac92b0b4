// Bounds of the VM SSH port relay (issue 16 point 4): who is exempt from
// the per-source cap, admission, and the SSH identification exchange.
#include <gtest/gtest.h>

#include "vm/ssh_relay_guard.hpp"

using namespace kr::vm;

namespace {
SshRelaySettings settings(std::size_t total, std::size_t per_source) {
  SshRelaySettings s;
  s.max_connections = total;
  s.max_per_source = per_source;
  s.exempt_addresses = {"192.168.1.10"};
  s.exempt_networks = {*kr::net::parse_network("10.0.1.0/24")};
  return s;
}
}  // namespace

TEST(SshRelayGuard, HostAllowedClientsAndLoopbackAreExempt) {
  const auto s = settings(8, 2);
  EXPECT_TRUE(relay_source_exempt("192.168.1.10", s));
  EXPECT_TRUE(relay_source_exempt("::ffff:192.168.1.10", s));
  EXPECT_TRUE(relay_source_exempt("10.0.1.77", s));
  EXPECT_TRUE(relay_source_exempt("127.0.0.1", s));
  EXPECT_TRUE(relay_source_exempt("::1", s));
  EXPECT_FALSE(relay_source_exempt("192.168.1.11", s));
  EXPECT_FALSE(relay_source_exempt("10.0.2.1", s));
  EXPECT_FALSE(relay_source_exempt("", s));
  EXPECT_FALSE(relay_source_exempt("not-an-address", s));
}

TEST(SshRelayGuard, SettingsFromTheConfiguration) {
  kr::config::RunnerConfig cfg;
  cfg.host_address = "10.9.8.7";
  cfg.api_allowed_clients = {"10.0.1.0/24", "10.0.2.5"};
  cfg.vm_ssh_relay_max_connections = 100;
  cfg.vm_ssh_relay_max_per_source = 3;
  cfg.vm_ssh_relay_handshake_timeout_seconds = 7;
  const auto s = relay_settings_from(cfg);
  EXPECT_EQ(s.max_connections, 100u);
  EXPECT_EQ(s.max_per_source, 3u);
  EXPECT_EQ(s.handshake_timeout, std::chrono::seconds(7));
  EXPECT_TRUE(relay_source_exempt("10.9.8.7", s));
  EXPECT_TRUE(relay_source_exempt("10.0.2.5", s));
  EXPECT_FALSE(relay_source_exempt("10.0.2.6", s));
  cfg.host_address = "host.example";  // a name: resolved later, not exempt yet
  EXPECT_TRUE(relay_settings_from(cfg).exempt_addresses.empty());
  const auto defaults = relay_settings_from(kr::config::RunnerConfig{});
  EXPECT_EQ(defaults.max_connections, 512u);
  EXPECT_EQ(defaults.max_per_source, 16u);
  EXPECT_EQ(defaults.handshake_timeout, std::chrono::seconds(20));
}

TEST(SshRelayGuard, PerSourceCapSparesExemptSourcesAndTotalCapHoldsForAll) {
  SshRelayGuard guard(settings(8, 2));  // 1 slot of 8 reserved for exempt sources
  std::vector<kr::api::ConnectionLimiter::Slot> held;
  auto admit = [&](const char* source) {
    auto slot = guard.admit(source);
    const bool ok = static_cast<bool>(slot);
    if (ok) held.push_back(std::move(slot));
    return ok;
  };
  EXPECT_TRUE(admit("203.0.113.5"));
  EXPECT_TRUE(admit("203.0.113.5"));
  EXPECT_FALSE(admit("203.0.113.5"));  // third from the same source
  // The host is not held to 2.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(admit("192.168.1.10"));
  held.pop_back();
  held.pop_back();
  held.pop_back();
  for (const char* s : {"203.0.113.6", "203.0.113.6", "203.0.113.7", "203.0.113.7", "203.0.113.8"})
    EXPECT_TRUE(admit(s));
  EXPECT_EQ(guard.open_connections(), 7u);
  // Ordinary sources hold their 7 slots; the host still gets the reserved one.
  EXPECT_FALSE(admit("203.0.113.9"));
  EXPECT_TRUE(admit("::ffff:192.168.1.10"));
  EXPECT_FALSE(admit("192.168.1.10"));  // the total cap holds for everyone
  held.clear();
  EXPECT_EQ(guard.open_connections(), 0u);
  EXPECT_TRUE(admit("203.0.113.5"));
}

TEST(SshBannerScanner, SeesTheIdentificationLine) {
  SshBannerScanner a;
  EXPECT_TRUE(a.feed("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"));
  SshBannerScanner split;  // across reads, and with the key exchange right behind
  EXPECT_FALSE(split.feed("SS"));
  EXPECT_FALSE(split.feed("H-2.0-x"));
  EXPECT_TRUE(split.feed("\r\n\x00\x00\x01\x2c"));
  EXPECT_TRUE(split.feed("anything"));
  SshBannerScanner server;  // a server may send other lines first (RFC 4253 4.2)
  EXPECT_FALSE(server.feed("Welcome\r\nnot SSH-2.0 at the start\r\n"));
  EXPECT_TRUE(server.feed("SSH-2.0-srv\n"));
}

TEST(SshBannerScanner, NoLineEndOrNoPrefixIsNotAnExchange) {
  SshBannerScanner unterminated;
  EXPECT_FALSE(unterminated.feed("SSH-2.0-but never ends"));
  SshBannerScanner http;
  EXPECT_FALSE(http.feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  SshBannerScanner flood;  // past the scan limit nothing counts
  EXPECT_FALSE(flood.feed(std::string(SshBannerScanner::kScanLimit, 'x')));
  EXPECT_FALSE(flood.feed("\nSSH-2.0-late\n"));
  SshBannerScanner near;
  EXPECT_FALSE(near.feed("SSH\n"));
  EXPECT_FALSE(near.feed("SSX-2.0\n"));
  EXPECT_TRUE(near.feed("SSH-1.99-old\n"));
}
