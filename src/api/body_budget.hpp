#pragma once
// The memory all request bodies may hold together (issue 16 item 2,
// MAX_BUFFERED_REQUEST_BYTES). The HTTP server takes a Lease for a body's
// announced size (or its route's limit when it is chunked) before reading
// it and holds it until the request is answered; a body that does not fit
// waits for room, bounded, then the caller answers 503. A body larger than
// the whole budget takes all of it (it is admitted when it is alone).
// Single-threaded: used on the I/O thread.
#include <chrono>
#include <cstdint>
#include <list>
#include <optional>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace kr::api {

class BodyBudget {
 public:
  explicit BodyBudget(std::uint64_t capacity) : capacity_(capacity) {}
  BodyBudget(const BodyBudget&) = delete;
  BodyBudget& operator=(const BodyBudget&) = delete;

  // Returns its bytes when destroyed. Movable; must not outlive the budget.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), bytes_(o.bytes_) {}
    Lease& operator=(Lease&& o) noexcept {
      if (this != &o) {
        reset();
        owner_ = std::exchange(o.owner_, nullptr);
        bytes_ = o.bytes_;
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    ~Lease() { reset(); }
    explicit operator bool() const { return owner_ != nullptr; }
    std::uint64_t bytes() const { return bytes_; }
    void reset();

   private:
    friend class BodyBudget;
    Lease(BodyBudget* owner, std::uint64_t bytes) : owner_(owner), bytes_(bytes) {}
    BodyBudget* owner_ = nullptr;
    std::uint64_t bytes_ = 0;
  };

  // An empty Lease when `bytes` does not fit now.
  Lease try_acquire(std::uint64_t bytes);
  // Waits at most `max_wait` for room; an empty Lease when there was none.
  boost::asio::awaitable<Lease> acquire(std::uint64_t bytes, std::chrono::steady_clock::duration max_wait);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t in_use() const { return used_; }
  std::size_t waiting() const { return waiters_.size(); }

 private:
  struct Waiter {
    std::uint64_t bytes;
    boost::asio::steady_timer* timer;
    bool granted = false;
  };
  std::uint64_t clamp(std::uint64_t bytes) const { return bytes < capacity_ ? bytes : capacity_; }
  bool fits(std::uint64_t bytes) const { return used_ + bytes <= capacity_; }
  void release(std::uint64_t bytes);

  std::uint64_t capacity_;
  std::uint64_t used_ = 0;
  std::list<Waiter> waiters_;
};

}  // namespace kr::api
