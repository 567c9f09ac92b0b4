#include "api/body_budget.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kr::api {

namespace asio = boost::asio;

void BodyBudget::Lease::reset() {
  if (owner_) std::exchange(owner_, nullptr)->release(bytes_);
}

BodyBudget::Lease BodyBudget::try_acquire(std::uint64_t bytes) {
  bytes = clamp(bytes);
  if (!fits(bytes)) return {};
  used_ += bytes;
  return Lease(this, bytes);
}

asio::awaitable<BodyBudget::Lease> BodyBudget::acquire(std::uint64_t bytes,
                                                       std::chrono::steady_clock::duration max_wait) {
  if (Lease now = try_acquire(bytes)) co_return now;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(max_wait);
  auto me = waiters_.insert(waiters_.end(), Waiter{clamp(bytes), &timer});
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  const bool granted = me->granted;
  const std::uint64_t held = me->bytes;
  waiters_.erase(me);
  // release() counted the bytes as used when it granted them.
  if (granted) co_return Lease(this, held);
  co_return Lease{};
}

void BodyBudget::release(std::uint64_t bytes) {
  used_ -= bytes;
  // In arrival order, every waiter that fits now (a small body is not held
  // up behind a large one that still does not fit).
  for (auto& w : waiters_) {
    if (w.granted || !fits(w.bytes)) continue;
    used_ += w.bytes;
    w.granted = true;
    w.timer->cancel();
  }
}

}  // namespace kr::api
