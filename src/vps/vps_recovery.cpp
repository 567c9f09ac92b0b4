// Startup reconciliation of Docker VPS (execution.md §4.4 phases 2–3) and
// the Docker event watch that keeps the reported SSH port true after Docker
// restarted a container (R-STALEPORT).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/datetime.hpp"
#include "docker/docker_error.hpp"
#include "tasks/image_source.hpp"
#include "vps/vps_manager.hpp"
#include "vps/vps_spec.hpp"

namespace kr::vps {

namespace asio = boost::asio;
using json = nlohmann::json;
using docker::DockerError;

namespace {

json vps_name_filter() { return json{{"name", json::array({"kohakuriver-vps-"})}}; }
json vps_event_filter() {
  return json{{"type", json::array({"container"})},
              {"label", json::array({"kohakuriver.kind=vps"})},
              {"event", json::array({"start", "destroy"})}};
}

std::string str_field(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string container_name_of(const json& c) {
  if (c.contains("Names") && c["Names"].is_array() && !c["Names"].empty() && c["Names"][0].is_string()) {
    std::string n = c["Names"][0].get<std::string>();
    return n.empty() || n[0] != '/' ? n : n.substr(1);
  }
  return "";
}

// kohakuriver-vps-<digits> → id (§0.5).
std::optional<int64_t> vps_id_of(const std::string& name) {
  constexpr std::string_view kPrefix = "kohakuriver-vps-";
  if (name.rfind(kPrefix, 0) != 0) return std::nullopt;
  std::string rest = name.substr(kPrefix.size());
  if (rest.empty() || rest.size() > 19 || rest.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  try {
    return std::stoll(rest);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool alive(const std::string& state) { return state == "running" || state == "paused" || state == "restarting"; }

constexpr const char* kGoneMessage = "Container not found on runner startup (runner may have restarted).";

}  // namespace

void VpsManager::start() {
  asio::co_spawn(ex_, recover(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("VPS recovery ended with an error: {}", ex.what());
    }
  });
}

void VpsManager::stop() {
  stop_.stop();
  events_cancel_.cancel();
}

asio::awaitable<void> VpsManager::recover() {
  auto records = co_await deps_.store.load_tasks();
  std::vector<store::TaskRecord> tracked;
  for (auto& rec : records) {
    if (rec.kind != "vps") continue;
    auto v = std::make_shared<Vps>();
    v->id = rec.task_id;
    v->killed = rec.killed;
    v->busy = true;  // until reconciled
    v->started_at = rec.started_at.value_or(naive_local_now());
    try {
      json extra = json::parse(rec.extra_json);
      if (auto m = parse_key_mode(extra.value("ssh_key_mode", ""))) v->mode = *m;
      v->ssh_port = extra.value("ssh_port", 0);
    } catch (const std::exception&) {
    }
    vps_[v->id] = v;
    tracked.push_back(std::move(rec));
  }

  json containers;
  std::chrono::milliseconds backoff{1000};
  for (;;) {
    try {
      containers = co_await deps_.docker.list_containers(true, vps_name_filter());
      break;
    } catch (const DockerError& e) {
      if (e.cancelled()) co_return;
      spdlog::warn("Docker not reachable for VPS reconciliation ({}); retrying", e.message);
    }
    if (!co_await stop_.sleep_for(backoff)) co_return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(15000));
  }
  std::map<std::string, json> by_name;
  for (const auto& c : containers) by_name[container_name_of(c)] = c;

  // Phase 2: tracked VPS.
  for (const auto& rec : tracked) {
    VpsPtr v = vps_.at(rec.task_id);
    const std::string name = vps_container_name(v->id);
    auto it = by_name.find(name);
    std::optional<json> found;
    if (it != by_name.end()) {
      found = std::move(it->second);
      by_name.erase(it);
    }
    if (v->killed) {
      spdlog::info("VPS {} was killed before the restart; removing its container", v->id);
      asio::co_spawn(ex_, remove_until_gone(v->id), asio::detached);
      continue;
    }
    const std::string state = found ? str_field(*found, "State") : "";
    if (found && alive(state)) {
      co_await adopt(v->id, v->started_at, false);
      continue;
    }
    if (rec.phase != "running") {
      // The create request was cut off by the restart (its answer was never
      // sent): the container, if any, is incomplete.
      spdlog::warn("VPS {} was being created when the runner stopped; reporting failure", v->id);
      if (found) {
        try {
          co_await deps_.docker.remove_container(name, true);
        } catch (const DockerError&) {
        }
      }
      json r = report(v->id, "failed", std::nullopt, "VPS creation was interrupted by a runner restart.",
                      std::nullopt, true, std::nullopt);
      co_await deps_.store.finish_task(v->id, r.dump());
      vps_.erase(v->id);
      continue;
    }
    // Upstream: a tracked VPS whose container is not running is stopped.
    spdlog::warn("VPS {}: container {} not running on startup ({})", v->id, name, found ? state : "missing");
    json r = report(v->id, "stopped", -1, std::string(kGoneMessage), std::nullopt, true, std::nullopt);
    co_await deps_.store.finish_task(v->id, r.dump());
    vps_.erase(v->id);
  }

  // Phase 3: running VPS containers without a row (state reset, or started
  // by the Python runner) are adopted; another node's are left alone.
  for (auto& [name, c] : by_name) {
    auto id = vps_id_of(name);
    if (!id || !alive(str_field(c, "State"))) continue;
    const json labels = c.contains("Labels") ? c["Labels"] : json(nullptr);
    const std::string node = str_field(labels, "kohakuriver.node");
    if (!node.empty() && node != deps_.hostname) continue;
    std::string started = naive_local_now();
    try {
      json info = co_await deps_.docker.inspect_container(name);
      if (auto t = tasks::parse_docker_created(str_field(info["State"], "StartedAt")))
        started = naive_local_iso(std::chrono::system_clock::time_point(std::chrono::seconds(*t)));
    } catch (const DockerError&) {
    }
    co_await adopt(*id, started, true);
  }

  asio::co_spawn(ex_, watch_events(), asio::detached);
}

// Reports a live VPS container as running again (§4.4 phases 2–3).
asio::awaitable<void> VpsManager::adopt(int64_t id, std::string started_at, bool insert_row) {
  const std::string name = vps_container_name(id);
  std::optional<json> info;
  try {
    info = co_await deps_.docker.inspect_container(name);
  } catch (const DockerError& e) {
    spdlog::warn("VPS {}: inspect failed during recovery: {}", id, e.message);
  }
  VpsPtr v;
  if (insert_row) {
    v = std::make_shared<Vps>();
    v->id = id;
    v->started_at = started_at;
    v->mode = SshKeyMode::None;
    if (info) {
      if (auto m = recorded_key_mode(*info)) v->mode = *m;
      else if (!ssh_host_port(*info)) v->mode = SshKeyMode::Disabled;
    }
    store::TaskRecord rec;
    rec.task_id = id;
    rec.kind = "vps";
    rec.container_name = name;
    rec.phase = "running";
    rec.started_at = started_at;
    if (!co_await deps_.store.insert_task(rec)) co_return;
    vps_[id] = v;
    spdlog::info("Adopted untracked VPS container {}", name);
  } else {
    v = vps_.at(id);
  }
  int port = 0;
  if (info)
    if (auto p = ssh_host_port(*info)) port = *p;
  v->ssh_port = port;
  v->ready = true;
  v->busy = false;
  co_await save_state(*v);
  json r = port ? report(id, "running", std::nullopt, std::string("VPS recovered after runner restart"), std::nullopt,
                         false, port)
                : report(id, "running", std::nullopt,
                         std::string("VPS recovered after runner restart (TTY-only, no SSH)"), std::nullopt, false,
                         std::nullopt);
  co_await push(id, r, false);
  spdlog::info("VPS {} recovered (ssh port {})", id, port);
}

void VpsManager::report_running_again() {
  asio::co_spawn(ex_, rereport_running(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("Re-reporting running VPS failed: {}", ex.what());
    }
  });
  if (vm_) vm_->report_running_again();
}

asio::awaitable<void> VpsManager::rereport_running() {
  std::vector<VpsPtr> live;
  for (const auto& [id, v] : vps_)
    if (v->ready && !v->busy && !v->killed) live.push_back(v);
  for (const auto& v : live) {
    // A container that died meanwhile is the event watch's to report.
    try {
      json info = co_await deps_.docker.inspect_container(vps_container_name(v->id));
      if (!info.contains("State") || !info["State"].value("Running", false)) continue;
      if (auto p = ssh_host_port(info)) v->ssh_port = *p;
    } catch (const DockerError& e) {
      spdlog::warn("VPS {}: not re-reported after reconnection: {}", v->id, e.message);
      continue;
    }
    if (v->busy || v->killed || !vps_.count(v->id)) continue;  // changed while we waited
    std::optional<int> port;
    if (v->ssh_port) port = v->ssh_port;
    co_await push(v->id,
                  report(v->id, "running", std::nullopt, std::string("VPS still running (host connection restored)"),
                         std::nullopt, false, port),
                  false);
    spdlog::info("VPS {} re-reported running after the host connection returned", v->id);
  }
}

asio::awaitable<void> VpsManager::watch_events() {
  std::chrono::milliseconds backoff{500};
  bool first = true;
  for (;;) {
    if (stop_.stopped()) co_return;
    // Replays what happened while the ports were checked below.
    const long long since = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count() - 1;
    if (!first) {
      // Events may have been missed while disconnected (a daemon restart
      // restarts every VPS on new ports): check each one.
      std::vector<int64_t> ids;
      for (const auto& [id, v] : vps_) ids.push_back(id);
      for (auto id : ids) co_await refresh_port(id);
    }
    first = false;
    auto on_event = [this](const json& ev) {
      const json attrs = ev.contains("Actor") && ev["Actor"].is_object() ? ev["Actor"].value("Attributes", json())
                                                                         : json();
      auto id = vps_id_of(str_field(attrs, "name"));
      if (!id || !vps_.count(*id)) return;
      const std::string action = str_field(ev, "Action").empty() ? str_field(ev, "status") : str_field(ev, "Action");
      if (action == "start")
        asio::co_spawn(ex_, refresh_port(*id), asio::detached);
      else if (action == "destroy")
        asio::co_spawn(ex_, container_destroyed(*id), asio::detached);
    };
    try {
      co_await deps_.docker.stream_events(vps_event_filter(), on_event, since, events_cancel_);
      backoff = std::chrono::milliseconds(500);
    } catch (const DockerError& e) {
      if (e.cancelled() || stop_.stopped()) co_return;
      spdlog::debug("Docker event stream for VPS ended: {}", e.message);
    }
    if (!co_await stop_.sleep_for(backoff)) co_return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

// R-STALEPORT: after Docker (re)started a VPS, report its SSH port when it
// changed.
asio::awaitable<void> VpsManager::refresh_port(int64_t id) {
  auto it = vps_.find(id);
  if (it == vps_.end()) co_return;
  VpsPtr v = it->second;
  if (v->busy || v->killed || !v->ready || v->mode == SshKeyMode::Disabled) co_return;
  auto port = co_await discover_port(vps_container_name(id), 10);
  if (!port || *port == v->ssh_port || v->busy || v->killed || !vps_.count(id)) co_return;
  spdlog::info("VPS {}: SSH port changed from {} to {} (container restarted by Docker)", id, v->ssh_port, *port);
  v->ssh_port = *port;
  co_await save_state(*v);
  co_await push(id, report(id, "running", std::nullopt, std::nullopt, v->started_at, false, *port), false);
}

// A tracked VPS container removed behind the runner's back.
asio::awaitable<void> VpsManager::container_destroyed(int64_t id) {
  auto it = vps_.find(id);
  if (it == vps_.end()) co_return;
  VpsPtr v = it->second;
  if (v->busy || v->killed || !v->ready) co_return;
  spdlog::warn("VPS {}: container removed outside the runner", id);
  json r = report(id, "stopped", -1, std::string("Container removed outside the runner."), std::nullopt, true,
                  std::nullopt);
  co_await deps_.store.finish_task(id, r.dump());
  vps_.erase(id);
}

}  // namespace kr::vps
