#include "tasks/task_manager.hpp"

#include <filesystem>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "common/datetime.hpp"
#include "host_link/status_update.hpp"
#include "docker/docker_error.hpp"
#include "metrics/metrics.hpp"
#include "tasks/container_spec.hpp"
#include "store/sqlite.hpp"
#include "tasks/log_paths.hpp"

namespace kr::tasks {

namespace asio = boost::asio;
using json = nlohmann::json;
using docker::DockerError;

namespace {

// A failure before the container runs; reported as
// "Task execution failed: <what>" (R-SILENT).
struct PipelineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Wait long-polls are re-issued after this; a deadline is still required on
// every Docker call.
constexpr std::chrono::hours kWaitSlice{6};
// The host gives kill/pause/resume 10 s: Docker calls made while it waits
// get less.
constexpr std::chrono::seconds kKillAttemptDeadline{4};
constexpr std::chrono::seconds kRemoveDeadline{15};
// Storage checks made while a request waits, and log directory creation
// (shared storage may hang: these fail with a clear error instead).
constexpr std::chrono::seconds kTempDirCheckDeadline{5};
constexpr std::chrono::seconds kLogDirDeadline{30};
constexpr std::size_t kKilledMemory = 4096;

BlockingLane& temp_dir_lane() {
  static auto* lane = new BlockingLane("LOCAL_TEMP_DIR check", 2);
  return *lane;
}
BlockingLane& log_dir_lane() {
  static auto* lane = new BlockingLane("log directory creation", 4);
  return *lane;
}

void spawn(asio::any_io_executor ex, asio::awaitable<void> work, const char* what) {
  asio::co_spawn(ex, std::move(work), [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{} ended with an error: {}", what, ex.what());
    }
  });
}

// Built outside the coroutine: GCC 12 miscompiles braced initialisers with
// string literals inside coroutine bodies ("array used as initializer").
json build_body_or_throw(const TaskRequest& rq, const config::RunnerConfig& cfg, const TaskContainerContext& ctx,
                         std::vector<std::string>& warnings) {
  try {
    return build_task_create_body(rq, cfg, ctx, &warnings);
  } catch (const SpecError& e) {
    throw PipelineError(e.what());
  }
}

json network_create_body(const config::RunnerConfig& cfg) {
  json pool = {{"Subnet", cfg.docker_network_subnet}, {"Gateway", cfg.docker_network_gateway}};
  json ipam = {{"Config", json::array({pool})}};
  return json{{"Name", cfg.docker_network_name}, {"Driver", "bridge"}, {"CheckDuplicate", true}, {"IPAM", ipam}};
}

}  // namespace

TaskManager::TaskManager(asio::any_io_executor ex, TaskManagerDeps deps)
    : ex_(ex), deps_(std::move(deps)), images_(deps_.docker, deps_.cfg), stop_(ex) {}

std::vector<int64_t> TaskManager::running_task_ids() const {
  std::vector<int64_t> ids;
  ids.reserve(tasks_.size());
  for (const auto& [id, t] : tasks_) ids.push_back(id);
  return ids;
}

std::map<std::string, int64_t> TaskManager::task_states() const {
  std::map<std::string, int64_t> out;
  for (const auto& [id, t] : tasks_) ++out[t->killed ? "killing" : t->watching ? "running" : "provisioning"];
  return out;
}

void TaskManager::remember_killed(int64_t id) {
  if (!killed_recently_.insert(id).second) return;
  killed_order_.push_back(id);
  if (killed_order_.size() > kKilledMemory) {
    killed_recently_.erase(killed_order_.front());
    killed_order_.pop_front();
  }
}

void TaskManager::start() { spawn(ex_, recover(), "task recovery"); }

void TaskManager::stop() { stop_.stop(); }

json TaskManager::report(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                         std::optional<std::string> message, std::optional<std::string> started_at,
                         bool completed) const {
  return host_link::status_update_body(id, status, exit_code, message, started_at, completed);
}

asio::awaitable<void> TaskManager::push_report(int64_t id, json r) {
  co_await deps_.outbox.push(id, r.dump(), false);
}

