#pragma once
// The store's dedicated thread: a FIFO of move-only jobs. FIFO order is what
// makes the store's operations linearizable (one connection, one thread, one
// job at a time), and what lets the outbox listener see every enqueue exactly
// once. Internal to src/store.
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kr::store::detail {

class Worker {
 public:
  struct Job {
    virtual ~Job() = default;
    virtual void run() noexcept = 0;
  };

  Worker() : thread_([this] { loop(); }) {}
  // Runs every job already queued (they may be durable writes whose callers
  // are waiting) and then joins.
  ~Worker() {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  template <class F>
  void submit(F&& f) {
    struct Impl final : Job {
      std::decay_t<F> f;
      explicit Impl(F&& fn) : f(std::forward<F>(fn)) {}
      void run() noexcept override { f(); }
    };
    {
      std::lock_guard lk(mu_);
      jobs_.push_back(std::make_unique<Impl>(std::forward<F>(f)));
    }
    cv_.notify_one();
  }

  bool on_worker_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void loop() {
    for (;;) {
      std::unique_ptr<Job> job;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping and drained
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job->run();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

template <class R>
struct CompletionSig {
  using type = void(std::exception_ptr, R);
};
template <>
struct CompletionSig<void> {
  using type = void(std::exception_ptr);
};

// Initiation for run_on(): runs fn() on the worker and completes the
// handler on its associated executor (the awaiting coroutine's) with the
// result, or with fn's exception. The tracked executor keeps the caller's
// io_context from running out of work while the job is queued; it is
// released only after the completion was posted.
template <class R, class F>
struct RunOnWorker {
  Worker* worker;
  F fn;

  template <class Handler>
  void operator()(Handler handler) {
    namespace asio = boost::asio;
    auto work = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
    worker->submit([fn = std::move(fn), handler = std::move(handler), work = std::move(work)]() mutable {
      std::exception_ptr ep;
      if constexpr (std::is_void_v<R>) {
        try {
          fn();
        } catch (...) {
          ep = std::current_exception();
        }
        asio::post(work, [h = std::move(handler), ep]() mutable { std::move(h)(ep); });
      } else {
        std::optional<R> result;
        try {
          result.emplace(fn());
        } catch (...) {
          ep = std::current_exception();
        }
        asio::post(work, [h = std::move(handler), ep, r = std::move(result)]() mutable {
          std::move(h)(ep, r ? std::move(*r) : R{});
        });
      }
    });
  }
};

// Not a coroutine itself: the awaitable comes straight from async_initiate,
// so fn is owned by one object at a time (no copies in coroutine frames).
template <class R, class F>
boost::asio::awaitable<R> run_on(Worker& worker, F fn) {
  namespace asio = boost::asio;
  return asio::async_initiate<const asio::use_awaitable_t<>&, typename CompletionSig<R>::type>(
      RunOnWorker<R, F>{&worker, std::move(fn)}, asio::use_awaitable);
}

}  // namespace kr::store::detail
