#include "common/log_rate_limiter.hpp"

#include <gtest/gtest.h>

namespace {

using kr::common::LogRateLimiter;
using namespace std::chrono_literals;

LogRateLimiter::Options opts(std::size_t burst, std::size_t max_sources = 1024) {
  LogRateLimiter::Options o;
  o.burst = burst;
  o.window = 60s;
  o.max_sources = max_sources;
  return o;
}

TEST(LogRateLimiter, BurstThenCountedThenReportedInTheNextWindow) {
  LogRateLimiter lim(opts(3));
  const auto t0 = LogRateLimiter::Clock::time_point{} + 1000s;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(lim.admit("10.0.0.2", t0 + std::chrono::seconds(i)), 0u);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(lim.admit("10.0.0.2", t0 + 10s).has_value());
  // Still inside the window.
  EXPECT_FALSE(lim.admit("10.0.0.2", t0 + 59s).has_value());
  // The first line of the next window carries the count, then a new burst.
  EXPECT_EQ(lim.admit("10.0.0.2", t0 + 60s), 1001u);
  EXPECT_EQ(lim.admit("10.0.0.2", t0 + 61s), 0u);
  EXPECT_EQ(lim.admit("10.0.0.2", t0 + 62s), 0u);
  EXPECT_FALSE(lim.admit("10.0.0.2", t0 + 63s).has_value());
}

TEST(LogRateLimiter, SourcesAreIndependent) {
  LogRateLimiter lim(opts(1));
  const auto t0 = LogRateLimiter::Clock::time_point{} + 1000s;
  EXPECT_EQ(lim.admit("a", t0), 0u);
  EXPECT_FALSE(lim.admit("a", t0).has_value());
  EXPECT_EQ(lim.admit("b", t0), 0u);  // a's flood does not silence b
  EXPECT_FALSE(lim.admit("b", t0).has_value());
}

TEST(LogRateLimiter, MemoryIsBoundedBySources) {
  LogRateLimiter lim(opts(1, 8));
  const auto t0 = LogRateLimiter::Clock::time_point{} + 1000s;
  for (int i = 0; i < 100000; ++i) lim.admit("src" + std::to_string(i), t0);
  EXPECT_LE(lim.tracked_sources(), 9u);  // 8 plus the shared overflow bucket
  // Expired, quiet sources make room again.
  EXPECT_EQ(lim.admit("fresh", t0 + 120s), 0u);
  EXPECT_LE(lim.tracked_sources(), 9u);
}

TEST(LogRateLimiter, SuppressedNote) {
  EXPECT_EQ(LogRateLimiter::suppressed_note(0), "");
  EXPECT_EQ(LogRateLimiter::suppressed_note(1), " (1 similar line from this source suppressed)");
  EXPECT_EQ(LogRateLimiter::suppressed_note(7), " (7 similar lines from this source suppressed)");
}

}  // namespace
