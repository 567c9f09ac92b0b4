#pragma once
// systemd watchdog (WatchdogSec= in the unit): sends WATCHDOG=1 from the
// runner's own event loop, so the pings stop by themselves when that loop
// is wedged (a blocked handler, a deadlock) and systemd restarts the
// runner. KillMode=process keeps containers and VMs alive across that.
#include <chrono>
#include <functional>
#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "service/stop_signal.hpp"

namespace kr::runner {

// What sd_watchdog_enabled() answers: the interval systemd expects pings
// within, when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is `self`.
std::optional<std::chrono::microseconds> parse_watchdog_env(const char* usec, const char* pid, long self);
std::optional<std::chrono::microseconds> watchdog_interval_from_env();

class Watchdog {
 public:
  // Pings every interval/2 (systemd's advice) while `healthy` (when given)
  // answers true.
  Watchdog(boost::asio::any_io_executor ex, std::chrono::microseconds interval,
           std::function<bool()> healthy = {});
  void start();
  void stop();

 private:
  boost::asio::awaitable<void> run();

  boost::asio::any_io_executor ex_;
  std::chrono::microseconds interval_;
  std::function<bool()> healthy_;
  StopSignal stop_;
};

}  // namespace kr::runner
