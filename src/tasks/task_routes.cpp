// HTTP routes of command tasks and Docker images (protocol.md §2.3.1,
// §2.3.5; execution.md §2, §5).
#include <boost/asio/co_spawn.hpp>
#include <spdlog/spdlog.h>

#include "api/validation.hpp"
#include "docker/docker_error.hpp"
#include "docker/names.hpp"
#include "tasks/container_spec.hpp"
#include "tasks/task_manager.hpp"

namespace kr::tasks {

namespace asio = boost::asio;
using json = nlohmann::json;
using api::HttpRequest;
using api::HttpResponse;
using docker::DockerError;

void TaskManager::add_routes(api::Router& r) {
  namespace lim = api::limits;
  r.add("POST", "/api/execute", [this](HttpRequest& q) { return execute(q); }, lim::kCreateBody);
  r.add("POST", "/api/kill", [this](HttpRequest& q) { return control(q, "kill"); }, lim::kControlBody);
  r.add("POST", "/api/pause", [this](HttpRequest& q) { return control(q, "pause"); }, lim::kControlBody);
  r.add("POST", "/api/resume", [this](HttpRequest& q) { return control(q, "resume"); }, lim::kControlBody);
  r.add("GET", "/api/docker/images", [this](HttpRequest& q) { return list_images(q); });
  r.add("POST", "/api/docker/sync/{container_name}", [this](HttpRequest& q) { return sync_image(q); });
}

namespace {

// Docker deadline of pause/unpause: the host waits 10 s for our answer.
constexpr std::chrono::seconds kPauseDeadline{7};
// How long a pause/resume answer may wait for a status report in flight.
constexpr std::chrono::milliseconds kSupersedeWait{1500};
constexpr std::chrono::seconds kKillAttemptDeadline{4};
constexpr std::chrono::seconds kKillRetryDeadline{8};

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

// Built outside coroutines (GCC 12 and braced JSON literals).
json message_body(const std::string& msg) { return json{{"message", msg}}; }

json bad_name_body(const std::string& name, int64_t id) {
  api::Validation v;
  const std::string ids = std::to_string(id);
  v.add(json::array({"body", "container_name"}), "value_error",
        "Value error, container_name must be kohakuriver-task-" + ids + ", kohakuriver-vps-" + ids + " or vm-" + ids +
            " (the container of task_id " + ids + ")",
        name);
  return v.body();
}

}  // namespace

asio::awaitable<bool> TaskManager::try_kill_container(std::string name, std::chrono::milliseconds deadline) {
  std::optional<DockerError> failure;
  try {
    co_await deps_.docker.kill_container(name, "KILL", deadline);
    co_return true;
  } catch (const DockerError& e) {
    failure = e;
  }
  if (failure->not_found()) co_return true;  // not created (yet), or removed
  if (failure->conflict()) {
    // "is not running" (or, on old daemons, paused): look before deciding.
    std::optional<json> info;
    try {
      info = co_await deps_.docker.inspect_container(name, deadline);
    } catch (const DockerError& e) {
      if (e.not_found()) co_return true;
    }
    if (!info) co_return false;
    const json& state = (*info)["State"];
    if (!state.value("Running", false)) co_return true;
    if (state.value("Paused", false)) {
      try {
        co_await deps_.docker.unpause_container(name, deadline);
      } catch (const DockerError&) {
      }
    }
    co_return false;
  }
  spdlog::warn("Kill of container {} failed: {}", name, failure->message);
  co_return false;
}

asio::awaitable<void> TaskManager::enforce_kill(TaskPtr task) {
  if (task->enforcing_kill) co_return;
  task->enforcing_kill = true;
  const std::string name = task_container_name(task->id);
  std::chrono::milliseconds backoff{500};
  for (int attempt = 1;; ++attempt) {
    if (!co_await stop_.sleep_for(backoff)) break;  // the next start finishes it
    auto it = tasks_.find(task->id);
    if (it == tasks_.end() || it->second != task) break;  // finished meanwhile
    bool stopped = co_await try_kill_container(name, kKillRetryDeadline);
    if (stopped) {
      spdlog::info("Container {} of killed task {} stopped after {} retries", name, task->id, attempt);
      break;
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
  }
  task->enforcing_kill = false;
}

asio::awaitable<HttpResponse> TaskManager::kill(TaskPtr task) {
  const int64_t id = task->id;
  const std::string id_text = std::to_string(id);
  const std::string killed_msg = "Task " + id_text + " killed.";
  if (task->killed) co_return HttpResponse::json(200, message_body(killed_msg));  // a repeat
  // Recorded before anything else: this is what suppresses any other final
  // report and makes a restart finish the kill.
  task->killed = true;
  task->provisioning.cancel();  // a pull/load/lock wait in progress ends now
  std::optional<std::string> store_error;
  bool first = true;
  try {
    first = co_await deps_.store.mark_killed(id);
  } catch (const std::exception& e) {
    store_error = e.what();
  }
  if (!store_error && !first) {
    // The row was already gone: the task's final report was recorded just
    // before this kill arrived, and stands.
    spdlog::info("Kill of task {} arrived after it finished; its final report stands", id);
    co_return HttpResponse::json(200, message_body("Task " + id_text + " already finished."));
  }
  const std::string name = task_container_name(id);
  bool stopped = co_await try_kill_container(name, kKillAttemptDeadline);
  if (!stopped) {
    spdlog::warn("Task {}: container {} not confirmed stopped yet; retrying in the background", id, name);
    spawn(ex_, enforce_kill(task), "task kill");
  }
  if (store_error) {
    spdlog::error("Kill of task {} could not be recorded durably: {}", id, *store_error);
    if (!stopped)
      co_return HttpResponse::detail(500, "Failed to record the kill of task " + id_text +
                                              " (state store error); still trying to stop its container.");
  }
  spdlog::info("Task {} killed by request", id);
  co_return HttpResponse::json(200, message_body(killed_msg));
}

asio::awaitable<HttpResponse> TaskManager::control(HttpRequest& req, std::string action) {
  auto parsed = parse_task_control(req.body);
  if (auto* err = std::get_if<json>(&parsed)) co_return HttpResponse::json(422, *err);
  const TaskControl ctl = std::get<TaskControl>(parsed);
  // S-ARGV and issue 6 item 8: the name only has to designate this same
  // id; what is acted on is the container the runner recorded for it.
  auto named = docker::managed_container_id(ctl.container_name);
  if (!named || *named != ctl.task_id)
    co_return HttpResponse::json(422, bad_name_body(ctl.container_name, ctl.task_id));
  const std::string id_text = std::to_string(ctl.task_id);
  auto it = tasks_.find(ctl.task_id);
  if (action == "kill") {
    if (it == tasks_.end()) {
      if (killed_recently_.count(ctl.task_id))
        co_return HttpResponse::json(200, message_body("Task " + id_text + " killed."));
      co_return HttpResponse::detail(404, "Task " + id_text + " not found.");
    }
    TaskPtr task = it->second;
    co_return co_await kill(task);
  }
  if (it == tasks_.end() || it->second->killed) co_return HttpResponse::detail(404, "Task " + id_text + " not found.");
  TaskPtr task = it->second;
  const std::string name = task_container_name(ctl.task_id);

  const bool pause = action == "pause";
  std::optional<std::string> failure;
  try {
    if (pause)
      co_await deps_.docker.pause_container(name, kPauseDeadline);
    else
      co_await deps_.docker.unpause_container(name, kPauseDeadline);
  } catch (const DockerError& e) {
    failure = e.message;
  }
  if (failure) {
    spdlog::warn("{} of task {} failed: {}", action, ctl.task_id, *failure);
    // Upstream's text; Docker's reason is in the log.
    co_return HttpResponse::detail(500, (pause ? "Failed to pause task " : "Failed to resume task ") + id_text + ".");
  }
  // The host shows paused/running on our 2xx: a queued `running` report
  // delivered after that would undo what it shows.
  co_await deps_.outbox.supersede_non_final(ctl.task_id, kSupersedeWait);
  co_return HttpResponse::json(200, message_body("Task " + id_text + (pause ? " paused." : " resumed.")));
}

asio::awaitable<HttpResponse> TaskManager::list_images(HttpRequest&) {
  try {
    json list = co_await deps_.docker.list_images();
    json out = json::array();
    for (const auto& img : list) {
      const std::string id = img.contains("Id") && img["Id"].is_string() ? img["Id"].get<std::string>() : "";
      json tags = json::array();
      if (img.contains("RepoTags") && img["RepoTags"].is_array())
        for (const auto& t : img["RepoTags"])
          if (t.is_string() && t.get<std::string>() != "<none>:<none>") tags.push_back(t);
      // Upstream reports inspect's RFC 3339 Created string, not the list's
      // integer.
      json created = nullptr;
      json size = img.value("Size", json(0));
      if (auto info = co_await deps_.docker.inspect_image(id)) {
        created = info->value("Created", json(nullptr));
        size = info->value("Size", size);
      }
      out.push_back(json{{"id", id}, {"tags", tags}, {"created", created}, {"size", size}});
    }
    co_return HttpResponse::json(200, json{{"images", out}});
  } catch (const DockerError& e) {
    co_return HttpResponse::detail(500, "Failed to list images: " + e.message);
  }
}

asio::awaitable<HttpResponse> TaskManager::sync_image(HttpRequest& req) {
  const std::string name = req.path_params.at("container_name");
  bool valid = false;
  try {
    valid = docker::is_valid_image_reference(env_image_reference(name));
  } catch (const SpecError&) {
  }
  if (!valid) {
    api::Validation v;
    v.add(json::array({"path", "container_name"}), "value_error",
          "Value error, not a valid environment name", name);
    co_return HttpResponse::json(422, v.body());
  }
  SyncOutcome out = co_await images_.sync_environment(name);
  if (!out.ok) {
    if (out.no_source)
      co_return HttpResponse::detail(404, "No tarball found for container '" + name + "'.");
    co_return HttpResponse::detail(500, "Error syncing container: Failed to sync container '" + name + "'.");
  }
  if (!out.loaded)
    co_return HttpResponse::json(200, json{{"message", "Container '" + name + "' is up-to-date."}, {"synced", false}});
  co_return HttpResponse::json(200, json{{"message", "Container '" + name + "' synced successfully."},
                                         {"synced", true},
                                         {"source", out.source}});
}

}  // namespace kr::tasks
