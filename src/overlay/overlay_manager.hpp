#pragma once
// Applies the host's overlay allocation on this node (tunnel-overlay.md §3,
// decisions O1–O12): on every successful registration (also after a 404
// re-registration) the reply's `overlay` object is compared with what the
// node has and the devices, route, firewall rules, ip_forward and the
// `kohakuriver-overlay` Docker network are repaired or rebuilt; nothing is
// touched when everything matches, so a runner restart keeps running
// containers connected. Failures are logged loudly and retried; tasks and
// VPS ask container_network() which network to join.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "docker/docker_client.hpp"
#include "overlay/plan.hpp"
#include "service/stop_signal.hpp"

namespace kr::overlay {

class OverlayManager {
 public:
  // Pending: no registration reply yet (resumed tasks wait for it).
  enum class State { Pending, Disabled, Configuring, Ready, Failed };
  // The runner's registered url ("http://<ip>:<port>"); its IP is the VXLAN
  // local address (the address the host knows this node by).
  using RunnerUrl = std::function<boost::asio::awaitable<std::string>()>;

  OverlayManager(boost::asio::any_io_executor ex, const config::RunnerConfig& cfg, docker::DockerClient& docker,
                 RunnerUrl runner_url);

  // Called by the host link with every successful registration reply.
  void on_registration(const nlohmann::json& reply);
  void stop();

  // Which network a task or VPS container joins (and the tunnel URL host).
  // Waits while a configuration is in progress (at most `wait`) or no
  // registration reply has arrived yet (at most 10 s). Throws
  // NetworkUnavailable when reserved_ip cannot be honoured (O12).
  boost::asio::awaitable<ContainerNetwork> container_network(std::optional<std::string> reserved_ip,
                                                             std::chrono::milliseconds wait = std::chrono::seconds(60));

  State state() const { return state_; }
  // The applied allocation while the overlay is up (VMs in overlay mode).
  std::optional<Allocation> ready_allocation() const {
    return state_ == State::Ready ? applied_ : std::nullopt;
  }
  nlohmann::json status() const;  // for /healthz

 private:
  boost::asio::awaitable<void> worker();
  boost::asio::awaitable<void> apply(nlohmann::json overlay);
  boost::asio::awaitable<std::vector<std::string>> ensure_docker_network(const DesiredOverlay& d);

  boost::asio::any_io_executor ex_;
  const config::RunnerConfig& cfg_;
  docker::DockerClient& docker_;
  RunnerUrl runner_url_;
  StopSignal stop_;

  State state_ = State::Pending;
  std::optional<Allocation> applied_;  // set while Ready
  std::string error_;                  // why Failed
  std::optional<nlohmann::json> pending_;
  std::optional<nlohmann::json> last_overlay_;  // for retries after a failure
  bool worker_running_ = false;
  long long last_apply_ms_ = -1;
  std::vector<std::string> last_changes_;
};

const char* to_string(OverlayManager::State s);

}  // namespace kr::overlay
