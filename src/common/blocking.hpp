#pragma once
// Runs blocking functions (filesystem calls that may hit a hung NFS share,
// etc.) on side threads and resumes the awaiting coroutine on its own
// executor, so the single I/O thread never waits on disk.
//
// A blocking call cannot be interrupted (a process in uninterruptible sleep
// on a dead NFS server stays there), so the protection is in three parts:
//  * an elastic pool: a job gets an idle thread or a new one (up to
//    kMaxBlockingThreads), so one hung call never holds up unrelated work;
//  * lanes: each kind of work (LOCAL_TEMP_DIR checks, log directories,
//    tarball listing, tarball reads) may have only a few calls outstanding;
//    when they are all stuck, new calls of that kind fail at once with
//    BlockingBusy instead of piling up threads;
//  * deadlines: run_blocking_for() resumes the caller with BlockingTimeout
//    when the deadline passes; the stuck thread's result is discarded when
//    (if ever) it returns, and its lane slot is freed only then.
//
// Plain functions returning the async_initiate awaitable, not coroutines:
// GCC 12 miscompiles coroutines that capture a lambda and await
// async_initiate (heap corruption seen here).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/cancel_token.hpp"

namespace kr {

inline constexpr std::size_t kMaxBlockingThreads = 64;

// The deadline of run_blocking_for() passed; the call may still be running.
struct BlockingTimeout : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The CancelToken fired first; the call may still be running.
struct BlockingCancelled : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Every slot of the lane is held by calls that have not returned.
struct BlockingBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A kind of blocking work with its own bound on outstanding calls. Lanes are
// long-lived (namespace-scope or static): a stuck thread refers to its lane
// until it returns.
//
// A call that finds every slot held waits for one (up to its deadline):
// a burst of healthy calls (50 tasks submitted at once, each creating its
// log directories) must queue, not fail. Only when the slots stay held
// until the deadline — the calls holding them are stuck — does it fail
// with BlockingBusy. Waiting costs no thread.
class BlockingLane {
 public:
  BlockingLane(std::string name, std::size_t max_outstanding) : name_(std::move(name)), max_(max_outstanding) {}
  const std::string& name() const { return name_; }
  std::size_t outstanding() const {
    std::lock_guard lk(mu_);
    return outstanding_;
  }
  // Takes a slot; false when all are held.
  bool try_acquire() {
    std::lock_guard lk(mu_);
    if (outstanding_ >= max_) return false;
    ++outstanding_;
    return true;
  }
  // Takes a slot now (true), or queues `on_slot`, which later receives a
  // slot: called on the releasing thread, it must take it over or release it.
  bool acquire_or_wait(std::function<void()> on_slot) {
    std::lock_guard lk(mu_);
    if (outstanding_ < max_) {
      ++outstanding_;
      return true;
    }
    waiters_.push_back(std::move(on_slot));
    return false;
  }
  // Frees a slot, or hands it straight to the oldest waiter.
  void release() {
    std::function<void()> next;
    {
      std::lock_guard lk(mu_);
      if (waiters_.empty()) {
        --outstanding_;
        return;
      }
      next = std::move(waiters_.front());
      waiters_.pop_front();
    }
    next();
  }

 private:
  std::string name_;
  std::size_t max_;
  mutable std::mutex mu_;
  std::size_t outstanding_ = 0;
  std::deque<std::function<void()>> waiters_;
};

// The lane of run_blocking() without a lane: general short work.
BlockingLane& default_blocking_lane();

// Hands `job` to an idle pool thread, or starts one (up to
// kMaxBlockingThreads; beyond that it queues). Idle threads exit after a
// while.
void submit_blocking(std::function<void()> job);

// Threads alive / idle right now (tests, /healthz).
std::size_t blocking_threads();

namespace detail {
template <class R>
struct BlockingSignature {
  using type = void(std::exception_ptr, R);
};
template <>
struct BlockingSignature<void> {
  using type = void(std::exception_ptr);
};

// Shared by the worker, the deadline timer and the cancel callback:
// whichever completes first (always on the caller's executor) calls the
// handler. `work` keeps the caller's io_context alive while the worker may
// still deliver a result; once the caller was answered otherwise (timeout,
// cancel) it is released and the worker's late result is dropped, so a
// call stuck for hours does not keep the io_context from finishing.
template <class Handler, class R, class Work>
struct BlockingCall {
  BlockingCall(Handler h, Work w) : handler(std::move(h)), work(std::move(w)) {}
  std::optional<Handler> handler;  // touched on the caller's thread only
  std::weak_ptr<boost::asio::steady_timer> timer;
  std::optional<CancelToken> cancel;
  std::uint64_t cancel_sub = 0;
  std::mutex mu;  // guards work/abandoned (worker vs caller thread)
  std::optional<Work> work;
  bool abandoned = false;
  bool waiting_for_slot = false;  // caller's thread only

  // On the caller's thread.
  template <class... Args>
  void complete(Args&&... args) {
    if (!handler) return;
    if (auto t = timer.lock()) t->cancel();
    if (cancel) cancel->unsubscribe(cancel_sub);
    {
      std::lock_guard lk(mu);
      abandoned = true;
      work.reset();
    }
    auto h = std::move(*handler);
    handler.reset();
    std::move(h)(std::forward<Args>(args)...);
  }

  // On a worker thread: the caller's executor while the caller still waits
  // (the work guard stays with the call), else nullopt.
  std::optional<Work> take_work_keep() {
    std::lock_guard lk(mu);
    if (abandoned || !work) return std::nullopt;
    return work;
  }

