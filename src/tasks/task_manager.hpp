#pragma once
// Command tasks (execution.md §1–2, §4; decisions D8, D9, D11, D26, R-DUP,
// R-SILENT): accepts work from the host, provisions the image, runs the
// container through the Engine API, watches it with the wait endpoint and
// reports every state change through the durable outbox. A task is listed
// in the heartbeat from acceptance until its final report is durable.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "api/router.hpp"
#include "config/config.hpp"
#include "docker/docker_client.hpp"
#include "overlay/overlay_manager.hpp"
#include "service/stop_signal.hpp"
#include "store/outbox.hpp"
#include "store/state_store.hpp"
#include "tasks/exit_status.hpp"
#include "tasks/image_provisioner.hpp"
#include "tasks/task_request.hpp"

namespace kr::tasks {

struct TaskManagerDeps {
  const config::RunnerConfig& cfg;
  docker::DockerClient& docker;
  store::StateStore& store;
  store::Outbox& outbox;
  std::string hostname;
  std::map<int64_t, std::vector<int>> numa_cpus;  // NUMA node → CPUs (sysfs)
  std::optional<std::string> tunnel_client_path;
  overlay::OverlayManager* overlay = nullptr;  // null: always DOCKER_NETWORK_NAME
};

class TaskManager {
 public:
  TaskManager(boost::asio::any_io_executor ex, TaskManagerDeps deps);

  void add_routes(api::Router& router);
  // Heartbeat running_tasks: accepted and not yet finally reported, minus
  // host-killed ones.
  std::vector<int64_t> running_task_ids() const;
  // Tracked tasks by state ("provisioning", "running", "killing") for /metrics.
  std::map<std::string, int64_t> task_states() const;
  // Startup: ensure the network, re-adopt tracked work, report what ended
  // while the runner was down. Runs in the background.
  void start();
  // Shutdown: stop watching (containers keep running; the next start
  // re-attaches).
  void stop();

  // The network a task or VPS container joins and its tunnel URL host: the
  // VXLAN overlay when it is up, else DOCKER_NETWORK_NAME (created on first
  // use). Throws overlay::NetworkUnavailable when reserved_ip cannot be
  // honoured (decision O12).
  boost::asio::awaitable<overlay::ContainerNetwork> container_network(std::optional<std::string> reserved_ip);

  // Route bodies (public for the route table in task_routes.cpp).
  boost::asio::awaitable<api::HttpResponse> execute(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> control(api::HttpRequest& req, std::string action);
  boost::asio::awaitable<api::HttpResponse> list_images(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> sync_image(api::HttpRequest& req);

  // Shared with Docker VPS (src/vps): one provisioner, so the
  // per-environment locks and timeouts cover both (R-SYNCLOCK).
  ImageProvisioner& images() { return images_; }
  // The container network (created on first use); its name.
  boost::asio::awaitable<std::string> ensure_network();

 private:
  struct Task {
    int64_t id = 0;
    TaskRequest request;
    std::string started_at;  // naive local ISO, T0 of the pipeline
    bool killed = false;
    bool watching = false;  // the container runs (or ran) and is being watched
  };
  using TaskPtr = std::shared_ptr<Task>;

  boost::asio::awaitable<void> recover();
  boost::asio::awaitable<void> run_pipeline(TaskPtr task, bool resumed);
  // Provisions, creates and starts the container. Returns the final report
  // when the task ended before running (nullopt + started=false: killed
  // while provisioning; nullopt + started=true: running, to be watched).
  boost::asio::awaitable<std::optional<nlohmann::json>> prepare_and_start(TaskPtr task, bool& started);
  boost::asio::awaitable<void> watch(TaskPtr task);
  // Durably records the final report (unless killed), forgets the task and
  // removes its container.
  boost::asio::awaitable<void> finish(TaskPtr task, std::optional<nlohmann::json> final_report);
  boost::asio::awaitable<void> push_report(int64_t id, nlohmann::json report);
  boost::asio::awaitable<void> remove_container_quietly(std::string name);

  nlohmann::json report(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                        std::optional<std::string> message, std::optional<std::string> started_at,
                        bool completed) const;

  boost::asio::any_io_executor ex_;
  TaskManagerDeps deps_;
  ImageProvisioner images_;
  StopSignal stop_;
  std::map<int64_t, TaskPtr> tasks_;
  bool network_ready_ = false;
};

}  // namespace kr::tasks
