#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "runner/watchdog.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A stand-in for systemd's notification socket: a bound datagram socket
// whose path is put into NOTIFY_SOCKET.
class FakeNotifySocket {
 public:
  FakeNotifySocket() {
    path_ = std::filesystem::temp_directory_path() / ("kr-notify-" + std::to_string(getpid()));
    std::filesystem::remove(path_);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{0, 20000};  // recv polls every 20 ms
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~FakeNotifySocket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd_);
    std::filesystem::remove(path_);
  }
  // Datagrams received during `d`, with their arrival times.
  std::vector<std::pair<Clock::time_point, std::string>> collect(Clock::duration d) {
    std::vector<std::pair<Clock::time_point, std::string>> out;
    const auto end = Clock::now() + d;
    char buf[256];
    while (Clock::now() < end) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) out.emplace_back(Clock::now(), std::string(buf, static_cast<size_t>(n)));
    }
    return out;
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

struct LoopThread {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  std::thread t;
  void start() { t = std::thread([this] { io.run(); }); }
  // Lets the loop run out of work (the stopped watchdog's coroutine ends).
  void finish() {
    guard.reset();
    if (t.joinable()) t.join();
  }
  ~LoopThread() {
    guard.reset();
    io.stop();
    if (t.joinable()) t.join();
  }
};

}  // namespace

TEST(Watchdog, ParsesSystemdEnvironment) {
  using kr::runner::parse_watchdog_env;
  EXPECT_EQ(parse_watchdog_env("30000000", nullptr, 42), std::chrono::microseconds(30000000));
  EXPECT_EQ(parse_watchdog_env("30000000", "42", 42), std::chrono::microseconds(30000000));
  EXPECT_FALSE(parse_watchdog_env("30000000", "43", 42));  // meant for another process
  EXPECT_FALSE(parse_watchdog_env(nullptr, nullptr, 42));
  EXPECT_FALSE(parse_watchdog_env("0", nullptr, 42));
  EXPECT_FALSE(parse_watchdog_env("abc", nullptr, 42));
  EXPECT_FALSE(parse_watchdog_env("-5", nullptr, 42));
}

TEST(Watchdog, PingsStopWhileTheLoopIsBlocked) {
  FakeNotifySocket sock;
  LoopThread loop;
  kr::runner::Watchdog wd(loop.io.get_executor(), 200ms);  // pings every 100 ms
  boost::asio::post(loop.io, [&] { wd.start(); });
  loop.start();

  auto healthy = sock.collect(600ms);
  ASSERT_GE(healthy.size(), 3u) << "no pings from a healthy loop";
  for (auto& [t, msg] : healthy) EXPECT_EQ(msg, "WATCHDOG=1");

  // Wedge the event loop for 1 s: a handler that never yields.
  std::atomic<bool> blocked{false};
  boost::asio::post(loop.io, [&] {
    blocked = true;
    std::this_thread::sleep_for(1000ms);
    blocked = false;
  });
  while (!blocked) std::this_thread::sleep_for(1ms);
  const auto block_start = Clock::now();
  auto during = sock.collect(800ms);
  // A datagram already queued before the block may still be read just after it began.
  size_t late = 0;
  for (auto& [t, msg] : during)
    if (t - block_start > 50ms) ++late;
  EXPECT_EQ(late, 0u) << "the watchdog kept pinging while the loop was blocked";

  // Once the loop runs again, so do the pings.
  auto after = sock.collect(700ms);
  EXPECT_GE(after.size(), 2u) << "pings did not resume after the loop recovered";
  boost::asio::post(loop.io, [&] { wd.stop(); });
  loop.finish();
}

TEST(Watchdog, NoPingsWhileUnhealthy) {
  FakeNotifySocket sock;
  LoopThread loop;
  std::atomic<bool> ok{false};
  kr::runner::Watchdog wd(loop.io.get_executor(), 100ms, [&] { return ok.load(); });
  boost::asio::post(loop.io, [&] { wd.start(); });
  loop.start();
  EXPECT_TRUE(sock.collect(400ms).empty());
  ok = true;
  EXPECT_GE(sock.collect(400ms).size(), 2u);
  boost::asio::post(loop.io, [&] { wd.stop(); });
  loop.finish();
}
