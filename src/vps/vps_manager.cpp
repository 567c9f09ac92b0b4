#include "vps/vps_manager.hpp"

#include "docker/names.hpp"

#include <filesystem>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "api/validation.hpp"
#include "common/datetime.hpp"
#include "host_link/status_update.hpp"
#include "docker/docker_error.hpp"
#include "tasks/container_spec.hpp"
#include "vps/vps_spec.hpp"
#include "metrics/metrics.hpp"

namespace kr::vps {

namespace asio = boost::asio;
using json = nlohmann::json;
using api::HttpRequest;
using api::HttpResponse;
using docker::DockerError;

namespace {

// Below the host's 10 s timeout for pause/resume.
constexpr std::chrono::seconds kPauseDeadline{8};
constexpr std::chrono::seconds kRemoveDeadline{60};

// Outside coroutines (GCC 12: braced initialisers with literals).
json success_body(int port, const std::string& name) {
  return json{{"success", true}, {"ssh_port", port}, {"container_name", name}};
}
json message_body(const std::string& m) { return json{{"message", m}}; }
json state_json(SshKeyMode mode, int port) { return json{{"ssh_key_mode", to_string(mode)}, {"ssh_port", port}}; }

json build_body_or_throw(const VpsRequest& rq, const config::RunnerConfig& cfg, const VpsContainerContext& ctx,
                         std::vector<std::string>& warnings) {
  return build_vps_create_body(rq, cfg, ctx, &warnings);
}

}  // namespace

VpsManager::VpsManager(asio::any_io_executor ex, VpsManagerDeps deps)
    : ex_(ex), deps_(std::move(deps)), stop_(ex) {}

std::vector<int64_t> VpsManager::running_vps_ids() const {
  std::vector<int64_t> ids;
  for (const auto& [id, v] : vps_)
    if (!v->killed) ids.push_back(id);
  if (vm_)
    for (auto id : vm_->running_ids()) ids.push_back(id);
  return ids;
}

json VpsManager::report(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                        std::optional<std::string> message, std::optional<std::string> started_at, bool completed,
                        std::optional<int> ssh_port) const {
  return host_link::status_update_body(id, status, exit_code, message, started_at, completed, ssh_port);
}

asio::awaitable<void> VpsManager::push(int64_t id, json r, bool is_final) {
  co_await deps_.outbox.push(id, r.dump(), is_final);
  if (is_final && r.contains("status") && r["status"].is_string())
    metrics::task_finished("vps", r["status"].get<std::string>());
}

asio::awaitable<void> VpsManager::save_state(const Vps& v) {
  store::TaskChanges ch;
  ch.extra_json = state_json(v.mode, v.ssh_port).dump();
  co_await deps_.store.update_task(v.id, "running", ch);
}

asio::awaitable<HttpResponse> VpsManager::create(HttpRequest& req) {
  auto parsed = parse_vps_request(req.body);
  if (auto* err = std::get_if<json>(&parsed)) co_return HttpResponse::json(422, *err);
  VpsRequest rq = std::get<VpsRequest>(std::move(parsed));
  const int64_t id = rq.task_id;
  const std::string duplicate = "VPS " + std::to_string(id) + " is already running on this node.";
  if (vps_.count(id) || (vm_ && vm_->owns(id))) co_return HttpResponse::detail(409, duplicate);
  if (rq.vps_backend == "qemu") {
    if (vm_) co_return co_await vm_->create(std::move(rq), req.body);
    const std::string msg = "VM backend (qemu) is not available on this runner; use vps_backend \"docker\".";
    co_await push(id, report(id, "failed", std::nullopt, msg, std::nullopt, true, std::nullopt), true);
    co_return HttpResponse::detail(500, msg);
  }
  co_return co_await create_docker(std::move(rq), req.body);
}

asio::awaitable<HttpResponse> VpsManager::fail_create(VpsPtr v, std::string message,
                                                      std::optional<int64_t> exit_code) {
  spdlog::warn("VPS {} creation failed: {}", v->id, message);
  json r = report(v->id, "failed", exit_code, message, std::nullopt, true, std::nullopt);
  bool durable = false;
  try {
    durable = co_await deps_.store.finish_task(v->id, r.dump()) == store::FinishOutcome::Reported;
  } catch (const std::exception& e) {
    spdlog::error("Cannot record the failure of VPS {}: {}", v->id, e.what());
  }
  if (!durable && !v->killed) co_await push(v->id, r, true);
  vps_.erase(v->id);
  co_return HttpResponse::detail(500, message);
}

asio::awaitable<HttpResponse> VpsManager::create_docker(VpsRequest rq, std::string body) {
  const int64_t id = rq.task_id;
  const std::string name = vps_container_name(id);
  const std::string duplicate = "VPS " + std::to_string(id) + " is already running on this node.";
  const std::string temp_dir = deps_.cfg.local_temp_dir;
  auto temp_dir_exists = [temp_dir] {
    std::error_code ec;
    return std::filesystem::is_directory(temp_dir, ec);
  };
  bool temp_ok = co_await run_blocking(temp_dir_exists);
  if (!temp_ok) co_return HttpResponse::detail(500, "Configuration error: LOCAL_TEMP_DIR missing on node.");
  if (vps_.count(id)) co_return HttpResponse::detail(409, duplicate);

  auto mode_or_error = resolve_key_mode(rq);
  if (auto* err = std::get_if<std::string>(&mode_or_error)) {
    // D18: a JSON 400 and a failed report (upstream: plain-text 500, no report).
    const std::string msg = "VPS creation failed: " + *err;
    co_await push(id, report(id, "pending", std::nullopt, std::nullopt, std::nullopt, false, std::nullopt), false);
    co_await push(id, report(id, "failed", std::nullopt, msg, std::nullopt, true, std::nullopt), true);
    co_return HttpResponse::detail(400, msg);
  }
  const SshKeyMode requested_mode = std::get<SshKeyMode>(mode_or_error);

  // Reserve the id and list it in heartbeats from acceptance.
  auto v = std::make_shared<Vps>();
  v->id = id;
  v->mode = requested_mode;
  v->started_at = naive_local_now();
  v->busy = true;
  vps_[id] = v;
  store::TaskRecord rec;
  rec.task_id = id;
  rec.kind = "vps";
  rec.container_name = name;
  rec.phase = "provisioning";
  rec.request_json = body;
  rec.started_at = v->started_at;
  rec.extra_json = state_json(requested_mode, 0).dump();
  bool fresh = false;
  try {
    fresh = co_await deps_.store.insert_task(rec);
  } catch (const std::exception& e) {
    vps_.erase(id);
    spdlog::error("Cannot record VPS {}: {}", id, e.what());
    co_return HttpResponse::detail(500, "Failed to record VPS " + std::to_string(id) + ".");
  }
  if (!fresh) {
    vps_.erase(id);
    co_return HttpResponse::detail(409, duplicate);
  }
  co_await push(id, report(id, "pending", std::nullopt, std::nullopt, std::nullopt, false, std::nullopt), false);

  // Image: the latest snapshot (auto restore), else the registry image or
  // the environment tarball, through the task path's provisioner.
  std::optional<std::string> snapshot;
  if (deps_.cfg.auto_restore_on_create) {
    auto snaps = co_await list_snapshots(id);
    if (!snaps.empty()) snapshot = snaps.front().tag;
  }
  VpsContainerContext ctx;
  ctx.hostname = deps_.hostname;
  ctx.tunnel_client_path = deps_.tunnel_client_path;
  ctx.container_gateway = deps_.cfg.docker_network_gateway;
  ctx.mode = requested_mode;
  if (requested_mode == SshKeyMode::Upload || requested_mode == SshKeyMode::Generate)
    ctx.key_lines = authorized_key_lines(rq.ssh_public_key.value_or(""));
  std::string image;
  if (snapshot) {
    image = *snapshot;
    ctx.setup = SetupKind::Restore;
    std::optional<json> info;
    try {
      info = co_await deps_.docker.inspect_image(image);
    } catch (const DockerError& e) {
      spdlog::warn("VPS {}: cannot inspect snapshot {}: {}", id, image, e.message);
    }
    // A snapshot keeps the SSH state it was taken with: a TTY-only VPS stays
    // TTY-only, any SSH VPS keeps its sshd_config, keys and password.
    if (info) {
      if (auto m = recorded_key_mode(*info)) ctx.mode = *m;
      if (ctx.mode == SshKeyMode::Disabled && requested_mode != SshKeyMode::Disabled && !recorded_key_mode(*info))
        ctx.mode = requested_mode;
    }
    spdlog::info("VPS {}: restoring snapshot {} (SSH mode {})", id, image, to_string(ctx.mode));
  } else {
    const bool registry = rq.registry_image && !rq.registry_image->empty();
    std::string bad_image;
    try {
      image = vps_image_reference(rq);
    } catch (const tasks::SpecError& e) {
      bad_image = std::string("VPS creation failed: ") + e.what();
    }
    if (!bad_image.empty()) co_return co_await fail_create(v, bad_image);
    co_await deps_.store.update_task(id, "provisioning");
    tasks::SyncOutcome out;
    if (registry)
      out = co_await deps_.tasks.images().ensure_registry_image(*rq.registry_image);
    else
      out = co_await deps_.tasks.images().sync_environment(*rq.container_name);
    if (!out.ok) {
      std::string msg = registry ? "Failed to pull registry image '" + *rq.registry_image + "'"
                                 : "Docker image sync failed for container '" + *rq.container_name + "'";
      co_return co_await fail_create(v, msg);
    }
  }
  if (v->killed) {
    co_await deps_.store.delete_task(id);
    vps_.erase(id);
    co_return HttpResponse::detail(500, "VPS " + std::to_string(id) + " was killed during creation.");
  }
  v->mode = ctx.mode;
  ctx.image = image;

  std::string failure;
  json create_body;
  std::vector<std::string> warnings;
  try {
    // The VXLAN overlay when it is up (a reserved_ip it cannot honour fails
    // the create, decision O12), else DOCKER_NETWORK_NAME.
    auto net = co_await deps_.tasks.container_network(rq.reserved_ip);
    ctx.network = net.name;
    ctx.container_gateway = net.gateway;
    create_body = build_body_or_throw(rq, deps_.cfg, ctx, warnings);
  } catch (const tasks::SpecError& e) {
    failure = std::string("VPS creation failed: ") + e.what();
  } catch (const overlay::NetworkUnavailable& e) {
    failure = std::string("VPS creation failed: ") + e.what();
  } catch (const DockerError& e) {
    failure = "VPS creation failed: " + e.message;
  }
  if (!failure.empty()) co_return co_await fail_create(v, failure);
  for (const auto& w : warnings) spdlog::warn("VPS {}: {}", id, w);

  co_await deps_.store.update_task(id, "creating");
  // A container of this name without a row is left over (a kill or stop
  // that never finished, a Python runner): it is not ours to keep.
  try {
    co_await deps_.docker.remove_container(name, true, false, kRemoveDeadline);
    spdlog::info("VPS {}: removed leftover container {}", id, name);
  } catch (const DockerError& e) {
    if (!e.not_found()) failure = "VPS creation failed: cannot remove leftover container: " + e.message;
  }
  if (failure.empty()) {
    try {
      co_await deps_.docker.create_container(name, create_body, docker::kCreateStartDeadline);
      co_await deps_.docker.start_container(name, docker::kCreateStartDeadline);
    } catch (const DockerError& e) {
      failure = "Docker run failed: " + e.message;
    }
  }
  if (!failure.empty()) {
    try {
      co_await deps_.docker.remove_container(name, true, false, kRemoveDeadline);
    } catch (const DockerError&) {
    }
    co_return co_await fail_create(v, failure, failure.rfind("Docker run failed", 0) == 0 ? std::optional<int64_t>(125)
                                                                                          : std::nullopt);
  }

  int port = 0;
  if (v->mode != SshKeyMode::Disabled) {
    auto p = co_await discover_port(name, 10);
    if (p) port = *p;
    else spdlog::warn("VPS {}: no host port bound to 22/tcp; TTY only", id);
  }
  v->ssh_port = port;
  co_await save_state(*v);
  if (v->killed) {
    v->busy = false;
    co_await remove_until_gone(id);
    co_return HttpResponse::detail(500, "VPS " + std::to_string(id) + " was killed during creation.");
  }
  v->ready = true;
  v->busy = false;
  co_await push(id, report(id, "running", std::nullopt, std::nullopt, v->started_at, false, port), false);
  spdlog::info("VPS {} running in {} (ssh port {}, mode {})", id, name, port, to_string(v->mode));
  co_return HttpResponse::json(200, success_body(port, name));
}

asio::awaitable<std::optional<int>> VpsManager::discover_port(std::string name, int attempts) {
  for (int i = 0; i < attempts; ++i) {
    try {
      json info = co_await deps_.docker.inspect_container(name);
      if (auto p = ssh_host_port(info)) co_return p;
    } catch (const DockerError& e) {
      if (e.not_found() || e.cancelled()) co_return std::nullopt;
    }
    if (i + 1 < attempts && !co_await stop_.sleep_for(std::chrono::milliseconds(200))) break;
  }
  co_return std::nullopt;
}

// R-VPSKILL: a killed VPS container is removed. Retried until it is gone,
// then the row goes; until then the id stays tracked (marked killed).
asio::awaitable<void> VpsManager::remove_until_gone(int64_t id) {
  const std::string name = vps_container_name(id);
  std::chrono::milliseconds backoff{1000};
  for (;;) {
    bool gone = false;
    try {
      co_await deps_.docker.remove_container(name, true, false, kRemoveDeadline);
      gone = true;
    } catch (const DockerError& e) {
      if (e.cancelled()) co_return;
      gone = e.not_found();
      if (!gone) spdlog::warn("Removing killed VPS container {} failed ({}); retrying", name, e.message);
    }
    if (gone) {
      co_await deps_.store.delete_task(id);
      vps_.erase(id);
      spdlog::info("VPS {} killed and removed", id);
      co_return;
    }
    if (!co_await stop_.sleep_for(backoff)) co_return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(15000));
  }
}

