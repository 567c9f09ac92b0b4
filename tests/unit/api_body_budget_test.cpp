// The budget for request bodies held in memory (issue 16 item 2).
#include "api/body_budget.hpp"

#include <gtest/gtest.h>

#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

namespace {

using kr::api::BodyBudget;
namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST(BodyBudget, CountsAndReleases) {
  BodyBudget b(100);
  auto l1 = b.try_acquire(60);
  ASSERT_TRUE(l1);
  EXPECT_FALSE(b.try_acquire(41));
  auto l2 = b.try_acquire(40);
  ASSERT_TRUE(l2);
  EXPECT_EQ(b.in_use(), 100u);
  l1.reset();
  EXPECT_EQ(b.in_use(), 40u);
  {
    BodyBudget::Lease moved = std::move(l2);
    EXPECT_FALSE(l2);
    EXPECT_EQ(b.in_use(), 40u);
  }
  EXPECT_EQ(b.in_use(), 0u);
}

TEST(BodyBudget, ABodyLargerThanTheBudgetIsAdmittedAlone) {
  BodyBudget b(100);
  auto small = b.try_acquire(1);
  EXPECT_FALSE(b.try_acquire(1000));
  small.reset();
  auto big = b.try_acquire(1000);
  ASSERT_TRUE(big);
  EXPECT_EQ(b.in_use(), 100u);
  EXPECT_FALSE(b.try_acquire(1));
}

TEST(BodyBudget, AWaiterGetsRoomWhenItIsReleased) {
  asio::io_context io;
  BodyBudget b(100);
  auto held = std::make_optional(b.try_acquire(80));
  std::optional<bool> got;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto l = co_await b.acquire(50, 60s);
    got = static_cast<bool>(l);
    EXPECT_EQ(b.in_use(), 50u);
  }, asio::detached);
  io.run_for(20ms);
  EXPECT_FALSE(got);
  EXPECT_EQ(b.waiting(), 1u);
  held.reset();  // frees 80: the waiter's 50 fit
  io.restart();
  io.run_for(1s);
  ASSERT_TRUE(got);
  EXPECT_TRUE(*got);
  EXPECT_EQ(b.in_use(), 0u);
  EXPECT_EQ(b.waiting(), 0u);
}

TEST(BodyBudget, AWaiterGivesUpAfterItsWait) {
  asio::io_context io;
  BodyBudget b(100);
  auto held = b.try_acquire(100);
  std::optional<bool> got;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto l = co_await b.acquire(1, 10ms);
    got = static_cast<bool>(l);
  }, asio::detached);
  io.run_for(1s);
  ASSERT_TRUE(got);
  EXPECT_FALSE(*got);
  EXPECT_EQ(b.waiting(), 0u);
  EXPECT_EQ(b.in_use(), 100u);
}

TEST(BodyBudget, ASmallWaiterIsNotHeldBehindALargeOne) {
  asio::io_context io;
  BodyBudget b(100);
  auto a = b.try_acquire(50);
  auto c = b.try_acquire(40);
  std::optional<bool> big, small;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> { big = static_cast<bool>(co_await b.acquire(95, 50ms)); },
                 asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto l = co_await b.acquire(20, 60s);
    small = static_cast<bool>(l);
  }, asio::detached);
  io.run_for(10ms);
  EXPECT_EQ(b.waiting(), 2u);
  c.reset();  // 50 held: 20 more fit, 95 do not
  io.restart();
  io.run_for(1s);
  ASSERT_TRUE(small && big);
  EXPECT_TRUE(*small);
  EXPECT_FALSE(*big);
  EXPECT_EQ(b.in_use(), 50u);
}

}  // namespace
