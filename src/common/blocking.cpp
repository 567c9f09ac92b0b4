#include "common/blocking.hpp"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace kr {

namespace {

// Threads are detached: a thread stuck in a hung NFS call cannot be joined,
// and process exit must not wait for it.
class ElasticPool {
 public:
  void submit(std::function<void()> job) {
    std::unique_lock lk(mu_);
    queue_.push_back(std::move(job));
    // Every queued job needs its own idle thread: one that was woken for an
    // earlier job may be about to hang in it.
    if (idle_ >= queue_.size()) {
      cv_.notify_one();
      return;
    }
    if (threads_ < kMaxBlockingThreads) {
      ++threads_;
      std::thread([this] { loop(); }).detach();
    }
    // else: queued until a thread frees up
  }

  std::size_t threads() {
    std::lock_guard lk(mu_);
    return threads_;
  }

 private:
  void loop() {
    std::unique_lock lk(mu_);
    for (;;) {
      while (queue_.empty()) {
        ++idle_;
        bool woke = cv_.wait_for(lk, std::chrono::seconds(30), [this] { return !queue_.empty(); });
        --idle_;
        if (!woke) {
          --threads_;
          return;
        }
      }
      auto job = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      job();
      job = nullptr;  // captured state released outside the lock
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::size_t threads_ = 0;
  std::size_t idle_ = 0;
};

ElasticPool& pool() {
  // Never destroyed: detached threads may still use it during exit.
  static auto* p = new ElasticPool;
  return *p;
}

}  // namespace

BlockingLane& default_blocking_lane() {
  static auto* lane = new BlockingLane("blocking work", kMaxBlockingThreads);
  return *lane;
}

void submit_blocking(std::function<void()> job) { pool().submit(std::move(job)); }

std::size_t blocking_threads() { return pool().threads(); }

}  // namespace kr