asio::awaitable<HttpResponse> VpsManager::stop_vps(HttpRequest& req) {
  api::Validation val;
  auto id_opt = api::path_int(req.path_params.at("task_id"), "task_id", val);
  if (!id_opt) co_return HttpResponse::json(422, val.body());
  const int64_t id = *id_opt;
  const std::string id_text = std::to_string(id);
  if (vm_ && vm_->owns(id)) co_return co_await vm_->stop(id);
  auto it = vps_.find(id);
  if (it == vps_.end() || it->second->killed) co_return HttpResponse::detail(404, "VPS " + id_text + " not found.");
  VpsPtr v = it->second;
  if (v->busy && !v->ready) co_return HttpResponse::detail(409, "VPS " + id_text + " is still being created.");
  const std::string name = vps_container_name(id);
  v->busy = true;
  if (deps_.cfg.auto_snapshot_on_stop) {
    auto tag = co_await create_snapshot(id, "Auto-snapshot on stop");
    if (!tag) spdlog::warn("VPS {}: auto-snapshot on stop failed; stopping anyway", id);
  }
  std::string failure;
  try {
    co_await deps_.docker.stop_container(name, 10);
  } catch (const DockerError& e) {
    if (!e.not_found()) failure = e.message;  // R-VPSSTOP: already gone is fine
  }
  if (failure.empty()) {
    try {
      co_await deps_.docker.remove_container(name, false, false, kRemoveDeadline);
    } catch (const DockerError& e) {
      if (!e.not_found()) failure = e.message;
    }
  }
  if (!failure.empty()) {
    v->busy = false;
    spdlog::error("Stopping VPS {} failed: {}", id, failure);
    co_return HttpResponse::detail(500, "Failed to stop VPS " + id_text + ".");
  }
  co_await deps_.store.delete_task(id);
  vps_.erase(id);
  spdlog::info("VPS {} stopped", id);
  co_return HttpResponse::json(200, message_body("VPS " + id_text + " stopped."));
}

