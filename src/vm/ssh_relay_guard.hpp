// Bounds of the VM SSH port relays (issue 16 point 4; README "VM SSH
// port"). One guard per runner, shared by every VM's relay:
//  * open relayed connections are capped in total and per source address;
//    the host (all SSH through the host's proxy comes from HOST_ADDRESS),
//    loopback and API_ALLOWED_CLIENTS are exempt from the per-source cap
//    and may also use the slots reserved for them (api::ConnectionLimiter);
//  * a connection must complete the SSH identification exchange (each side
//    sent its "SSH-..." line) within the handshake timeout, or it is closed;
//    once it has, it is never timed out (TCP keepalive finds dead peers).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <memory>

#include <boost/asio/awaitable.hpp>

#include "api/connection_limiter.hpp"
#include "common/ip_network.hpp"
#include "config/config.hpp"

namespace kr::vm {

struct SshRelaySettings {
  std::size_t max_connections = 512;
  std::size_t max_per_source = 16;
  std::chrono::seconds handshake_timeout{20};
  std::vector<std::string> exempt_addresses;    // HOST_ADDRESS (its literal or resolved forms)
  std::vector<net::IpNetwork> exempt_networks;  // API_ALLOWED_CLIENTS
};

// VM_SSH_RELAY_* and the exemptions (HOST_ADDRESS when it is an address
// literal, API_ALLOWED_CLIENTS). Pure; API_ALLOWED_CLIENTS was validated
// when the configuration was loaded (bad entries are skipped here).
SshRelaySettings relay_settings_from(const config::RunnerConfig& cfg);

// Pure: loopback, an exempt address or a member of an exempt network.
// `address` as Asio prints it (IPv4-mapped IPv6 is treated as IPv4).
bool relay_source_exempt(const std::string& address, const SshRelaySettings& settings);

// The limiter's shape: 1/8 of the total is reserved for exempt sources.
api::ConnectionLimits relay_connection_limits(const SshRelaySettings& settings);

// Watches one direction of a relayed connection for its SSH identification
// line (RFC 4253 §4.2: a line starting "SSH-" ended by LF; a server may send
// other lines before it). Only the first kScanLimit bytes are looked at: a
// peer that sends more without one never completes the exchange.
class SshBannerScanner {
 public:
  static constexpr std::size_t kScanLimit = 8192;
  // Returns seen().
  bool feed(std::string_view bytes);
  bool seen() const { return seen_; }

 private:
  bool seen_ = false;
  bool at_line_start_ = true;
  bool in_ssh_line_ = false;  // the current line began "SSH-"
  std::size_t prefix_ = 0;    // chars of "SSH-" matched at this line's start
  std::size_t scanned_ = 0;
};

class SshRelayGuard {
 public:
  explicit SshRelayGuard(SshRelaySettings settings);
  SshRelayGuard(const SshRelayGuard&) = delete;
  SshRelayGuard& operator=(const SshRelayGuard&) = delete;

  // An empty slot when the connection must be refused (counted in
  // /metrics, logged at most every 10 s). The slot releases on destruction
  // and must not outlive the guard.
  api::ConnectionLimiter::Slot admit(const std::string& address);
  // HOST_ADDRESS given as a name, once resolved.
  void add_exempt_address(std::string address);
  const SshRelaySettings& settings() const { return settings_; }
  std::size_t open_connections() const { return limiter_.total(); }

 private:
  SshRelaySettings settings_;
  api::ConnectionLimiter limiter_;
  std::size_t refused_since_log_ = 0;
  std::chrono::steady_clock::time_point last_log_{};
};

// HOST_ADDRESS given as a name: its addresses become exempt once resolved
// (until then only loopback, literals and API_ALLOWED_CLIENTS are).
boost::asio::awaitable<void> resolve_exempt_host(std::shared_ptr<SshRelayGuard> guard, std::string host);

}  // namespace kr::vm
