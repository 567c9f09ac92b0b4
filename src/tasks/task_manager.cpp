#include "tasks/task_manager.hpp"

#include <filesystem>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "common/datetime.hpp"
#include "docker/docker_error.hpp"
#include "metrics/metrics.hpp"
#include "tasks/container_spec.hpp"
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
// dockerd serialises much of create/start: under a burst of hundreds of
// tasks on a small node one call can queue for a while, so these get more
// than the client's 30 s default.
constexpr std::chrono::seconds kCreateStartDeadline{120};

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
  for (const auto& [id, t] : tasks_)
    if (!t->killed) ids.push_back(id);
  return ids;
}

std::map<std::string, int64_t> TaskManager::task_states() const {
  std::map<std::string, int64_t> out;
  for (const auto& [id, t] : tasks_) ++out[t->killed ? "killing" : t->watching ? "running" : "provisioning"];
  return out;
}

void TaskManager::start() { spawn(ex_, recover(), "task recovery"); }

void TaskManager::stop() { stop_.stop(); }

json TaskManager::report(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                         std::optional<std::string> message, std::optional<std::string> started_at,
                         bool completed) const {
  auto opt = [](const auto& o) -> json { return o ? json(*o) : json(nullptr); };
  return json{{"task_id", id},
              {"status", status},
              {"exit_code", opt(exit_code)},
              {"message", opt(message)},
              {"started_at", opt(started_at)},
              {"completed_at", completed ? json(naive_local_now()) : json(nullptr)},
              {"ssh_port", nullptr}};
}

asio::awaitable<void> TaskManager::push_report(int64_t id, json r) {
  co_await deps_.outbox.push(id, r.dump(), false);
}

asio::awaitable<std::string> TaskManager::ensure_network() {
  const auto& cfg = deps_.cfg;
  if (!network_ready_) {
    auto existing = co_await deps_.docker.inspect_network(cfg.docker_network_name);
    if (!existing) {
      spdlog::info("Creating Docker network {} ({}, gateway {})", cfg.docker_network_name,
                   cfg.docker_network_subnet, cfg.docker_network_gateway);
      try {
        co_await deps_.docker.create_network(network_create_body(cfg));
      } catch (const DockerError& e) {
        if (!e.conflict()) throw;  // created concurrently: fine
      }
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

asio::awaitable<void> TaskManager::finish(TaskPtr task, std::optional<json> final_report) {
  const int64_t id = task->id;
  store::FinishOutcome outcome = store::FinishOutcome::WasKilled;
  if (final_report && !task->killed) {
    outcome = co_await deps_.store.finish_task(id, final_report->dump());
    if (outcome == store::FinishOutcome::Reported)
      spdlog::info("Task {} finished: {} (exit {})", id, (*final_report)["status"].get<std::string>(),
                   (*final_report)["exit_code"].dump());
  } else {
    co_await deps_.store.delete_task(id);
  }
  if (outcome == store::FinishOutcome::WasKilled) spdlog::info("Task {} ended after a kill; no report (upstream)", id);
  if (outcome == store::FinishOutcome::Reported)
    metrics::task_finished("task", (*final_report)["status"].get<std::string>());
  else if (outcome == store::FinishOutcome::WasKilled)
    metrics::task_finished("task", "killed");
  tasks_.erase(id);
  // Only now that the outcome is durable may the exit code disappear.
  co_await remove_container_quietly(task_container_name(id));
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
  bool temp_ok = co_await run_blocking(temp_dir_exists);
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
  const int64_t id = task->id;
  if (!resumed) co_await push_report(id, report(id, "pending", {}, {}, task->started_at, false));
  // `co_await` is not allowed inside a catch block, so failures are turned
  // into a final report here and sent after the try.
  std::optional<json> final_report;
  bool started = false;
  try {
    final_report = co_await prepare_and_start(task, started);
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
  std::string out = lexically_normal_path(rq.stdout_path), err = lexically_normal_path(rq.stderr_path);
  auto make_log_dirs = [out, err] {
    namespace fs = std::filesystem;
    for (const auto& p : {fs::path(out).parent_path(), fs::path(err).parent_path()}) {
      std::error_code ec;
      fs::create_directories(p, ec);
      if (ec) throw PipelineError("cannot create log directory " + p.string() + ": " + ec.message());
    }
  };
  co_await run_blocking(make_log_dirs);

  co_await deps_.store.update_task(id, "provisioning");
  const bool registry = rq.registry_image && !rq.registry_image->empty();
  SyncOutcome image;  // no co_await inside ?: (GCC 12 miscompiles it)
  if (registry)
    image = co_await images_.ensure_registry_image(*rq.registry_image);
  else
    image = co_await images_.sync_environment(rq.container_name.value_or(""));
  if (!image.ok) {
    std::string msg = registry ? "Failed to pull registry image '" + *rq.registry_image + "'"
                               : "Docker image sync failed for container '" + rq.container_name.value_or("") + "'";
    co_return report(id, "failed", {}, msg, std::nullopt, true);
  }
  if (task->killed) co_return std::nullopt;  // killed while provisioning: no report

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
  std::optional<docker::DockerError> failure;
  try {
    co_await deps_.docker.create_container(name, body, kCreateStartDeadline);
  } catch (const DockerError& e) {
    if (e.daemon_unavailable() || e.timed_out()) throw;
    failure = e;
  }
  // Upstream reports running just before spawning `docker run`.
  co_await push_report(id, report(id, "running", {}, {}, task->started_at, false));
  if (failure) {
    auto fs = map_start_failure(failure->status, failure->message, StartPhase::Create);
    co_return report(id, fs.status, fs.exit_code, fs.message, task->started_at, true);
  }
  try {
    co_await deps_.docker.start_container(name, kCreateStartDeadline);
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
    try {
      co_await deps_.docker.kill_container(name);
    } catch (const DockerError&) {
    }
  }
  co_return std::nullopt;
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
