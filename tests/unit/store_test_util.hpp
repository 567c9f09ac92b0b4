#pragma once
// Helpers shared by the store_* tests: a temporary state directory and a way
// to run one coroutine to completion on an io_context.
#include <stdlib.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

namespace kr::store::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kr-store-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path state() const { return path / "state"; }
};

// Runs the io_context until `aw` completes (other coroutines, e.g. the
// outbox loop, keep their state for the next call). The guard only stops a
// hung test; no test asserts on timing.
template <class T>
T run_co(boost::asio::io_context& ioc, boost::asio::awaitable<T> aw) {
  std::optional<T> result;
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(ioc, std::move(aw), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) result.emplace(std::move(v));
    done = true;
    ioc.stop();
  });
  boost::asio::steady_timer guard(ioc, std::chrono::seconds(60));
  guard.async_wait([&](auto ec) {
    if (!ec) ioc.stop();
  });
  ioc.restart();
  ioc.run();
  guard.cancel();
  if (!done) throw std::runtime_error("coroutine did not finish (test hung)");
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

inline void run_co(boost::asio::io_context& ioc, boost::asio::awaitable<void> aw) {
  auto wrap = [](boost::asio::awaitable<void> a) -> boost::asio::awaitable<bool> {
    co_await std::move(a);
    co_return true;
  };
  run_co<bool>(ioc, wrap(std::move(aw)));
}

// Runs the io_context until pred() holds (checked between handlers).
inline void run_until(boost::asio::io_context& ioc, const std::function<bool()>& pred) {
  auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  ioc.restart();
  while (!pred()) {
    if (std::chrono::steady_clock::now() > limit) throw std::runtime_error("condition never held (test hung)");
    ioc.run_one_for(std::chrono::milliseconds(20));
    ioc.restart();
  }
}

// Lets ready handlers run for a moment without waiting for anything.
inline void settle(boost::asio::io_context& ioc, std::chrono::milliseconds d = std::chrono::milliseconds(50)) {
  ioc.restart();
  ioc.run_for(d);
}

// A /api/update body as the runner sends it (protocol.md §1.4.1); `n` goes
// into "message" so tests can check the order.
inline std::string report(int64_t task_id, int n, const std::string& status = "running") {
  nlohmann::json j = {{"task_id", task_id},  {"status", status},    {"exit_code", nullptr},
                      {"message", std::to_string(n)}, {"started_at", nullptr}, {"completed_at", nullptr},
                      {"ssh_port", nullptr}};
  return j.dump();
}

struct ParsedReport {
  int64_t task_id;
  int n;
};

inline ParsedReport parse_report(const std::string& body) {
  auto j = nlohmann::json::parse(body);
  return {j.at("task_id").get<int64_t>(), std::stoi(j.at("message").get<std::string>())};
}

}  // namespace kr::store::test