asio::awaitable<HttpResponse> VpsManager::pause_vps(HttpRequest& req, bool pause) {
  api::Validation val;
  auto id_opt = api::path_int(req.path_params.at("task_id"), "task_id", val);
  if (!id_opt) co_return HttpResponse::json(422, val.body());
  const std::string id_text = std::to_string(*id_opt);
  if (vm_ && vm_->owns(*id_opt)) co_return co_await vm_->control(*id_opt, pause ? "pause" : "resume");  // V23
  auto it = vps_.find(*id_opt);
  if (it == vps_.end() || it->second->killed) co_return HttpResponse::detail(404, "VPS " + id_text + " not found.");
  bool ok = true;
  try {
    if (pause)
      co_await deps_.docker.pause_container(vps_container_name(*id_opt), kPauseDeadline);
    else
      co_await deps_.docker.unpause_container(vps_container_name(*id_opt), kPauseDeadline);
  } catch (const DockerError& e) {
    spdlog::warn("{} of VPS {} failed: {}", pause ? "Pause" : "Resume", *id_opt, e.message);
    ok = false;
  }
  if (!ok)
    co_return HttpResponse::detail(500, (pause ? "Failed to pause VPS " : "Failed to resume VPS ") + id_text + ".");
  co_return HttpResponse::json(200, message_body("VPS " + id_text + (pause ? " paused." : " resumed.")));
}

