#pragma once
// Concurrent-connection accounting per source address (issue 6 item 6,
// docs/decisions.md "Connection limits"). Pure bookkeeping, no I/O: the HTTP
// server asks for a Slot when it accepts a socket and holds it for the
// connection's whole life, including after a WebSocket upgrade (a handler
// that takes the socket over must take the Slot with it), so tunnel
// connections count against the same limits.
//
// Ordinary sources (containers, other machines) share `max_total -
// reserved` slots, each at most `max_per_address`. Privileged sources (the
// host's address, loopback) may also use the reserved slots and have no
// per-address limit, so the host can always reach the runner even when
// containers hold every ordinary slot.
#include <cstddef>
#include <map>
#include <string>
#include <utility>

namespace kr::api {

struct ConnectionLimits {
  std::size_t max_total = 4096;
  std::size_t reserved = 256;  // only privileged sources use these
  std::size_t max_per_address = 256;
};

class ConnectionLimiter {
 public:
  explicit ConnectionLimiter(ConnectionLimits limits) : limits_(limits) {}
  ConnectionLimiter(const ConnectionLimiter&) = delete;
  ConnectionLimiter& operator=(const ConnectionLimiter&) = delete;

  // Releases its connection when destroyed. Movable; must not outlive the
  // limiter.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), address_(std::move(o.address_)),
                              privileged_(o.privileged_) {}
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    ~Slot() { release(); }
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    friend class ConnectionLimiter;
    Slot(ConnectionLimiter* owner, std::string address, bool privileged)
        : owner_(owner), address_(std::move(address)), privileged_(privileged) {}
    void release();
    ConnectionLimiter* owner_ = nullptr;
    std::string address_;
    bool privileged_ = false;
  };

  // An empty Slot when the connection must be refused.
  Slot try_acquire(const std::string& address, bool privileged);

  std::size_t total() const { return ordinary_ + privileged_; }
  std::size_t count(const std::string& address) const;
  // Number of addresses tracked (bounded by max_total: entries go at zero).
  std::size_t tracked_addresses() const { return per_address_.size(); }
  const ConnectionLimits& limits() const { return limits_; }

 private:
  void release(const std::string& address, bool privileged);
  ConnectionLimits limits_;
  std::size_t ordinary_ = 0, privileged_ = 0;
  std::map<std::string, std::size_t> per_address_;
};

// Loopback (127.0.0.0/8, ::1, and their IPv4-mapped forms).
bool is_loopback_address(const std::string& address);
// "::ffff:1.2.3.4" → "1.2.3.4"; anything else unchanged.
std::string normalize_address(const std::string& address);

}  // namespace kr::api
