#include "common/log_rate_limiter.hpp"

namespace kr::common {

namespace {
// Sources beyond max_sources share this bucket (not a valid address or id).
constexpr std::string_view kOverflowSource = "<other sources>";
}  // namespace

std::optional<std::uint64_t> LogRateLimiter::admit(std::string_view source, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_sources) evict_expired(now);
    if (buckets_.size() >= options_.max_sources) source = kOverflowSource;
    it = buckets_.try_emplace(std::string(source), Bucket{now}).first;
  }
  Bucket& b = it->second;
  if (now - b.window_start >= options_.window) {
    // A new window: this line is logged and carries the old window's count.
    const std::uint64_t suppressed = b.suppressed;
    b = Bucket{now, 1, 0};
    return suppressed;
  }
  if (b.logged < options_.burst) {
    ++b.logged;
    return 0;
  }
  ++b.suppressed;
  return std::nullopt;
}

void LogRateLimiter::evict_expired(Clock::time_point now) {
  // A source whose window ended with nothing suppressed has nothing to
  // report later; forgetting it loses no count.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (now - it->second.window_start >= options_.window && it->second.suppressed == 0)
      it = buckets_.erase(it);
    else
      ++it;
  }
}

std::string LogRateLimiter::suppressed_note(std::uint64_t suppressed) {
  if (suppressed == 0) return {};
  return " (" + std::to_string(suppressed) + " similar line" + (suppressed == 1 ? "" : "s") +
         " from this source suppressed)";
}

std::size_t LogRateLimiter::tracked_sources() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

}  // namespace kr::common
