// HTTP routes of command tasks and Docker images (protocol.md §2.3.1,
// §2.3.5; execution.md §2, §5).
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

asio::awaitable<HttpResponse> TaskManager::control(HttpRequest& req, std::string action) {
  auto parsed = parse_task_control(req.body);
  if (auto* err = std::get_if<json>(&parsed)) co_return HttpResponse::json(422, *err);
  const TaskControl ctl = std::get<TaskControl>(parsed);
  // S-ARGV: only names this runner manages reach Docker.
  if (!docker::is_managed_container_name(ctl.container_name)) {
    api::Validation v;
    v.add(json::array({"body", "container_name"}), "value_error",
          "Value error, container_name must be kohakuriver-task-<id>, kohakuriver-vps-<id> or vm-<id>",
          ctl.container_name);
    co_return HttpResponse::json(422, v.body());
  }
  const std::string id_text = std::to_string(ctl.task_id);
  auto it = tasks_.find(ctl.task_id);
  if (it == tasks_.end() || it->second->killed)
    co_return HttpResponse::detail(404, "Task " + id_text + " not found.");
  TaskPtr task = it->second;

  if (action == "kill") {
    // Mark first: this is what suppresses the final report (upstream
    // removes the store entry before `docker kill`).
    task->killed = true;
    try {
      co_await deps_.store.mark_killed(ctl.task_id);
    } catch (const std::exception& e) {
      spdlog::error("Cannot record kill of task {}: {}", ctl.task_id, e.what());
    }
    try {
      co_await deps_.docker.kill_container(ctl.container_name);
    } catch (const DockerError& e) {
      if (e.daemon_unavailable() || e.timed_out()) {
        spdlog::error("Kill of task {} failed: {}", ctl.task_id, e.message);
        co_return HttpResponse::detail(500, "Failed to kill task " + id_text + ".");
      }
      // Not running / not yet created: the pipeline sees `killed` and stops.
      spdlog::info("docker kill {}: {}", ctl.container_name, e.message);
    }
    spdlog::info("Task {} killed by request", ctl.task_id);
    co_return HttpResponse::json(200, json{{"message", "Task " + id_text + " killed."}});
  }

  const bool pause = action == "pause";
  try {
    if (pause)
      co_await deps_.docker.pause_container(ctl.container_name);
    else
      co_await deps_.docker.unpause_container(ctl.container_name);
  } catch (const DockerError& e) {
    spdlog::warn("{} of task {} failed: {}", action, ctl.task_id, e.message);
    co_return HttpResponse::detail(500, (pause ? "Failed to pause task " : "Failed to resume task ") + id_text + ".");
  }
  co_return HttpResponse::json(
      200, json{{"message", "Task " + id_text + (pause ? " paused." : " resumed.")}});
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
