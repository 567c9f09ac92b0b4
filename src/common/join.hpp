#pragma once
// Minimal structured concurrency for one io_context thread: a flag set by a
// spawned coroutine when it ends, and a wait for it. Used where a session
// runs two loops (client reader, process pump) and must not return before
// both ended (they reference the session's objects).
#include <chrono>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kr {

struct DoneFlag {
  bool done = false;
};

inline boost::asio::awaitable<void> wait_until_done(std::shared_ptr<DoneFlag> flag) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
  while (!flag->done) {
    t.expires_after(std::chrono::milliseconds(5));
    co_await t.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
}

// Sleeps up to `d`; returns early when `stop` is set (polled every 50 ms).
inline boost::asio::awaitable<void> sleep_unless(std::chrono::milliseconds d, std::shared_ptr<DoneFlag> stop) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
  const auto end = std::chrono::steady_clock::now() + d;
  while (!stop->done && std::chrono::steady_clock::now() < end) {
    t.expires_after(std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(50),
                                                                  end - std::chrono::steady_clock::now()));
    co_await t.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
}

}  // namespace kr