  // On the worker thread: the executor to deliver the result to, or
  // nullopt when nobody waits for it any more.
  std::optional<Work> take_work() {
    std::lock_guard lk(mu);
    if (abandoned || !work) return std::nullopt;
    auto w = std::move(work);
    work.reset();
    return w;
  }
};
}  // namespace detail

// Runs f() on the pool in `lane`; throws BlockingBusy when the lane is full,
// BlockingTimeout when `deadline` passes first (zero: no deadline) and
// BlockingCancelled when `cancel` fires first (call from the io thread).
template <class F, class R = std::invoke_result_t<F>>
boost::asio::awaitable<R> run_blocking_for(BlockingLane& lane, std::chrono::milliseconds deadline, F f,
                                           std::optional<CancelToken> cancel = std::nullopt) {
  namespace asio = boost::asio;
  using Sig = typename detail::BlockingSignature<R>::type;
  return asio::async_initiate<const asio::use_awaitable_t<>, Sig>(
      [](auto handler, BlockingLane* lane, std::chrono::milliseconds deadline, F fn,
         std::optional<CancelToken> cancel) {
        using H = decltype(handler);
        auto home = asio::get_associated_executor(handler);
        auto work = asio::prefer(home, asio::execution::outstanding_work.tracked);
        using Call = detail::BlockingCall<H, R, decltype(work)>;
        auto call = std::make_shared<Call>(std::move(handler), work);
        auto fail = [](const std::shared_ptr<Call>& c, std::exception_ptr err) {
          if constexpr (std::is_void_v<R>)
            c->complete(err);
          else
            c->complete(err, R{});
        };
        // Runs fn on the pool; the caller holds one of the lane's slots.
        auto start = [call, lane, fn = std::move(fn)]() mutable {
          // The worker holds the only strong reference besides completions
          // in flight; the timer and cancel callbacks hold weak ones.
          submit_blocking([call, lane, fn = std::move(fn)]() mutable {
            std::exception_ptr error;
            if constexpr (std::is_void_v<R>) {
              try {
                fn();
              } catch (...) {
                error = std::current_exception();
              }
              lane->release();
              auto w = call->take_work();
              if (!w) return;
              asio::post(*w, [call = std::move(call), error] { call->complete(error); });
            } else {
              std::optional<R> result;
              try {
                result.emplace(fn());
              } catch (...) {
                error = std::current_exception();
              }
              lane->release();
              auto w = call->take_work();
              if (!w) return;
              asio::post(*w, [call = std::move(call), error, result = std::move(result)]() mutable {
                call->complete(error, result ? std::move(*result) : R{});
              });
            }
          });
        };
        bool have_slot = false;
        if (deadline.count() == 0) {
          // No deadline to wait within: a full lane fails at once.
          if (!lane->try_acquire()) {
            auto err = std::make_exception_ptr(
                BlockingBusy(lane->name() + ": earlier calls have not returned (storage hung?)"));
            asio::post(work, [call, err, fail] { fail(call, err); });
            return;
          }
          have_slot = true;
        } else {
          call->waiting_for_slot = true;
          // Called on a releasing worker thread with a slot for this call.
          auto on_slot = [weak = std::weak_ptr<Call>(call), lane, start]() mutable {
            auto c = weak.lock();
            auto w = c ? c->take_work_keep() : std::nullopt;
            if (!w) {  // answered meanwhile (deadline, cancel): pass the slot on
              lane->release();
              return;
            }
            asio::post(*w, [c, lane, start = std::move(start)]() mutable {
              if (!c->handler) {  // the deadline fired after the hand-over
                lane->release();
                return;
              }
              c->waiting_for_slot = false;
              start();
            });
          };
          have_slot = lane->acquire_or_wait(on_slot);
          if (have_slot) call->waiting_for_slot = false;
        }
        if (deadline.count() > 0) {
          // Owned by its own wait handler (on the caller's thread), so it is
          // never destroyed on the worker thread.
          auto timer = std::make_shared<asio::steady_timer>(home, deadline);
          call->timer = timer;
          timer->async_wait([timer, weak = std::weak_ptr<Call>(call), name = lane->name(), deadline,
                             fail](const boost::system::error_code& ec) {
            auto c = weak.lock();
            if (ec || !c) return;
            if (c->waiting_for_slot)
              fail(c, std::make_exception_ptr(BlockingBusy(
                          name + ": earlier calls have not returned within " + std::to_string(deadline.count()) +
                          " ms (storage hung?)")));
            else
              fail(c, std::make_exception_ptr(BlockingTimeout(
                          name + ": no answer within " + std::to_string(deadline.count()) + " ms (storage hung?)")));
          });
        }
        if (cancel) {
          call->cancel = *cancel;
          auto on_cancel = [weak = std::weak_ptr<Call>(call), name = lane->name(), fail] {
            if (auto c = weak.lock()) fail(c, std::make_exception_ptr(BlockingCancelled(name + ": cancelled")));
          };
          if (cancel->cancelled())
            asio::post(work, on_cancel);
          else
            call->cancel_sub = cancel->subscribe(on_cancel);
        }
        if (have_slot) start();
      },
      asio::use_awaitable, &lane, deadline, std::move(f), std::move(cancel));
}

// No deadline, default lane (short work that is not on shared storage).
template <class F, class R = std::invoke_result_t<F>>
boost::asio::awaitable<R> run_blocking(F f) {
  return run_blocking_for(default_blocking_lane(), std::chrono::milliseconds(0), std::move(f));
}

}  // namespace kr
