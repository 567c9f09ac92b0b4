#include "vm/ssh_relay_guard.hpp"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "metrics/metrics.hpp"

namespace kr::vm {

SshRelaySettings relay_settings_from(const config::RunnerConfig& cfg) {
  SshRelaySettings s;
  s.max_connections = static_cast<std::size_t>(std::max(1, cfg.vm_ssh_relay_max_connections));
  s.max_per_source = static_cast<std::size_t>(std::max(1, cfg.vm_ssh_relay_max_per_source));
  s.handshake_timeout = std::chrono::seconds(std::max(1, cfg.vm_ssh_relay_handshake_timeout_seconds));
  if (net::parse_ip(cfg.host_address)) s.exempt_addresses.push_back(cfg.host_address);
  for (const auto& entry : cfg.api_allowed_clients)
    if (auto n = net::parse_network(entry)) s.exempt_networks.push_back(*n);
  return s;
}

bool relay_source_exempt(const std::string& address, const SshRelaySettings& settings) {
  const auto ip = net::parse_ip(address);
  if (!ip) return false;
  if (net::is_loopback(*ip)) return true;
  for (const auto& a : settings.exempt_addresses)
    if (net::parse_ip(a) == ip) return true;
  return std::any_of(settings.exempt_networks.begin(), settings.exempt_networks.end(),
                     [&](const net::IpNetwork& n) { return n.contains(*ip); });
}

api::ConnectionLimits relay_connection_limits(const SshRelaySettings& settings) {
  api::ConnectionLimits l;
  l.max_total = std::max<std::size_t>(1, settings.max_connections);
  l.reserved = l.max_total / 8;
  l.max_per_address = std::max<std::size_t>(1, settings.max_per_source);
  return l;
}

bool SshBannerScanner::feed(std::string_view bytes) {
  static constexpr std::string_view kPrefix = "SSH-";
  for (char c : bytes) {
    if (seen_ || scanned_ >= kScanLimit) break;
    ++scanned_;
    if (c == '\n') {
      if (in_ssh_line_) seen_ = true;
      at_line_start_ = true;
      in_ssh_line_ = false;
      prefix_ = 0;
      continue;
    }
    if (at_line_start_) {
      if (c == kPrefix[prefix_]) {
        if (++prefix_ == kPrefix.size()) {
          in_ssh_line_ = true;
          at_line_start_ = false;
        }
      } else {
        at_line_start_ = false;  // some other line: wait for its end
        prefix_ = 0;
      }
    }
  }
  return seen_;
}

SshRelayGuard::SshRelayGuard(SshRelaySettings settings)
    : settings_(std::move(settings)), limiter_(relay_connection_limits(settings_)) {}

void SshRelayGuard::add_exempt_address(std::string address) {
  if (std::find(settings_.exempt_addresses.begin(), settings_.exempt_addresses.end(), address) ==
      settings_.exempt_addresses.end())
    settings_.exempt_addresses.push_back(std::move(address));
}

api::ConnectionLimiter::Slot SshRelayGuard::admit(const std::string& address) {
  const std::string source = api::normalize_address(address);
  const bool exempt = relay_source_exempt(source, settings_);
  auto slot = limiter_.try_acquire(source, exempt);
  if (slot) {
    metrics::ssh_relay_event("accepted");
    return slot;
  }
  const auto& l = limiter_.limits();
  const bool per_source = !exempt && limiter_.count(source) >= l.max_per_address;
  metrics::ssh_relay_event(per_source ? "refused_per_source" : "refused_total");
  ++refused_since_log_;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_log_ >= std::chrono::seconds(10)) {
    spdlog::warn("VM SSH relay: refused {} connection(s) over the limits (latest from {}: {}; {} open, {} from it)",
                 refused_since_log_, source, per_source ? "per-source cap" : "total cap", limiter_.total(),
                 limiter_.count(source));
    refused_since_log_ = 0;
    last_log_ = now;
  }
  return slot;
}

boost::asio::awaitable<void> resolve_exempt_host(std::shared_ptr<SshRelayGuard> guard, std::string host) {
  if (host.empty() || net::parse_ip(host)) co_return;
  boost::asio::ip::tcp::resolver resolver(co_await boost::asio::this_coro::executor);
  auto [ec, results] =
      co_await resolver.async_resolve(host, "", boost::asio::as_tuple(boost::asio::use_awaitable));
  if (ec) {
    spdlog::warn("VM SSH relay: cannot resolve HOST_ADDRESS {} (its connections count against the per-source cap): {}",
                 host, ec.message());
    co_return;
  }
  for (const auto& r : results) guard->add_exempt_address(api::normalize_address(r.endpoint().address().to_string()));
}

}  // namespace kr::vm
