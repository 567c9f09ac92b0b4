#pragma once
// Rate limit for log lines a tenant can trigger (issue 16 item 7): a
// container or VM that repeats a refused call or a malformed frame must not
// flood the runner's log. Per source (an address, a container id), the
// first `burst` lines of a window are logged; later ones in that window are
// only counted, and the next line logged after the window says how many were
// left out. Thread-safe; memory is bounded by `max_sources` (sources past
// that share one bucket).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace kr::common {

class LogRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::size_t burst = 5;
    Clock::duration window = std::chrono::seconds(60);
    std::size_t max_sources = 1024;
  };

  LogRateLimiter() : LogRateLimiter(Options{}) {}
  explicit LogRateLimiter(Options options) : options_(options) {}

  // nullopt: do not log this line (it was counted). Otherwise log it; the
  // value is how many lines of this source were suppressed before it.
  std::optional<std::uint64_t> admit(std::string_view source, Clock::time_point now = Clock::now());

  // " (N similar line(s) from this source suppressed)" or "" for 0.
  static std::string suppressed_note(std::uint64_t suppressed);

  std::size_t tracked_sources() const;

 private:
  struct Bucket {
    Clock::time_point window_start;
    std::size_t logged = 0;
    std::uint64_t suppressed = 0;
  };
  void evict_expired(Clock::time_point now);

  Options options_;
  mutable std::mutex mutex_;
  std::map<std::string, Bucket, std::less<>> buckets_;
};

}  // namespace kr::common
