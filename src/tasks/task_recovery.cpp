// Startup reconciliation for command tasks (execution.md §4.4 with the
// rulings D26/D-REATTACH, R-ORPHANSTOP, "Adopting the Python runner's
// work"): tracked containers still running are watched again, those that
// ended while the runner was down are reported with their real exit codes,
// the Python runner's unlabelled task containers are adopted, and nothing
// is run twice.
#include <charconv>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <spdlog/spdlog.h>

#include "common/datetime.hpp"
#include "docker/docker_error.hpp"
#include "tasks/container_spec.hpp"
#include "tasks/image_source.hpp"
#include "tasks/task_manager.hpp"

namespace kr::tasks {

namespace asio = boost::asio;
using json = nlohmann::json;
using docker::DockerError;

namespace {

void spawn_logged(asio::any_io_executor ex, asio::awaitable<void> work) {
  asio::co_spawn(ex, std::move(work), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("recovered task watcher ended with an error: {}", ex.what());
    }
  });
}

// Outside the coroutine (GCC 12 coroutine bug with braced initialisers).
json task_name_filter() { return json{{"name", json::array({"kohakuriver-task-"})}}; }

// The string at `key`, or "" when absent, null or not a string (Docker
// omits or nulls fields freely).
std::string str_field(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// The id of a `kohakuriver-task-<id>` name (S-ARGV shape), else nullopt.
std::optional<int64_t> task_id_from_container_name(const std::string& name) {
  static constexpr std::string_view kPrefix = "kohakuriver-task-";
  if (name.size() <= kPrefix.size() || name.compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
  const char* first = name.data() + kPrefix.size();
  const char* last = name.data() + name.size();
  if (*first < '0' || *first > '9') return std::nullopt;
  int64_t id = 0;
  auto [end, ec] = std::from_chars(first, last, id);
  if (ec != std::errc() || end != last) return std::nullopt;
  return id;
}

// A start that neither answers nor shows in the container's state this
// many times is a failure (about 8 minutes).
constexpr int kRecoveryStartAttempts = 4;

std::string container_name_of(const json& c) {
  if (c.contains("Names") && c["Names"].is_array() && !c["Names"].empty()) {
    std::string n = c["Names"][0].get<std::string>();
    return n.empty() || n[0] != '/' ? n : n.substr(1);
  }
  return "";
}

}  // namespace

// The container of a task the previous run had created may be starting
// already: the runner was killed while its start call was in flight, and
// dockerd finishes that start on its own (slowly on a loaded node; a
// second start waits for it). So a start call that fails is checked
// against the container before it becomes the task's outcome: one that
// left "created" did start and is watched, and a timed-out or unanswered
// call is retried (a start of a running container is a no-op, 304).
asio::awaitable<TaskManager::RecoveredStart> TaskManager::start_found_created(std::string name,
                                                                            std::optional<DockerError>& failure) {
  std::chrono::milliseconds backoff{1000};
  for (int attempt = 1;; ++attempt) {
    failure.reset();
    try {
      co_await deps_.docker.start_container(name, docker::kCreateStartDeadline);
      co_return RecoveredStart::Started;
    } catch (const DockerError& e) {
      failure = e;
    }
    if (failure->cancelled() || stop_.stopped()) co_return RecoveredStart::Stopped;
    std::string state;
    std::string started_at;
    try {
      const json info = co_await deps_.docker.inspect_container(name);
      if (info.contains("State")) {
        state = str_field(info["State"], "Status");
        started_at = str_field(info["State"], "StartedAt");
      }
    } catch (const DockerError&) {
    }
    // A start dockerd refused leaves "created"; "exited" with Docker's zero
    // time as StartedAt never ran either.
    const bool ran = !state.empty() && state != "created" &&
                     !(state == "exited" && (started_at.empty() || started_at.starts_with("0001-")));
    if (ran) {
      spdlog::info("Task container {}: the start call failed ({}) but the container did start ({})", name,
                   failure->message, state);
      co_return RecoveredStart::Started;
    }
    const bool transient = failure->daemon_unavailable() || failure->timed_out();
    if (!transient || attempt >= kRecoveryStartAttempts) co_return RecoveredStart::Failed;
    spdlog::warn("Task container {}: start not confirmed ({}); trying again in {} s", name, failure->message,
                 backoff.count() / 1000.0);
    if (!co_await stop_.sleep_for(backoff)) co_return RecoveredStart::Stopped;
    backoff *= 2;
  }
}

asio::awaitable<void> TaskManager::recover() {
  auto records = co_await deps_.store.load_tasks();
  // Listed in heartbeats (and guarded against duplicates) right away, even
  // while dockerd is still unreachable.
  std::vector<std::pair<TaskPtr, store::TaskRecord>> tracked;
  for (const auto& rec : records) {
    if (rec.kind != "task") continue;
    auto task = std::make_shared<Task>();
    task->id = rec.task_id;
    task->killed = rec.killed;
    task->started_at = rec.started_at.value_or(naive_local_now());
    auto parsed = parse_task_request(rec.request_json);
    if (auto* r = std::get_if<TaskRequest>(&parsed)) task->request = std::move(*r);
    tasks_[task->id] = task;
    tracked.emplace_back(task, rec);
  }

  // Read before the listing: a task it lists whose container is not in
  // the listing had ended before.
  auto python_tasks = co_await read_python_store_once();
  std::vector<int64_t> taken_over;  // every task entry of it: adopted or reported below
  for (const auto& [id, entry] : python_tasks) taken_over.push_back(id);

  json containers;
  std::chrono::milliseconds backoff{1000};
  for (;;) {
    try {
      try {
        co_await ensure_network();
      } catch (const DockerError& e) {
        if (e.daemon_unavailable() || e.timed_out()) throw;
        spdlog::warn("Cannot ensure Docker network {}: {}", deps_.cfg.docker_network_name, e.message);
      }
      containers = co_await deps_.docker.list_containers(true, task_name_filter());
      break;
    } catch (const DockerError& e) {
      if (e.cancelled()) co_return;
      spdlog::warn("Docker not reachable for startup reconciliation ({}); retrying in {} s", e.message,
                   backoff.count() / 1000.0);
    }
    if (!co_await stop_.sleep_for(backoff)) co_return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(15000));
  }

  std::map<std::string, json> by_name;
  for (const auto& c : containers) by_name[container_name_of(c)] = c;

  for (auto& [task, rec] : tracked) {
    const std::string name = task_container_name(task->id);
    auto it = by_name.find(name);
    std::optional<json> found;
    if (it != by_name.end()) {
      found = std::move(it->second);
      by_name.erase(it);
    }
    const json* c = found ? &*found : nullptr;
    python_tasks.erase(task->id);  // ours already (never on a first start)
    if (task->killed) {
      spdlog::info("Task {} was killed before the restart; cleaning up", task->id);
      co_await finish(task, std::nullopt);
      continue;
    }
    if (!c) {
      if (rec.phase == "accepted" || rec.phase == "provisioning" || rec.phase == "creating") {
        // The container was never created: the work has not run yet, so
        // running it now does not run it twice.
        spdlog::info("Task {} was still provisioning when the runner stopped; resuming", task->id);
        spawn_logged(ex_, run_pipeline(task, true));
      } else {
        spdlog::warn("Task {}: container {} is gone", task->id, name);
        co_await finish(task, report(task->id, "stopped", -1,
                                     "Container not found on runner startup (runner may have restarted).",
                                     std::nullopt, true));
      }
      continue;
    }
    const std::string state = str_field(*c, "State");
    if (rec.phase == "accepted" || rec.phase == "provisioning" || rec.phase == "creating") {
      // The runner stopped between create and the `running` report (or
      // before the phase update after it): report `running` now, so the
      // host never sees a final status for a task it never saw run. A
      // duplicate (the report was made, the phase update was not) is
      // harmless: the host accepts identical updates.
      std::optional<std::string> storage_error;
      try {
        co_await push_report(task->id, report(task->id, "running", {}, {}, task->started_at, false));
      } catch (const std::exception& e) {
        storage_error = e.what();
      }
      if (storage_error) {
        co_await abandon(task, *storage_error, std::nullopt);
        continue;
      }
    }
    if (state == "created") {
      spdlog::info("Task {}: container created but never started; starting it", task->id);
      std::optional<DockerError> failure;
      const RecoveredStart started = co_await start_found_created(name, failure);
      if (started == RecoveredStart::Stopped) co_return;  // shutdown: no verdict, the row stays
      if (started == RecoveredStart::Failed) {
        auto fs = map_start_failure(failure->status, failure->message, StartPhase::Start);
        co_await finish(task, report(task->id, fs.status, fs.exit_code, fs.message, task->started_at, true));
        continue;
      }
      std::optional<std::string> storage_error;
      try {
        co_await deps_.store.update_task(task->id, "running");
      } catch (const std::exception& e) {
        storage_error = e.what();
      }
      if (storage_error) {
        co_await abandon(task, *storage_error, std::nullopt);
        continue;
      }
    } else {
      spdlog::info("Task {}: re-attaching to {} ({})", task->id, name, state);
    }
    // A `docker run --rm` container of the Python runner adopted before
    // this restart removes itself on exit.
    spawn_watch(task, rec.extra_json.find("adopted_from") != std::string::npos);
  }

  // Containers of ours without a row.
  for (auto& [name, c] : by_name) {
    const json labels = c.contains("Labels") ? c["Labels"] : json(nullptr);
    const std::string node = str_field(labels, "kohakuriver.node");
    if (node.empty()) {
      // No label of ours: started by the Python runner on this node (its
      // `docker run --rm`); adopted, never reaped.
      auto id = task_id_from_container_name(name);
      if (!id) continue;
      const bool listed = python_tasks.erase(*id) > 0;
      co_await adopt_python_task(*id, c, listed);
      continue;
    }
    const bool ours = node == deps_.hostname && str_field(labels, "kohakuriver.kind") == "task";
    if (!ours) {
      // Another node sharing this daemon (R-ORPHANSTOP): not ours to touch.
      spdlog::warn("Leaving container {} of node {} alone", name, node);
      continue;
    }
    int64_t id = 0;
    try {
      id = std::stoll(str_field(labels, "kohakuriver.task_id"));
    } catch (const std::exception&) {
      continue;
    }
    if (str_field(c, "State") != "running" && str_field(c, "State") != "paused") {
      // Its final report was made durable before the crash that kept it
      // from being removed (the row is deleted only after that).
      spdlog::info("Removing finished container {} (already reported)", name);
      co_await remove_container_quietly(name);
      continue;
    }
    // Running but untracked (the state directory was reset): adopt it.
    auto task = std::make_shared<Task>();
    task->id = id;
    task->started_at = naive_local_now();
    try {
      json info = co_await deps_.docker.inspect_container(name);
      if (auto t = parse_docker_created(str_field(info["State"], "StartedAt")))
        task->started_at = naive_local_iso(std::chrono::system_clock::time_point(std::chrono::seconds(*t)));
    } catch (const DockerError&) {
    }
    store::TaskRecord rec;
    rec.task_id = id;
    rec.kind = "task";
    rec.container_name = name;
    rec.phase = "running";
    rec.started_at = task->started_at;
    if (!co_await deps_.store.insert_task(rec)) continue;
    tasks_[id] = task;
    spdlog::info("Adopted untracked running task container {}", name);
    spawn_watch(task);
  }

  // Listed by the Python runner's store, container gone: ended (or was
  // removed) while no runner was up; upstream reports such a task lost.
  for (const auto& [id, entry] : python_tasks) co_await report_python_task_lost(id);
  co_await forget_in_python_store(std::move(taken_over));
  co_await mark_python_store_read();
  spdlog::info("Task startup reconciliation done");
}

}  // namespace kr::tasks
