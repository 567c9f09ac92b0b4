// Issue 6 item 4: one hung blocking call (a dead NFS share) neither holds up
// unrelated blocking work nor its caller past the deadline, and a lane whose
// calls are all stuck fails new calls at once.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include "common/async_mutex.hpp"
#include "common/blocking.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {
// A call that blocks until released, like a read from a hung NFS server.
struct Hang {
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  void wait() {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return released; });
  }
  void release() {
    {
      std::lock_guard lk(mu);
      released = true;
    }
    cv.notify_all();
  }
};
}  // namespace

TEST(BlockingLanes, DeadlineEndsTheWaitOfAHungCall) {
  asio::io_context io;
  static kr::BlockingLane lane("test hung lane", 2);
  auto hang = std::make_shared<Hang>();
  std::string error;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto stuck = [hang] {
      hang->wait();
      return 1;
    };
    try {
      co_await kr::run_blocking_for(lane, 50ms, stuck);
    } catch (const kr::BlockingTimeout& e) {
      error = e.what();
    }
  }, asio::detached);
  io.run();
  EXPECT_NE(error.find("test hung lane"), std::string::npos) << error;
  EXPECT_EQ(lane.outstanding(), 1u);  // the thread is still stuck
  hang->release();
  for (int i = 0; i < 500 && lane.outstanding() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(lane.outstanding(), 0u);
}

TEST(BlockingLanes, AHungCallDoesNotBlockOtherWork) {
  asio::io_context io;
  static kr::BlockingLane hung_lane("hung shared storage", 1);
  auto hang = std::make_shared<Hang>();
  int other = 0;
  std::string busy;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto stuck = [hang] { hang->wait(); };
    try {
      co_await kr::run_blocking_for(hung_lane, 10s, stuck);
    } catch (const std::exception&) {
    }
  }, asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto quick = [] { return 7; };
    other = co_await kr::run_blocking(quick);  // unrelated: not held up
    auto again = [] { return 1; };
    try {
      co_await kr::run_blocking_for(hung_lane, 200ms, again);  // same lane, all stuck: waits, then gives up
    } catch (const kr::BlockingBusy& e) {
      busy = e.what();
    }
    hang->release();
  }, asio::detached);
  io.run();
  EXPECT_EQ(other, 7);
  EXPECT_NE(busy.find("hung shared storage"), std::string::npos) << busy;
}

TEST(BlockingLanes, ABurstLargerThanTheLaneQueuesInsteadOfFailing) {
  // 50 tasks submitted at once each create their log directories: healthy
  // calls beyond the lane's slots wait for one (the soak run found them
  // failing with "storage hung?").
  asio::io_context io;
  static kr::BlockingLane lane("burst lane", 2);
  int done = 0, failed = 0;
  for (int i = 0; i < 20; ++i)
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      auto slow = [] {
        std::this_thread::sleep_for(5ms);
        return 1;
      };
      try {
        done += co_await kr::run_blocking_for(lane, 10s, slow);
      } catch (const std::exception&) {
        ++failed;
      }
    }, asio::detached);
  io.run();
  EXPECT_EQ(done, 20);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(lane.outstanding(), 0u);
}

TEST(BlockingLanes, AWaiterWhoseDeadlinePassedPassesItsSlotOn) {
  asio::io_context io;
  static kr::BlockingLane lane("handover lane", 1);
  auto hang = std::make_shared<Hang>();
  std::string busy;
  int later = 0;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto stuck = [hang] { hang->wait(); };
    co_await kr::run_blocking_for(lane, 10s, stuck);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto never_runs = [] { return 1; };
    try {
      co_await kr::run_blocking_for(lane, 50ms, never_runs);  // waits, gives up
    } catch (const kr::BlockingBusy& e) {
      busy = e.what();
    }
    hang->release();  // the slot goes to the abandoned waiter, which passes it on
    auto quick = [] { return 3; };
    later = co_await kr::run_blocking_for(lane, 10s, quick);
  }, asio::detached);
  io.run();
  EXPECT_NE(busy.find("handover lane"), std::string::npos) << busy;
  EXPECT_EQ(later, 3);
  EXPECT_EQ(lane.outstanding(), 0u);
}

TEST(AsyncMutexCancel, AKilledWaiterStopsWaitingAndTheLockStillPasses) {
  asio::io_context io;
  kr::AsyncMutex mu;
  kr::CancelToken kill_b;
  std::vector<std::string> trace;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto g = co_await mu.lock();
    trace.push_back("a+");
    asio::steady_timer t(io, 30ms);
    co_await t.async_wait(asio::use_awaitable);
    trace.push_back("a-");
  }, asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto g = co_await mu.lock(kill_b);
    trace.push_back(g ? "b+" : "b-cancelled");
  }, asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    kr::CancelToken never;
    auto g = co_await mu.lock(never);
    trace.push_back(g ? "c+" : "c-cancelled");
  }, asio::detached);
  asio::steady_timer k(io, 5ms);
  k.async_wait([&](auto) { kill_b.cancel(); });
  io.run();
  EXPECT_EQ(trace, (std::vector<std::string>{"a+", "b-cancelled", "a-", "c+"}));
  EXPECT_FALSE(mu.locked());
}
