// VPS snapshots (execution.md §3.6.3, R-SNAPSEC): local images committed
// from the container, listed, pruned and removed through the Engine API.
#include <spdlog/spdlog.h>

#include "api/validation.hpp"
#include "docker/docker_error.hpp"
#include "docker/wire.hpp"
#include "vps/vps_manager.hpp"
#include "vps/vps_spec.hpp"

namespace kr::vps {

namespace asio = boost::asio;
using json = nlohmann::json;
using api::HttpRequest;
using api::HttpResponse;
using docker::DockerError;

namespace {

// A commit pauses the container and copies its filesystem: large VPS take
// a while.
constexpr std::chrono::minutes kCommitDeadline{10};

json reference_filter(int64_t id) { return json{{"reference", json::array({snapshot_repository(id)})}}; }

json list_body(int64_t id, const std::vector<SnapshotInfo>& snaps) {
  json arr = json::array();
  for (const auto& s : snaps) arr.push_back(s.to_json());
  return json{{"task_id", id}, {"snapshots", arr}, {"count", snaps.size()}};
}

json created_body(int64_t id, const std::string& tag) {
  return json{{"message", "Snapshot created for VPS " + std::to_string(id)}, {"tag", tag}};
}

json deleted_one_body(int64_t id, int64_t ts) {
  return json{{"message", "Snapshot " + std::to_string(ts) + " deleted for VPS " + std::to_string(id)}};
}

json latest_body(int64_t id, const std::string& tag) { return json{{"task_id", id}, {"tag", tag}}; }

json deleted_all_body(int64_t id, int n) {
  return json{{"message", "Deleted " + std::to_string(n) + " snapshot(s) for VPS " + std::to_string(id)},
              {"deleted_count", n}};
}

// The optional body {"message": str | null}; absent and {} allowed.
std::variant<std::string, json> parse_snapshot_message(const std::string& body) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return std::string();
  api::Validation v;
  auto obj = api::parse_body_object(body, v);
  if (!obj) return v.body();
  api::BodyFields f(*obj, v);
  auto m = f.opt_str("message");
  if (!v.ok()) return v.body();
  return m.value_or("");
}

}  // namespace

asio::awaitable<std::vector<SnapshotInfo>> VpsManager::list_snapshots(int64_t id) {
  std::vector<SnapshotInfo> out;
  try {
    json images = co_await deps_.docker.call(
        docker::Method::Get, "/images/json" + docker::wire::Query().add("filters", reference_filter(id).dump()).str());
    if (!images.is_array()) co_return out;
    // Upstream reports image inspect's RFC 3339 Created string.
    for (auto& img : images) {
      if (!img.is_object() || !img.contains("Id") || !img["Id"].is_string()) continue;
      if (auto info = co_await deps_.docker.inspect_image(img["Id"].get<std::string>())) {
        if (info->contains("Created") && (*info)["Created"].is_string()) img["CreatedText"] = (*info)["Created"];
        if (info->contains("Size") && (*info)["Size"].is_number_integer()) img["Size"] = (*info)["Size"];
      }
    }
    out = snapshots_from_image_list(images, id);
  } catch (const DockerError& e) {
    spdlog::warn("Listing snapshots of VPS {} failed: {}", id, e.message);
  }
  co_return out;
}

asio::awaitable<std::optional<std::string>> VpsManager::create_snapshot(int64_t id, std::string message) {
  // One snapshot at a time: the tag choice below must see the previous one.
  auto guard = co_await snapshot_mu_.lock();
  auto existing = co_await list_snapshots(id);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t ts = next_snapshot_timestamp(now, existing);
  const std::string comment =
      message.empty() ? "VPS " + std::to_string(id) + " snapshot at " + std::to_string(ts) : message;
  const std::string target = docker::wire::Query()
                                 .add("container", vps_container_name(id))
                                 .add("repo", snapshot_repository(id))
                                 .add("tag", static_cast<long long>(ts))
                                 .add("comment", comment)
                                 .add("pause", true)
                                 .str();
  std::optional<std::string> tag;
  try {
    co_await deps_.docker.call(docker::Method::Post, "/commit" + target, json::object(), kCommitDeadline);
    tag = snapshot_reference(id, ts);
  } catch (const DockerError& e) {
    spdlog::warn("Snapshot of VPS {} failed: {}", id, e.message);
    co_return std::nullopt;
  }
  spdlog::info("VPS {}: snapshot {} created", id, *tag);
  if (deps_.cfg.max_snapshots_per_vps > 0) {
    auto all = co_await list_snapshots(id);
    for (const auto& old : tags_to_prune(all, deps_.cfg.max_snapshots_per_vps)) {
      if (co_await remove_snapshot(old))
        spdlog::info("VPS {}: pruned snapshot {}", id, old);
    }
  }
  co_return tag;
}