asio::awaitable<std::string> TaskManager::ensure_network() {
  const auto& cfg = deps_.cfg;
  if (network_ready_) co_return cfg.docker_network_name;
  auto guard = co_await network_lock_.lock();
  if (!network_ready_) {
    auto existing = co_await deps_.docker.inspect_network(cfg.docker_network_name);
    if (!existing) {
      spdlog::info("Creating Docker network {} ({}, gateway {})", cfg.docker_network_name,
                   cfg.docker_network_subnet, cfg.docker_network_gateway);
      std::optional<DockerError> failure;
      try {
        co_await deps_.docker.create_network(network_create_body(cfg));
      } catch (const DockerError& e) {
        if (!e.conflict()) failure = e;  // 409: created concurrently, fine
      }
      // Created concurrently by another process without a name conflict
      // (Docker then refuses ours with "Pool overlaps ..."), or a create that
      // timed out after the daemon made it: fine if the network exists now.
      if (failure && (failure->cancelled() || !co_await deps_.docker.inspect_network(cfg.docker_network_name)))
        throw *failure;
    }
    network_ready_ = true;
  }
  co_return cfg.docker_network_name;
}

asio::awaitable<overlay::ContainerNetwork> TaskManager::container_network(std::optional<std::string> reserved_ip) {
  overlay::ContainerNetwork net;
  if (deps_.overlay) net = co_await deps_.overlay->container_network(reserved_ip);
  if (!net.overlay) {
    net.name = co_await ensure_network();
    net.gateway = deps_.cfg.docker_network_gateway;
  }
  co_return net;
}

asio::awaitable<void> TaskManager::remove_container_quietly(std::string name) {
  try {
    co_await deps_.docker.remove_container(name, /*force=*/true);
  } catch (const DockerError& e) {
    if (!e.not_found()) spdlog::warn("Removing container {} failed: {}", name, e.message);
  }
}

asio::awaitable<bool> TaskManager::remove_container_until_gone(std::string name) {
  std::chrono::milliseconds backoff{500};
  for (int attempt = 1;; ++attempt) {
    std::optional<DockerError> failure;
    try {
      co_await deps_.docker.remove_container(name, /*force=*/true, false, kRemoveDeadline);
      co_return true;
    } catch (const DockerError& e) {
      failure = e;
    }
    if (failure->not_found()) co_return true;
    if (attempt == 1 || attempt % 10 == 0)
      spdlog::warn("Removing container {} failed ({}); retrying", name, failure->message);
    if (!co_await stop_.sleep_for(backoff)) co_return false;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
  }
}

asio::awaitable<void> TaskManager::finish(TaskPtr task, std::optional<json> final_report) {
  const int64_t id = task->id;
  const std::string name = task_container_name(id);
  if (!task->killed) {
    if (final_report && (*final_report)["message"].is_null() && !task->image_warning.empty())
      (*final_report)["message"] = task->image_warning;
    store::FinishOutcome outcome = store::FinishOutcome::NoSuchTask;
    std::optional<std::string> storage_error;
    try {
      if (final_report)
        outcome = co_await deps_.store.finish_task(id, final_report->dump());
      else
        co_await deps_.store.delete_task(id);
    } catch (const std::exception& e) {
      storage_error = e.what();
    }
    if (storage_error) {
      co_await abandon(task, *storage_error, final_report);
      co_return;
    }
    if (outcome == store::FinishOutcome::Reported) {
      spdlog::info("Task {} finished: {} (exit {})", id, (*final_report)["status"].get<std::string>(),
                   (*final_report)["exit_code"].dump());
      metrics::task_finished("task", (*final_report)["status"].get<std::string>());
    }
    tasks_.erase(id);
    // Only now that the outcome is durable may the exit code disappear. Until
    // gone: a container that ended because dockerd is stopping cannot be
    // removed before dockerd is back (issue 19: it was left behind).
    co_await remove_container_until_gone(name);
    co_return;
  }
  // Killed: no report (upstream; the host recorded the kill itself). The
  // row goes only once the container is confirmed gone, so a restart in
  // between redoes the cleanup; until then the task stays listed.
  if (!co_await remove_container_until_gone(name)) co_return;  // stopping
  std::optional<std::string> storage_error;
  try {
    co_await deps_.store.delete_task(id);
  } catch (const std::exception& e) {
    storage_error = e.what();
  }
  if (storage_error) spdlog::error("Task {}: container removed, but its row could not be deleted: {}", id, *storage_error);
  spdlog::info("Task {} ended after a kill; container {} removed, no report (upstream)", id, name);
  metrics::task_finished("task", "killed");
  tasks_.erase(id);
  remember_killed(id);
}

