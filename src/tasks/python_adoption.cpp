// Taking over the command tasks the Python runner left on this node
// (decisions "Adopting the Python runner's work", issue 18): its task
// containers are `docker run --rm` containers named kohakuriver-task-<id>
// without our labels; its state store says which tasks it had started, so
// those that ended while no runner was up (an --rm container leaves no
// trace) are reported lost instead of staying `running` at the host.
#include <boost/asio/co_spawn.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
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

constexpr std::chrono::hours kWaitSlice{6};
constexpr std::chrono::seconds kStoreReadDeadline{30};

BlockingLane& python_store_lane() {
  static auto* lane = new BlockingLane("Python runner state store read", 1);
  return *lane;
}

std::string str_field(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

const char* const TaskManager::kPythonLostMessage =
    "Container not found on runner startup: this task was started by the previous (Python) runner, "
    "which stopped before the task ended; its exit code is unknown.";

asio::awaitable<std::map<int64_t, store::PythonStoreEntry>> TaskManager::read_python_store_once() {
  std::map<int64_t, store::PythonStoreEntry> tasks;
  bool pending = false;
  try {
    pending = co_await deps_.store.python_store_read_pending();
  } catch (const std::exception& e) {
    spdlog::error("Cannot tell whether the Python runner's state store was read before: {}", e.what());
  }
  if (!pending) {
    // An earlier start read the store and stopped before its takeover was
    // done: resume from the ids it saved, never from the file again (a
    // container may have written it since).
    std::optional<std::vector<int64_t>> saved;
    try {
      saved = co_await deps_.store.python_store_saved_tasks();
    } catch (const std::exception& e) {
      spdlog::error("Cannot read the task ids saved from the Python runner's state store: {}", e.what());
    }
    if (!saved) co_return tasks;
    spdlog::warn("An earlier start read the Python runner's state store and stopped before its takeover was done: "
                 "resuming with the {} task(s) it listed (the store itself is not read again)",
                 saved->size());
    for (int64_t id : *saved) {
      spdlog::info("Python runner state store listed task {} (saved by the earlier start)", id);
      tasks.emplace(id, store::PythonStoreEntry{id, task_container_name(id), "task"});
    }
    co_return tasks;
  }
  const std::string temp = deps_.cfg.local_temp_dir;
  const std::string scratch = deps_.cfg.state_dir;
  auto read = [temp, scratch] { return store::read_python_store(temp, scratch); };
  store::PythonStoreContents contents;
  try {
    contents = co_await run_blocking_for(python_store_lane(), kStoreReadDeadline, read);
  } catch (const std::exception& e) {
    contents.present = true;
    contents.error = e.what();
  }
  for (const auto& e : contents.entries)
    if (e.kind == "task") tasks.emplace(e.task_id, e);
  // Durable before anything read is acted on, and before it is logged (a
  // log line saying it was read means it will not be read again).
  std::vector<int64_t> ids;
  for (const auto& [id, e] : tasks) ids.push_back(id);
  try {
    co_await deps_.store.save_python_store_read(std::move(ids));
  } catch (const std::exception& e) {
    spdlog::error("Cannot record that the Python runner's state store was read ({}): a restart before this start's "
                  "takeover is done would read it again",
                  e.what());
  }
  const std::string path = store::python_store_path(temp).string();
  if (!contents.present) {
    spdlog::info("First start on this node: no Python runner state store at {}", path);
  } else if (contents.error) {
    spdlog::error("First start on this node: the Python runner state store {} could not be read ({}); "
                  "tasks it started that ended while no runner was up will not be reported",
                  path, *contents.error);
  } else {
    spdlog::info("First start on this node: read the Python runner state store {} (read only): {} entries, {} rejected",
                 path, contents.entries.size(), contents.rejected.size());
  }
  for (const auto& r : contents.rejected) spdlog::warn("Python runner state store: ignoring malformed entry {}", r);
  for (const auto& e : contents.entries)
    spdlog::info("Python runner state store lists {} {} (container {})", e.kind, e.task_id, e.container_name);
  co_return tasks;
}

asio::awaitable<void> TaskManager::forget_in_python_store(std::vector<int64_t> ids) {
  if (ids.empty()) co_return;
  const std::string temp = deps_.cfg.local_temp_dir;
  const std::string scratch = deps_.cfg.state_dir;
  auto edit = [temp, scratch, ids] { return store::remove_python_store_entries(temp, scratch, ids); };
  std::optional<std::string> error;
  try {
    error = co_await run_blocking_for(python_store_lane(), kStoreReadDeadline, edit);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (error)
    spdlog::error("Could not remove the {} task(s) taken over from the Python runner's state store ({}): before a "
                  "rollback to the Python runner, move that store aside (docs/migration.md)",
                  ids.size(), *error);
  else
    spdlog::info("Removed the {} task(s) taken over from the Python runner's state store, so that a rollback "
                 "does not report them again",
                 ids.size());
}

asio::awaitable<void> TaskManager::mark_python_store_read() {
  try {
    co_await deps_.store.mark_python_store_read();
  } catch (const std::exception& e) {
    spdlog::error("Cannot record that the Python runner's state store was read: {}", e.what());
  }
}

asio::awaitable<TaskManager::TaskPtr> TaskManager::track_python_task(int64_t id, std::string started_at) {
  auto task = std::make_shared<Task>();
  task->id = id;
  task->started_at = std::move(started_at);
  store::TaskRecord rec;
  rec.task_id = id;
  rec.kind = "task";
  rec.container_name = task_container_name(id);
  rec.phase = "running";
  rec.started_at = task->started_at;
  rec.extra_json = R"({"adopted_from":"python-runner"})";
  bool fresh = false;
  try {
    fresh = co_await deps_.store.insert_task(rec);
  } catch (const std::exception& e) {
    spdlog::error("Cannot record adopted task {}: {}", id, e.what());
  }
  if (!fresh) co_return nullptr;
  tasks_[id] = task;
  co_return task;
}

asio::awaitable<void> TaskManager::adopt_python_task(int64_t id, json container, bool listed_in_store) {
  const std::string name = task_container_name(id);
  const std::string state = str_field(container, "State");
  std::string started_at = naive_local_now();
  bool auto_remove = false;
  std::optional<json> info;
  try {
    info = co_await deps_.docker.inspect_container(name);
  } catch (const DockerError& e) {
    if (!e.not_found()) spdlog::warn("Inspecting {} failed: {}", name, e.message);
  }
  if (info) {
    if (auto t = parse_docker_created(str_field((*info)["State"], "StartedAt")))
      started_at = naive_local_iso(std::chrono::system_clock::time_point(std::chrono::seconds(*t)));
    const json& hc = (*info)["HostConfig"];
    auto_remove = hc.is_object() && hc.value("AutoRemove", false);
  }
  if (state == "running" || state == "paused") {
    auto task = co_await track_python_task(id, started_at);
    if (!task) co_return;
    spdlog::info("Adopted task {}: container {} ({}) started by the previous (Python) runner{}", id, name, state,
                 listed_in_store ? "" : " (not in its state store)");
    spawn_watch(task, auto_remove);
    co_return;
  }
  if (!listed_in_store) {
    spdlog::warn("Leaving unlabelled container {} ({}) alone: not running and not in the Python runner's store",
                 name, state);
    co_return;
  }
  // Ended while no runner was up and not yet removed: its real outcome is
  // still there to report.
  auto task = co_await track_python_task(id, started_at);
  if (!task) co_return;
  std::optional<json> final_report;
  if (info && (*info)["State"].is_object()) {
    const json& st = (*info)["State"];
    auto fs = map_container_exit(st.value("ExitCode", -1), st.value("OOMKilled", false));
    final_report = report(id, fs.status, fs.exit_code, fs.message, started_at, true);
  } else {
    final_report = report(id, "stopped", -1, kPythonLostMessage, std::nullopt, true);
  }
  spdlog::info("Task {} (started by the previous runner) ended while no runner was up", id);
  co_await finish(task, final_report);
}

asio::awaitable<void> TaskManager::report_python_task_lost(int64_t id) {
  auto task = co_await track_python_task(id, naive_local_now());
  if (!task) co_return;
  spdlog::warn("Task {} (started by the previous runner, listed in its state store): container {} is gone; "
               "reporting it lost",
               id, task_container_name(id));
  co_await finish(task, report(id, "stopped", -1, kPythonLostMessage, std::nullopt, true));
}

asio::awaitable<void> TaskManager::watch_adopted(TaskPtr task) {
  // The container removes itself when it exits (--rm): inspect would find
  // nothing, so the exit code comes from the wait itself, with the
  // "removed" condition, which still yields it after the removal. The
  // wait is issued right after the listing, so only a container that ends
  // in that short window is lost (reported below).
  const std::string name = task_container_name(task->id);
  task->watching = true;
  std::chrono::milliseconds backoff{500};
  for (;;) {
    if (stop_.stopped()) co_return;
    std::optional<json> final_report;
    bool gone = false;
    try {
      auto res = co_await deps_.docker.wait_container(name, kWaitSlice, docker::WaitCondition::Removed);
      // Docker's OOMKilled flag went with the container: a 137 is reported
      // as a plain SIGKILL (decision D11 never guesses OOM).
      auto fs = map_container_exit(res.status_code, false);
      final_report = report(task->id, fs.status, fs.exit_code, fs.message, task->started_at, true);
    } catch (const DockerError& e) {
      if (e.cancelled() || stop_.stopped()) co_return;
      if (e.timed_out()) continue;
      gone = e.not_found();
      if (!gone) spdlog::warn("Watching {} failed ({}); retrying in {} ms", name, e.message, backoff.count());
    }
    if (gone)
      final_report = report(task->id, "stopped", -1,
                            "The container of this task (started by the previous runner) was removed before "
                            "its exit code could be read.",
                            std::nullopt, true);
    if (final_report) {
      co_await finish(task, final_report);
      co_return;
    }
    if (!co_await stop_.sleep_for(backoff)) co_return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
  }
}

}  // namespace kr::tasks