asio::awaitable<bool> VpsManager::remove_snapshot(std::string tag) {
  try {
    co_await deps_.docker.remove_image(tag, false);
    co_return true;
  } catch (const DockerError& e) {
    if (e.not_found()) co_return true;  // already gone counts as removed
    // In use by a container (R-SNAPSEC: kept, the count may exceed the max).
    spdlog::info("Snapshot {} not removed: {}", tag, e.message);
  }
  co_return false;
}

asio::awaitable<HttpResponse> VpsManager::list_snapshots_route(HttpRequest& req) {
  api::Validation v;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", v);
  if (!id) co_return HttpResponse::json(422, v.body());
  auto snaps = co_await list_snapshots(*id);
  co_return HttpResponse::json(200, list_body(*id, snaps));
}

asio::awaitable<HttpResponse> VpsManager::create_snapshot_route(HttpRequest& req) {
  api::Validation v;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", v);
  if (!id) co_return HttpResponse::json(422, v.body());
  auto msg = parse_snapshot_message(req.body);
  if (auto* err = std::get_if<json>(&msg)) co_return HttpResponse::json(422, *err);
  const std::string id_text = std::to_string(*id);
  auto it = vps_.find(*id);
  if (it == vps_.end() || it->second->killed || !it->second->ready)
    co_return HttpResponse::detail(404, "VPS " + id_text + " is not running on this node.");
  auto tag = co_await create_snapshot(*id, std::get<std::string>(msg));
  if (!tag) co_return HttpResponse::detail(500, "Failed to create snapshot for VPS " + id_text + ".");
  co_return HttpResponse::json(200, created_body(*id, *tag));
}

asio::awaitable<HttpResponse> VpsManager::latest_snapshot_route(HttpRequest& req) {
  api::Validation v;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", v);
  if (!id) co_return HttpResponse::json(422, v.body());
  auto snaps = co_await list_snapshots(*id);
  if (snaps.empty()) co_return HttpResponse::detail(404, "No snapshots found for VPS " + std::to_string(*id) + ".");
  co_return HttpResponse::json(200, latest_body(*id, snaps.front().tag));
}

asio::awaitable<HttpResponse> VpsManager::delete_snapshot_route(HttpRequest& req) {
  api::Validation v;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", v);
  auto ts = api::path_int(req.path_params.at("timestamp"), "timestamp", v);
  if (!id || !ts) co_return HttpResponse::json(422, v.body());
  // Only an existing tag counts: removing a missing one is "not found".
  const std::string tag = snapshot_reference(*id, *ts);
  bool ok = false;
  try {
    co_await deps_.docker.remove_image(tag, false);
    ok = true;
  } catch (const DockerError& e) {
    spdlog::info("Deleting snapshot {} failed: {}", tag, e.message);
  }
  if (!ok) co_return HttpResponse::detail(404, "Snapshot not found or failed to delete.");
  co_return HttpResponse::json(200, deleted_one_body(*id, *ts));
}

asio::awaitable<HttpResponse> VpsManager::delete_all_snapshots_route(HttpRequest& req) {
  api::Validation v;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", v);
  if (!id) co_return HttpResponse::json(422, v.body());
  auto snaps = co_await list_snapshots(*id);
  int n = 0;
  for (const auto& s : snaps) {
    bool removed = false;
    try {
      co_await deps_.docker.remove_image(s.tag, false);
      removed = true;
    } catch (const DockerError& e) {
      spdlog::info("Deleting snapshot {} failed: {}", s.tag, e.message);
    }
    if (removed) ++n;
  }
  co_return HttpResponse::json(200, deleted_all_body(*id, n));
}

}  // namespace kr::vps