asio::awaitable<void> TaskManager::abandon(TaskPtr task, std::string why, std::optional<json> outcome) {
  const int64_t id = task->id;
  ++storage_failures_;
  spdlog::error("Task {}: the runner state store failed ({}); stopping the task rather than leaving it untracked",
                id, why);
  task->provisioning.cancel();
  // Its state can no longer be tracked durably: the container must not be
  // left running (it may hold GPUs) with nobody watching it.
  co_await remove_container_until_gone(task_container_name(id));
  if (!task->killed) {
    json r = outcome ? *outcome
                     : report(id, "failed", std::nullopt, "Runner state storage failed: " + why + "; the task was stopped.",
                              task->started_at, true);
    if (outcome) {
      std::string note = "Runner state storage failed (" + why + "); this report was not stored durably.";
      r["message"] = r["message"].is_string() ? r["message"].get<std::string>() + " " + note : note;
    }
    // The outbox's table is in the same store: queue it in memory.
    deps_.outbox.push_volatile(id, r.dump(), true);
  }
  tasks_.erase(id);
  try {
    co_await deps_.store.delete_task(id);
  } catch (const std::exception&) {
    // Already logged by the store; the next start finds the row with no
    // container and reports it stopped.
  }
}

asio::awaitable<api::HttpResponse> TaskManager::execute(api::HttpRequest& req) {
  auto parsed = parse_task_request(req.body);
  if (auto* err = std::get_if<json>(&parsed)) co_return api::HttpResponse::json(422, *err);
  TaskRequest request = std::get<TaskRequest>(std::move(parsed));
  const int64_t id = request.task_id;
  const std::string duplicate = "Task " + std::to_string(id) + " is already running on this node.";
  if (tasks_.count(id)) co_return api::HttpResponse::detail(409, duplicate);
  const std::string temp_dir = deps_.cfg.local_temp_dir;
  // Lambdas are named before co_await: GCC 12 destroys the captures of a
  // lambda written inside a co_await expression twice.
  auto temp_dir_exists = [temp_dir] {
    std::error_code ec;
    return std::filesystem::is_directory(temp_dir, ec);
  };
  bool temp_ok = false;
  std::string temp_error;
  try {
    temp_ok = co_await run_blocking_for(temp_dir_lane(), kTempDirCheckDeadline, temp_dir_exists);
  } catch (const std::exception& e) {
    temp_error = e.what();
  }
  if (!temp_error.empty()) {
    spdlog::error("Checking LOCAL_TEMP_DIR {} failed: {}", temp_dir, temp_error);
    co_return api::HttpResponse::detail(500, "LOCAL_TEMP_DIR check failed on node: " + temp_error);
  }
  if (!temp_ok) co_return api::HttpResponse::detail(500, "Configuration error: LOCAL_TEMP_DIR missing on node.");
  if (tasks_.count(id)) co_return api::HttpResponse::detail(409, duplicate);

  // Reserve the id now (R-DUP) and list it in heartbeats from acceptance (D9).
  auto task = std::make_shared<Task>();
  task->id = id;
  task->started_at = naive_local_now();
  task->request = std::move(request);
  tasks_[id] = task;
  store::TaskRecord rec;
  rec.task_id = id;
  rec.kind = "task";
  rec.container_name = task_container_name(id);
  rec.phase = "accepted";
  rec.request_json = req.body;
  rec.started_at = task->started_at;
  bool fresh = false;
  try {
    fresh = co_await deps_.store.insert_task(rec);
  } catch (const std::exception& e) {
    tasks_.erase(id);
    spdlog::error("Cannot record task {}: {}", id, e.what());
    co_return api::HttpResponse::detail(500, "Failed to record task " + std::to_string(id) + ".");
  }
  if (!fresh) {
    tasks_.erase(id);
    co_return api::HttpResponse::detail(409, duplicate);
  }
  spawn(ex_, run_pipeline(task, false), "task pipeline");
  co_return api::HttpResponse::json(200, json{{"message", "Task accepted for launch"}, {"task_id", id}});
}