// /api/kill|pause|resume (§2): the host sends these for VPS too, with
// container_name kohakuriver-vps-<id>. Anything that is not a VPS tracked
// here goes to the command-task handler unchanged.
asio::awaitable<HttpResponse> VpsManager::control(HttpRequest& req, std::string action) {
  auto parsed = tasks::parse_task_control(req.body);
  const tasks::TaskControl* ctl = std::get_if<tasks::TaskControl>(&parsed);
  // Issue 6 item 8: any managed spelling of this same id designates the
  // VM's / VPS's own container (the host sends kohakuriver-vps-<id> for VMs
  // too); mismatches get the task handler's 422.
  const bool same_id = ctl && docker::managed_container_id(ctl->container_name) == ctl->task_id;
  if (same_id && vm_ && vm_->owns(ctl->task_id)) co_return co_await vm_->control(ctl->task_id, action);
  if (!same_id || !vps_.count(ctl->task_id))
    co_return co_await deps_.tasks.control(req, action);
  const int64_t id = ctl->task_id;
  const std::string id_text = std::to_string(id);
  VpsPtr v = vps_.at(id);
  if (action == "kill") {
    if (v->killed) co_return HttpResponse::json(200, message_body("Task " + id_text + " killed."));
    v->killed = true;
    try {
      co_await deps_.store.mark_killed(id);
    } catch (const std::exception& e) {
      spdlog::error("Cannot record kill of VPS {}: {}", id, e.what());
      v->killed = false;
      co_return HttpResponse::detail(500, "Failed to kill task " + id_text + ".");
    }
    // While a create is in flight, it sees `killed` and cleans up itself.
    if (!v->busy || v->ready) asio::co_spawn(ex_, remove_until_gone(id), asio::detached);
    spdlog::info("VPS {} killed by request", id);
    co_return HttpResponse::json(200, message_body("Task " + id_text + " killed."));
  }
  const bool pause = action == "pause";
  bool ok = !v->killed;
  try {
    if (ok && pause)
      co_await deps_.docker.pause_container(vps_container_name(id), kPauseDeadline);
    else if (ok)
      co_await deps_.docker.unpause_container(vps_container_name(id), kPauseDeadline);
  } catch (const DockerError& e) {
    spdlog::warn("{} of VPS {} failed: {}", action, id, e.message);
    ok = false;
  }
  if (!ok) co_return HttpResponse::detail(500, (pause ? "Failed to pause task " : "Failed to resume task ") + id_text + ".");
  co_return HttpResponse::json(200, message_body("Task " + id_text + (pause ? " paused." : " resumed.")));
}

}  // namespace kr::vps
