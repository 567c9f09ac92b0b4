#include "runner/watchdog.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "runner/sd_notify.hpp"

namespace kr::runner {

namespace {
bool parse_long(const char* s, long long& out) {
  if (!s || !*s) return false;
  auto end = s + std::strlen(s);
  auto [p, ec] = std::from_chars(s, end, out);
  return ec == std::errc() && p == end;
}
}  // namespace

std::optional<std::chrono::microseconds> parse_watchdog_env(const char* usec, const char* pid, long self) {
  long long us = 0;
  if (!parse_long(usec, us) || us <= 0) return std::nullopt;
  if (pid && *pid) {
    long long p = 0;
    if (!parse_long(pid, p) || p != self) return std::nullopt;  // meant for another process
  }
  return std::chrono::microseconds(us);
}

std::optional<std::chrono::microseconds> watchdog_interval_from_env() {
  return parse_watchdog_env(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), static_cast<long>(getpid()));
}

Watchdog::Watchdog(boost::asio::any_io_executor ex, std::chrono::microseconds interval, std::function<bool()> healthy)
    : ex_(ex), interval_(interval), healthy_(std::move(healthy)), stop_(ex) {}

void Watchdog::start() {
  spdlog::info("systemd watchdog: pinging every {} ms", (interval_ / 2).count() / 1000);
  boost::asio::co_spawn(ex_, run(), boost::asio::detached);
}

void Watchdog::stop() { stop_.stop(); }

boost::asio::awaitable<void> Watchdog::run() {
  const auto period = std::max(interval_ / 2, std::chrono::microseconds(1000));
  bool warned = false;
  do {
    if (!healthy_ || healthy_()) {
      notify_systemd("WATCHDOG=1");
      warned = false;
    } else if (!warned) {
      spdlog::error("Runner unhealthy: withholding the systemd watchdog ping");
      warned = true;
    }
  } while (co_await stop_.sleep_for(period));
}

}  // namespace kr::runner