asio::awaitable<void> TaskManager::run_pipeline(TaskPtr task, bool resumed) {
  std::optional<std::string> storage_error;
  try {
    co_await run_pipeline_steps(task, resumed);
  } catch (const store::StoreError& e) {
    storage_error = e.what();
  }
  if (storage_error) co_await abandon(task, *storage_error, std::nullopt);
}

asio::awaitable<void> TaskManager::run_pipeline_steps(TaskPtr task, bool resumed) {
  const int64_t id = task->id;
  if (!resumed) co_await push_report(id, report(id, "pending", {}, {}, task->started_at, false));
  // `co_await` is not allowed inside a catch block, so failures are turned
  // into a final report here and sent after the try.
  std::optional<json> final_report;
  bool started = false;
  try {
    final_report = co_await prepare_and_start(task, started);
  } catch (const store::StoreError&) {
    throw;  // not the task's fault: handled by run_pipeline
  } catch (const std::exception& e) {
    spdlog::warn("Task {} failed before running: {}", id, e.what());
    final_report = report(id, "failed", {}, std::string("Task execution failed: ") + e.what(), task->started_at, true);
  }
  if (stop_.stopped()) {
    // Shutdown cancelled Docker calls mid-way: that is no verdict on the
    // task. Its row stays; the next start resumes or re-attaches it.
    co_return;
  }
  if (final_report || !started) {
    co_await finish(task, final_report);
    co_return;
  }
  co_await watch(task);
}

