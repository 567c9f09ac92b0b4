#pragma once
// A FIFO mutex for coroutines on one single-threaded io_context: waiting
// never blocks the thread. Used for the per-environment image-sync locks
// (decision R-SYNCLOCK).
#include <algorithm>
#include <deque>
#include <optional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/cancel_token.hpp"

namespace kr {

class AsyncMutex {
 public:
  class Guard {
   public:
    explicit Guard(AsyncMutex* m) : m_(m) {}
    Guard(Guard&& o) noexcept : m_(o.m_) { o.m_ = nullptr; }
    Guard(const Guard&) = delete;
    ~Guard() {
      if (m_) m_->unlock();
    }

   private:
    AsyncMutex* m_;
  };

  boost::asio::awaitable<Guard> lock() {
    if (!locked_) {
      locked_ = true;
      co_return Guard(this);
    }
    auto ex = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(ex, boost::asio::steady_timer::time_point::max());
    waiters_.push_back(timer);
    // unlock() hands the lock over by cancelling exactly this timer.
    co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return Guard(this);
  }

  // Like lock(), but gives up (nullopt) when `cancel` fires first: a task
  // killed while queued behind another task's image load stops waiting.
  boost::asio::awaitable<std::optional<Guard>> lock(const CancelToken& cancel) {
    if (cancel.cancelled()) co_return std::nullopt;
    if (!locked_) {
      locked_ = true;
      co_return Guard(this);
    }
    auto ex = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(ex, boost::asio::steady_timer::time_point::max());
    waiters_.push_back(timer);
    auto gave_up = std::make_shared<bool>(false);
    // Only while still queued: once unlock() handed the lock over, a late
    // cancel changes nothing and the caller owns the lock.
    auto on_cancel = [this, timer, gave_up] {
      auto it = std::find(waiters_.begin(), waiters_.end(), timer);
      if (it == waiters_.end()) return;
      waiters_.erase(it);
      *gave_up = true;
      timer->cancel();
    };
    const auto sub = cancel.subscribe(on_cancel);
    co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    cancel.unsubscribe(sub);
    if (*gave_up) co_return std::nullopt;
    co_return Guard(this);
  }

  bool locked() const { return locked_; }

 private:
  void unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    auto next = waiters_.front();
    waiters_.pop_front();
    next->cancel();  // stays locked: ownership passes to that waiter
  }

  bool locked_ = false;
  std::deque<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

}  // namespace kr
