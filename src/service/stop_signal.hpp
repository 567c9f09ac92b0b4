#pragma once
// The interruptible wait every long-running service uses: sleeps end early
// (returning false) once stop() is called, so shutdown never waits out a
// heartbeat interval or a back-off.
#include <chrono>
#include <set>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kr {

class StopSignal {
 public:
  explicit StopSignal(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // Returns true when the full duration elapsed, false when stopped.
  boost::asio::awaitable<bool> sleep_for(std::chrono::steady_clock::duration d) {
    if (stopped_) co_return false;
    boost::asio::steady_timer timer(ex_, d);
    timers_.insert(&timer);
    co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    timers_.erase(&timer);
    co_return !stopped_;
  }

  void stop() {
    stopped_ = true;
    for (auto* t : timers_) t->cancel();
  }
  bool stopped() const { return stopped_; }

 private:
  boost::asio::any_io_executor ex_;
  std::set<boost::asio::steady_timer*> timers_;
  bool stopped_ = false;
};

}  // namespace kr