asio::awaitable<std::optional<json>> TaskManager::prepare_and_start(TaskPtr task, bool& started) {
  const int64_t id = task->id;
  const TaskRequest& rq = task->request;
  const std::string name = task_container_name(id);
  for (const std::string* p : {&rq.stdout_path, &rq.stderr_path})
    if (auto err = check_log_path(*p, deps_.cfg.shared_dir)) throw PipelineError(*err);
  // From the normalised paths: the check above was made on those.
  // Created without following symlinks planted in the shared logs tree.
  auto make_log_dirs = [out = rq.stdout_path, err = rq.stderr_path, shared = deps_.cfg.shared_dir] {
    for (const auto& p : {out, err})
      if (auto e = make_log_parent_dirs(p, shared)) throw PipelineError(*e);
  };
  co_await run_blocking_for(log_dir_lane(), kLogDirDeadline, make_log_dirs);

  co_await deps_.store.update_task(id, "provisioning");
  const bool registry = rq.registry_image && !rq.registry_image->empty();
  SyncOutcome image;  // no co_await inside ?: (GCC 12 miscompiles it)
  if (registry)
    image = co_await images_.ensure_registry_image(*rq.registry_image, task->provisioning);
  else
    image = co_await images_.sync_environment(rq.container_name.value_or(""), task->provisioning);
  if (task->killed) co_return std::nullopt;  // killed while provisioning: no report
  if (!image.warning.empty()) {
    task->image_warning = image.warning;
    spdlog::warn("Task {}: {}", id, image.warning);
  }
  if (!image.ok) {
    std::string msg = registry ? "Failed to pull registry image '" + *rq.registry_image + "'"
                               : "Docker image sync failed for container '" + rq.container_name.value_or("") + "'";
    co_return report(id, "failed", {}, msg, std::nullopt, true);
  }

  TaskContainerContext ctx;
  ctx.hostname = deps_.hostname;
  // Throws (failing the task with the reason) when a reserved_ip cannot be
  // honoured (decision O12).
  auto net = co_await container_network(rq.reserved_ip);
  ctx.network = net.name;
  ctx.container_gateway = net.gateway;
  ctx.tunnel_client_path = deps_.tunnel_client_path;
  ctx.numa_cpus = deps_.numa_cpus;
  std::vector<std::string> warnings;
  json body = build_body_or_throw(rq, deps_.cfg, ctx, warnings);
  for (const auto& w : warnings) spdlog::warn("Task {}: {}", id, w);

  co_await deps_.store.update_task(id, "creating");
  if (task->killed) co_return std::nullopt;
  std::optional<docker::DockerError> failure;
  try {
    co_await deps_.docker.create_container(name, body, docker::kCreateStartDeadline);
  } catch (const DockerError& e) {
    if (e.daemon_unavailable() || e.timed_out()) throw;
    failure = e;
  }
  // Killed while creating: never start it (finish removes it).
  if (task->killed) co_return std::nullopt;
  // Upstream reports running just before spawning `docker run`.
  std::optional<std::string> note;
  if (!task->image_warning.empty()) note = task->image_warning;
  co_await push_report(id, report(id, "running", {}, note, task->started_at, false));
  if (failure) {
    auto fs = map_start_failure(failure->status, failure->message, StartPhase::Create);
    co_return report(id, fs.status, fs.exit_code, fs.message, task->started_at, true);
  }
  try {
    co_await deps_.docker.start_container(name, docker::kCreateStartDeadline);
  } catch (const DockerError& e) {
    if (e.daemon_unavailable() || e.timed_out()) throw;
    failure = e;
  }
  if (failure) {
    auto fs = map_start_failure(failure->status, failure->message, StartPhase::Start);
    co_return report(id, fs.status, fs.exit_code, fs.message, task->started_at, true);
  }
  started = true;
  co_await deps_.store.update_task(id, "running");
  spdlog::info("Task {} started in {}", id, name);
  if (task->killed) {  // a kill raced with create/start
    bool stopped = co_await try_kill_container(name, kKillAttemptDeadline);
    if (!stopped) spawn(ex_, enforce_kill(task), "task kill");
  }
  co_return std::nullopt;
}

void TaskManager::spawn_watch(TaskPtr task, bool self_removing) {
  spawn(ex_, watch_guarded(std::move(task), self_removing), "task watcher");
}

asio::awaitable<void> TaskManager::watch_guarded(TaskPtr task, bool self_removing) {
  std::optional<std::string> storage_error;
  try {
    if (self_removing)
      co_await watch_adopted(task);
    else
      co_await watch(task);
  } catch (const store::StoreError& e) {
    storage_error = e.what();
  }
  if (storage_error) co_await abandon(task, *storage_error, std::nullopt);
}

asio::awaitable<void> TaskManager::watch(TaskPtr task) {
  const std::string name = task_container_name(task->id);
  task->watching = true;
  std::chrono::milliseconds backoff{500};
  for (;;) {
    if (stop_.stopped()) co_return;
    std::optional<json> final_report;
    bool gone = false;
    try {
      co_await deps_.docker.wait_container(name, kWaitSlice);
      json info = co_await deps_.docker.inspect_container(name);
      const json& state = info["State"];
      if (state.value("Running", false) || state.value("Restarting", false)) continue;
      auto fs = map_container_exit(state.value("ExitCode", -1), state.value("OOMKilled", false));
      final_report = report(task->id, fs.status, fs.exit_code, fs.message, task->started_at, true);
    } catch (const DockerError& e) {
      if (e.cancelled() || stop_.stopped()) co_return;
      if (e.timed_out()) continue;
      gone = e.not_found();
      if (!gone) spdlog::warn("Watching {} failed ({}); retrying in {} ms", name, e.message, backoff.count());
    }
    if (gone) {
      // Removed behind our back: the exit code went with it.
      final_report = report(task->id, "stopped", -1, "Container not found (removed outside the runner).",
                            std::nullopt, true);
    }
    if (final_report) {
      co_await finish(task, final_report);
      co_return;
    }
    if (!co_await stop_.sleep_for(backoff)) co_return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
  }
}

}  // namespace kr::tasks
