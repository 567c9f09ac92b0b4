#pragma once
// Keeps this node registered with the host and sends heartbeats
// (protocol.md §1.2–1.3, decisions D5/D6): registration retries forever with
// capped back-off, heartbeats sleep-then-send every interval, a 404 from the
// heartbeat re-registers once. Nothing the host does can stop the loop.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "host_link/host_client.hpp"
#include "service/stop_signal.hpp"

namespace kr::host_link {

// What the node reports about itself; implemented over the resource monitor.
class NodeReporter {
 public:
  virtual ~NodeReporter() = default;
  // total_cores, total_ram_bytes, numa_topology, gpu_info (plain NVML form).
  virtual boost::asio::awaitable<nlohmann::json> registration_fields() = 0;
  // Every heartbeat key except running_tasks/killed_tasks.
  virtual boost::asio::awaitable<nlohmann::json> heartbeat_fields() = 0;
};

struct HostLinkOptions {
  std::string host_address;
  uint16_t host_port = 8000;
  std::string bind_ip = "0.0.0.0";
  uint16_t runner_port = 8001;
  std::chrono::milliseconds heartbeat_interval{5000};
  std::chrono::milliseconds register_timeout{15000};
  std::chrono::milliseconds heartbeat_timeout{10000};
};

class HostLink {
 public:
  using RunningTasks = std::function<std::vector<int64_t>()>;
  using OnRegistered = std::function<void(const nlohmann::json& response, bool initial)>;
  // The host answers again after it did not (failed heartbeats, then one
  // that succeeded; or a re-registration). The host may have marked this
  // node's work `lost` meanwhile, so the runner re-reports what still runs.
  using OnReconnected = std::function<void()>;

  HostLink(boost::asio::any_io_executor ex, HostLinkOptions opts, NodeReporter& reporter,
           RunningTasks running_tasks);

  void set_on_registered(OnRegistered cb) { on_registered_ = std::move(cb); }
  void set_on_reconnected(OnReconnected cb) { on_reconnected_ = std::move(cb); }
  void start();
  void stop();
  bool registered() const { return registered_; }
  // Wall-clock time of the last heartbeat the host answered 2xx (metrics).
  std::optional<std::chrono::system_clock::time_point> last_heartbeat_success() const { return last_heartbeat_ok_; }
  HostClient& client() { return client_; }
  const std::string& hostname() const { return hostname_; }

  // Back-off after the k-th failed startup registration attempt (1-based):
  // upstream's 5·k seconds for the first attempts, then capped at 30 s.
  static std::chrono::seconds registration_backoff(int attempt);
  // "http://<IPv4>:<port>" — the UDP-connect trick when bound to 0.0.0.0.
  boost::asio::awaitable<std::string> runner_url();

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> register_once();
  boost::asio::awaitable<void> heartbeat_once();

  boost::asio::any_io_executor ex_;
  HostLinkOptions opts_;
  NodeReporter& reporter_;
  RunningTasks running_tasks_;
  OnRegistered on_registered_;
  OnReconnected on_reconnected_;
  HostClient client_;
  StopSignal stop_;
  std::string hostname_;
  bool registered_ = false;
  bool link_lost_ = false;  // a heartbeat failed since the last success
  std::optional<std::chrono::system_clock::time_point> last_heartbeat_ok_;
};

std::string local_hostname();
// Percent-encodes everything outside RFC 3986 "unreserved" for a path segment.
std::string encode_path_segment(const std::string& s);

}  // namespace kr::host_link
