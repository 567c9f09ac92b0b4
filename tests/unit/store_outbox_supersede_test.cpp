// Issue 6 item 5: a pause/resume the host saw must not be undone by a
// non-final report (`running`) still queued or being retried, and reports
// kept in memory when the store fails are delivered.
#include <map>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include "store/outbox.hpp"
#include "store_test_util.hpp"

namespace asio = boost::asio;
using namespace kr::store;
using namespace kr::store::test;
using namespace std::chrono_literals;

namespace {
OutboxOptions fast() {
  OutboxOptions o;
  o.initial_backoff = 1ms;
  o.max_backoff = 5ms;
  return o;
}
}  // namespace

TEST(StoreOutboxSupersede, QueuedRunningReportIsNotDeliveredAfterAPause) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  // The host is down while the `running` report is queued.
  bool host_up = false;
  std::vector<std::string> delivered;
  Outbox outbox(store, ioc.get_executor(), [&](const std::string& body) -> asio::awaitable<int> {
    if (!host_up) throw std::runtime_error("connection refused");
    delivered.push_back(nlohmann::json::parse(body)["status"].get<std::string>());
    co_return 200;
  }, fast());
  outbox.start();
  run_co(ioc, outbox.push(7, report(7, 0, "running"), false));
  run_until(ioc, [&] { return outbox.failed_attempts() >= 2; });
  // The pause succeeded in Docker; the host will show `paused` on our 200.
  run_co(ioc, outbox.supersede_non_final(7, 1s));
  host_up = true;
  run_co(ioc, outbox.push(7, report(7, 1, "completed"), true));
  EXPECT_TRUE(run_co(ioc, outbox.flush(60s)));
  EXPECT_EQ(delivered, std::vector<std::string>{"completed"});
  EXPECT_TRUE(run_co(ioc, store.load_outbox()).empty());  // gone from disk too
}

TEST(StoreOutboxSupersede, InFlightRunningReportIsWaitedForAndNotRetried) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  asio::steady_timer gate(ioc, asio::steady_timer::time_point::max());
  int attempts = 0;
  bool answered = false;
  Outbox outbox(store, ioc.get_executor(), [&](const std::string&) -> asio::awaitable<int> {
    ++attempts;
    if (attempts == 1) {  // hangs until released, then fails (host restarting)
      co_await gate.async_wait(asio::as_tuple(asio::use_awaitable));
      answered = true;
      co_return 503;
    }
    co_return 200;
  }, fast());
  outbox.start();
  run_co(ioc, outbox.push(8, report(8, 0, "running"), false));
  run_until(ioc, [&] { return attempts == 1; });
  asio::steady_timer release(ioc, 30ms);
  release.async_wait([&](auto) { gate.cancel(); });
  run_co(ioc, outbox.supersede_non_final(8, 5s));
  EXPECT_TRUE(answered) << "the pause answer must wait for the report in flight";
  EXPECT_TRUE(run_co(ioc, outbox.flush(60s)));
  EXPECT_EQ(attempts, 1) << "a superseded report must not be retried";
}

TEST(StoreOutboxSupersede, FinalReportsAreKept) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  std::vector<std::string> delivered;
  bool host_up = false;
  Outbox outbox(store, ioc.get_executor(), [&](const std::string& body) -> asio::awaitable<int> {
    if (!host_up) throw std::runtime_error("down");
    delivered.push_back(nlohmann::json::parse(body)["status"].get<std::string>());
    co_return 200;
  }, fast());
  outbox.start();
  run_co(ioc, outbox.push(9, report(9, 0, "running"), false));
  run_co(ioc, outbox.push(9, report(9, 1, "failed"), true));
  run_co(ioc, outbox.supersede_non_final(9, 1s));
  host_up = true;
  EXPECT_TRUE(run_co(ioc, outbox.flush(60s)));
  EXPECT_EQ(delivered, std::vector<std::string>{"failed"});
}

TEST(StoreOutboxSupersede, VolatileReportsAreDeliveredWithoutTheStore) {
  TempDir tmp;
  asio::io_context ioc;
  StateStore store(tmp.state());
  std::vector<std::string> delivered;
  Outbox outbox(store, ioc.get_executor(), [&](const std::string& body) -> asio::awaitable<int> {
    delivered.push_back(nlohmann::json::parse(body)["status"].get<std::string>());
    co_return delivered.size() == 1 ? 503 : 200;  // one retry on the way
  }, fast());
  outbox.start();
  outbox.push_volatile(10, report(10, 0, "failed"), true);
  EXPECT_TRUE(run_co(ioc, outbox.flush(60s)));
  EXPECT_EQ(delivered, (std::vector<std::string>{"failed", "failed"}));
  EXPECT_EQ(outbox.pending(), 0u);
}
