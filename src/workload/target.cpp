#include "workload/target.hpp"

#include <nlohmann/json.hpp>

#include "docker/docker_client.hpp"
#include "store/state_store.hpp"

namespace kr::workload {

namespace {
TargetLookup fail(int status, std::string message, bool unreachable = false) {
  TargetLookup r;
  r.status = status;
  r.message = std::move(message);
  r.docker_unreachable = unreachable;
  return r;
}
}  // namespace

ssh::SshTarget vm_ssh_target(const std::string& vm_ip) {
  ssh::SshTarget t;
  t.host = vm_ip;
  t.key = ssh::runner_key_path();
  return t;
}

boost::asio::awaitable<TargetLookup> resolve_container(store::StateStore& store, docker::DockerClient& docker,
                                                       std::int64_t task_id) {
  const std::string id = std::to_string(task_id);
  std::optional<store::TaskRecord> rec = co_await store.get_task(task_id);
  if (!rec) co_return fail(404, "Task " + id + " not found on this runner.");
  if (rec->kind == "vm" || rec->container_name.rfind("vm-", 0) == 0) {
    // VM access over SSH (execution.md §6.3, §7.4).
    auto extra = nlohmann::json::parse(rec->extra_json, nullptr, false);
    if (!extra.is_object() || !extra.contains("vm_ip") || !extra["vm_ip"].is_string() ||
        extra["vm_ip"].get_ref<const std::string&>().empty())
      co_return fail(500, "VM " + id + " has no IP address.");
    ContainerTarget t;
    t.task_id = task_id;
    t.vm_ip = extra["vm_ip"].get<std::string>();
    TargetLookup r;
    r.target = std::move(t);
    co_return r;
  }
  if (rec->container_name.empty()) co_return fail(404, "Task " + id + " has no container.");
  nlohmann::json info;
  std::optional<docker::DockerError> error;
  try {
    info = co_await docker.inspect_container(rec->container_name);
  } catch (const docker::DockerError& e) {
    error = e;
  }
  if (error) {
    if (error->not_found()) co_return fail(404, "Container not found.");
    if (error->daemon_unavailable()) co_return fail(500, "Docker connection error: " + error->message, true);
    co_return fail(500, "Docker API error: " + error->message);
  }
  std::string state = "unknown";
  if (info.contains("State") && info["State"].is_object() && info["State"].contains("Status") &&
      info["State"]["Status"].is_string())
    state = info["State"]["Status"].get<std::string>();
  if (state != "running") co_return fail(400, "Container is not running (status: " + state + ").");
  ContainerTarget t;
  t.task_id = task_id;
  t.container = rec->container_name;
  if (info.contains("Mounts") && info["Mounts"].is_array())
    for (const auto& m : info["Mounts"])
      if (m.is_object() && m.contains("Destination") && m["Destination"].is_string())
        t.mounts.push_back(m["Destination"].get<std::string>());
  const auto& cfg = info.contains("Config") ? info["Config"] : nlohmann::json();
  if (cfg.is_object() && cfg.contains("User") && cfg["User"].is_string()) t.user = cfg["User"].get<std::string>();
  const auto& hc = info.contains("HostConfig") ? info["HostConfig"] : nlohmann::json();
  if (hc.is_object() && hc.contains("Tmpfs") && hc["Tmpfs"].is_object())
    for (const auto& [dest, opts] : hc["Tmpfs"].items()) t.tmpfs.push_back(dest);
  if (info.contains("Mounts") && info["Mounts"].is_array())
    for (const auto& m : info["Mounts"])
      if (m.is_object() && m.value("Type", std::string()) == "tmpfs" && m.contains("Destination") &&
          m["Destination"].is_string())
        t.tmpfs.push_back(m["Destination"].get<std::string>());
  TargetLookup r;
  r.target = std::move(t);
  co_return r;
}

}  // namespace kr::workload
