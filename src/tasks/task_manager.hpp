#pragma once
// Command tasks (execution.md §1–2, §4; decisions D8, D9, D11, D26, R-DUP,
// R-SILENT): accepts work from the host, provisions the image, runs the
// container through the Engine API, watches it with the wait endpoint and
// reports every state change through the durable outbox. A task is listed
// in the heartbeat from acceptance until its final report is durable.
#include <chrono>
#include <cstdint>
#include <deque>
#include <set>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "api/router.hpp"
#include "common/async_mutex.hpp"
#include "config/config.hpp"
#include "docker/docker_client.hpp"
#include "overlay/overlay_manager.hpp"
#include "service/stop_signal.hpp"
#include "store/outbox.hpp"
#include "store/python_store.hpp"
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
  // Heartbeat running_tasks: accepted and not yet finally reported; a
  // killed task stays listed until its container is confirmed gone.
  std::vector<int64_t> running_task_ids() const;
  // Tracked tasks by state ("provisioning", "running", "killing") for /metrics.
  std::map<std::string, int64_t> task_states() const;
  // Tasks ended because the state store failed (for /healthz).
  uint64_t storage_failures() const { return storage_failures_; }
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
    bool killed = false;     // host kill (recorded in the store first)
    bool watching = false;  // the container runs (or ran) and is being watched
    bool enforcing_kill = false;  // a kill retry loop is running
    CancelToken provisioning;  // a kill aborts the pull/load/lock wait
    std::string image_warning;  // e.g. stale local copy of a :latest image
  };
  using TaskPtr = std::shared_ptr<Task>;

  boost::asio::awaitable<void> recover();
  // Startup reconciliation of a container found "created" (task_recovery.cpp).
  enum class RecoveredStart { Started, Failed, Stopped };
  boost::asio::awaitable<RecoveredStart> start_found_created(std::string name,
                                                             std::optional<docker::DockerError>& failure);
  boost::asio::awaitable<void> run_pipeline(TaskPtr task, bool resumed);
  // Provisions, creates and starts the container. Returns the final report
  // when the task ended before running (nullopt + started=false: killed
  // while provisioning; nullopt + started=true: running, to be watched).
  boost::asio::awaitable<std::optional<nlohmann::json>> prepare_and_start(TaskPtr task, bool& started);
  boost::asio::awaitable<void> watch(TaskPtr task);
  // `self_removing`: an adopted `docker run --rm` container (watch_adopted).
  boost::asio::awaitable<void> watch_guarded(TaskPtr task, bool self_removing = false);
  void spawn_watch(TaskPtr task, bool self_removing = false);

  // Migration from the Python runner (python_adoption.cpp).
  static const char* const kPythonLostMessage;
  // Its state store's task entries, on the first start on this node only
  // (else empty); every id read is logged.
  boost::asio::awaitable<std::map<int64_t, store::PythonStoreEntry>> read_python_store_once();
  boost::asio::awaitable<void> mark_python_store_read();
  // Removes the taken-over task entries from that store (rollback safety).
  boost::asio::awaitable<void> forget_in_python_store(std::vector<int64_t> ids);
  // Records an adopted task (row + memory); null when the id is taken.
  boost::asio::awaitable<TaskPtr> track_python_task(int64_t id, std::string started_at);
  // An unlabelled kohakuriver-task-<id> container: watched when running;
  // reported from its kept state when it ended and the store lists it.
  boost::asio::awaitable<void> adopt_python_task(int64_t id, nlohmann::json container, bool listed_in_store);
  boost::asio::awaitable<void> report_python_task_lost(int64_t id);
  boost::asio::awaitable<void> watch_adopted(TaskPtr task);
  boost::asio::awaitable<void> run_pipeline_steps(TaskPtr task, bool resumed);
  // Kill path (issue 6 item 2): one attempt; true when the container is
  // stopped or absent.
  boost::asio::awaitable<bool> try_kill_container(std::string name, std::chrono::milliseconds deadline);
  // Retries until the container is stopped/absent or the task is gone.
  boost::asio::awaitable<void> enforce_kill(TaskPtr task);
  boost::asio::awaitable<api::HttpResponse> kill(TaskPtr task);
  // Removes a container, retrying until Docker confirms it is gone (or
  // the runner stops); false only on stop.
  boost::asio::awaitable<bool> remove_container_until_gone(std::string name);
  // The store failed: stop and remove the container, report the task
  // failed (or its real outcome) from memory, forget it.
  boost::asio::awaitable<void> abandon(TaskPtr task, std::string why, std::optional<nlohmann::json> outcome);
  void remember_killed(int64_t id);
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
  // Ids whose kill completed, so a repeated kill answers like the first
  // (bounded: oldest forgotten first).
  std::deque<int64_t> killed_order_;
  std::set<int64_t> killed_recently_;
  uint64_t storage_failures_ = 0;
  bool network_ready_ = false;
  // One inspect-then-create at a time: startup reconciliation and the first
  // task both creating the network made Docker refuse the second ("Pool
  // overlaps ...") while the first was still being created (seen under TCG).
  AsyncMutex network_lock_;
};

}  // namespace kr::tasks
