// HTTP routes of the VM backend (vm.md §3, §8, §14; V7, V10, V11, V24).
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "api/limits.hpp"
#include "api/validation.hpp"
#include "common/blocking.hpp"
#include "vm/process.hpp"
#include "vm/vm_service.hpp"
#include "vm/vm_forward.hpp"

namespace kr::vm {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;
using api::HttpRequest;
using api::HttpResponse;

namespace {

json ok_body() { return json{{"status", "ok"}}; }
json message_body(const std::string& m) { return json{{"message", m}}; }


std::vector<std::string> sorted_regular_files(const fs::path& dir, std::uint64_t& blocks_bytes) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    files.push_back(it->path().filename().string());
    blocks_bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::uint64_t tree_blocks_bytes(const fs::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode))
      total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

json images_body(const std::vector<BaseImage>& images, const std::string& dir) {
  json list = json::array();
  for (const auto& i : images)
    list.push_back(json{{"name", i.name}, {"filename", i.filename}, {"size_bytes", i.size_bytes},
                        {"modified_at", i.modified_at}});
  return json{{"images", list}, {"images_dir", dir}};
}

json deleted_body(int64_t id, std::uint64_t freed) {
  return json{{"message", "VM instance " + std::to_string(id) + " deleted."}, {"task_id", std::to_string(id)},
              {"freed_bytes", freed}};
}

json status_json(int64_t id, const std::string& ip, pid_t pid, bool ready, double created_at,
                 std::optional<double> last_heartbeat, const std::vector<std::string>& pci) {
  return json{{"task_id", id},
              {"vm_ip", ip},
              {"pid", pid},
              {"ssh_ready", ready},
              {"created_at", created_at},
              {"last_heartbeat", last_heartbeat ? json(*last_heartbeat) : json(nullptr)},
              {"gpu_pci_addresses", pci}};
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::variant<VmHeartbeat, json> parse_vm_heartbeat(std::string_view body) {
  api::Validation v;
  auto obj = api::parse_body_object(body, v);
  if (!obj) return v.body();
  VmHeartbeat hb;
  api::BodyFields f(*obj, v);
  if (auto id = f.req_int("task_id")) hb.task_id = *id;
  if (auto it = obj->find("timestamp"); it != obj->end() && !it->is_null()) {
    if (it->is_number()) {
      hb.timestamp = it->get<double>();
    } else if (it->is_boolean()) {
      hb.timestamp = it->get<bool>() ? 1.0 : 0.0;
    } else if (it->is_string()) {
      const std::string& s = it->get_ref<const std::string&>();
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && *end == '\0' && std::isfinite(d))
        hb.timestamp = d;
      else
        v.add(json::array({"body", "timestamp"}), "float_parsing",
              "Input should be a valid number, unable to parse string as a number", *it);
    } else {
      v.add(json::array({"body", "timestamp"}), "float_type", "Input should be a valid number", *it);
    }
  }
  if (auto it = obj->find("gpus"); it != obj->end() && !it->is_null()) {
    if (!it->is_array()) {
      v.add(json::array({"body", "gpus"}), "list_type", "Input should be a valid list", *it);
    } else {
      for (std::size_t i = 0; i < it->size(); ++i)
        if (!(*it)[i].is_object())
          v.add(json::array({"body", "gpus", i}), "dict_type", "Input should be a valid dictionary", (*it)[i]);
      hb.gpus = *it;
    }
  }
  if (auto it = obj->find("system"); it != obj->end() && !it->is_null()) {
    if (!it->is_object())
      v.add(json::array({"body", "system"}), "dict_type", "Input should be a valid dictionary", *it);
    else
      hb.system = *it;
  }
  if (auto it = obj->find("status"); it != obj->end()) {
    if (!it->is_string())
      v.add(json::array({"body", "status"}), "string_type", "Input should be a valid string", *it);
    else
      hb.status = it->get<std::string>();
  }
  if (!v.ok()) return v.body();
  return hb;
}

std::optional<std::int64_t> parse_vm_task_id(std::string_view s) {
  // Host ids are 63-bit snowflakes: 19 digits. Decimal digits only (no sign,
  // no space) and no overflow.
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

json vm_instances_listing(const fs::path& instances_dir, const fs::path& run_dir, const std::vector<int64_t>& tracked) {
  std::vector<std::pair<int64_t, std::string>> ids;
  std::error_code ec;
  for (fs::directory_iterator it(instances_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code dec;
    const auto id = parse_vm_task_id(name);
    if (!id || !it->is_directory(dec)) continue;
    ids.emplace_back(*id, name);
  }
  std::sort(ids.begin(), ids.end());
  json list = json::array();
  std::uint64_t total = 0;
  for (const auto& [id, name] : ids) {
    const VmPaths paths = vm_paths(instances_dir, run_dir, id);
    std::uint64_t usage = 0;
    auto files = sorted_regular_files(paths.instance_dir, usage);
    total += usage;
    auto pid = verified_qemu_pid(paths);
    list.push_back(json{{"task_id", name},
                        {"disk_usage_bytes", usage},
                        {"files", files},
                        {"qemu_running", pid.has_value()},
                        {"qemu_pid", pid ? json(*pid) : json(nullptr)},
                        {"in_task_store", std::find(tracked.begin(), tracked.end(), id) != tracked.end()}});
  }
  return json{{"instances_dir", instances_dir.string()}, {"instances", list}, {"total_disk_usage_bytes", total}};
}

void VmService::add_routes(api::Router& r) {
  r.add("POST", "/api/vps/{task_id}/vm-restart", [this](HttpRequest& q) { return restart_route(q); },
        api::limits::kControlBody);
  r.add("GET", "/api/vps/{task_id}/vm-status", [this](HttpRequest& q) { return status_route(q); });
  r.add("POST", "/api/vps/{task_id}/vm-heartbeat", [this](HttpRequest& q) { return heartbeat_route(q); },
        api::limits::kControlBody);
  r.add("POST", "/api/vps/{task_id}/vm-phone-home", [this](HttpRequest& q) { return phone_home_route(q); },
        api::limits::kControlBody);
  r.add("GET", "/api/vm/images", [this](HttpRequest& q) { return images_route(q); });
  r.add("GET", "/api/vps/vm-instances", [this](HttpRequest& q) { return instances_route(q); });
  r.add("DELETE", "/api/vps/vm-instances/{task_id}", [this](HttpRequest& q) { return delete_instance_route(q); });
}

asio::awaitable<HttpResponse> VmService::restart_route(HttpRequest& req) {
  api::Validation val;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", val);
  if (!id) co_return HttpResponse::json(422, val.body());
  const std::string id_text = std::to_string(*id);
  auto it = vms_.find(*id);
  if (it == vms_.end() || it->second->busy || it->second->argv.empty())
    co_return HttpResponse::detail(500, "Failed to restart VM " + id_text + ".");
  VmPtr vm = it->second;
  // V8: answer now (the host waits 15 s), restart in the background and
  // report problems as status.
  vm->busy = true;
  vm->restarting = true;
  vm->ssh_ready = false;
  asio::co_spawn(ex_, restart_in_background(vm), asio::detached);
  co_return HttpResponse::json(200, message_body("VM " + id_text + " restarted."));
}

asio::awaitable<HttpResponse> VmService::status_route(HttpRequest& req) {
  api::Validation val;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", val);
  if (!id) co_return HttpResponse::json(422, val.body());
  auto it = vms_.find(*id);
  if (it == vms_.end() || !it->second->launched)
    co_return HttpResponse::detail(404, "VM " + std::to_string(*id) + " not found.");
  const Vm& vm = *it->second;
  co_return HttpResponse::json(200, status_json(*id, vm.state.vm_ip, vm.pid, vm.ssh_ready, vm.created_at,
                                                vm.last_heartbeat, vm.state.gpu_pci_addresses));
}

asio::awaitable<HttpResponse> VmService::heartbeat_route(HttpRequest& req) {
  api::Validation val;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", val);
  if (!id) co_return HttpResponse::json(422, val.body());
  auto parsed = parse_vm_heartbeat(req.body);
  if (auto* err = std::get_if<json>(&parsed)) co_return HttpResponse::json(422, *err);
  auto it = vms_.find(*id);  // the path id selects the VM, not the body's
  if (it == vms_.end() || !it->second->launched) co_return HttpResponse::json(200, ok_body());
  VmPtr vm = it->second;
  if (!from_vm(vm, req))
    co_return HttpResponse::detail(403, "Agent calls for VM " + std::to_string(*id) + " are accepted only from its address.");
  const VmHeartbeat& hb = std::get<VmHeartbeat>(parsed);
  const bool first = !vm->last_heartbeat.has_value();
  vm->last_heartbeat = unix_now();  // V24: our clock, not the guest's
  vm->last_report = json{{"gpus", hb.gpus}, {"system", hb.system}, {"status", hb.status}};
  vm->ssh_ready = true;
  if (first && !vm->busy) mark_running(vm);
  co_return HttpResponse::json(200, ok_body());
}

asio::awaitable<HttpResponse> VmService::phone_home_route(HttpRequest& req) {
  api::Validation val;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", val);
  if (!id) co_return HttpResponse::json(422, val.body());
  auto it = vms_.find(*id);
  if (it == vms_.end() || !it->second->launched) co_return HttpResponse::json(200, ok_body());
  VmPtr vm = it->second;
  if (!from_vm(vm, req))
    co_return HttpResponse::detail(403, "Agent calls for VM " + std::to_string(*id) + " are accepted only from its address.");
  spdlog::info("VM {} phoned home", *id);
  vm->ssh_ready = true;
  if (!vm->busy) mark_running(vm);
  co_return HttpResponse::json(200, ok_body());
}

asio::awaitable<HttpResponse> VmService::images_route(HttpRequest&) {
  const std::string dir = deps_.cfg.vm_images_dir;
  auto list = [dir] { return list_base_images(dir); };
  auto images = co_await run_blocking(list);
  co_return HttpResponse::json(200, images_body(images, dir));
}

asio::awaitable<HttpResponse> VmService::instances_route(HttpRequest&) {
  const std::vector<int64_t> tracked = deps_.store.live_task_ids();
  const fs::path dir = settings_.instances_dir, run = settings_.run_dir;
  auto walk = [dir, run, tracked] { return vm_instances_listing(dir, run, tracked); };
  json body = co_await run_blocking(walk);
  co_return HttpResponse::json(200, body);
}

asio::awaitable<HttpResponse> VmService::delete_instance_route(HttpRequest& req) {
  api::Validation val;
  auto id = api::path_int(req.path_params.at("task_id"), "task_id", val);
  bool force = false;
  if (auto q = req.query_params.find("force"); q != req.query_params.end()) {
    api::FieldError e;
    auto b = api::lax_bool_text(q->second, e);
    if (!b)
      val.add(json::array({"query", "force"}), e, q->second);
    else
      force = *b;
  }
  if (!id || !val.ok()) co_return HttpResponse::json(422, val.body());
  const std::string id_text = std::to_string(*id);
  const VmPaths paths = vm_paths(settings_.instances_dir, settings_.run_dir, *id);
  auto probe = [paths]() -> std::pair<bool, std::optional<pid_t>> {
    std::error_code ec;
    if (!fs::is_directory(paths.instance_dir, ec)) return {false, std::nullopt};
    return {true, verified_qemu_pid(paths)};
  };
  auto [exists, pid] = co_await run_blocking(probe);
  if (!exists) co_return HttpResponse::detail(404, "VM instance directory for task " + id_text + " not found.");
  auto tracked = vms_.find(*id);
  const bool running = pid.has_value() || (tracked != vms_.end() && !tracked->second->gone);
  if (running && !force)
    co_return HttpResponse::detail(409, "QEMU is still running for task " + id_text + ". Use force=true to stop and delete.");
  if (tracked != vms_.end()) {
    auto res = co_await stop(*id);
    if (res.status != 200) spdlog::warn("VM {}: stop before delete answered {}", *id, res.status);
  } else if (pid) {
    // V10: an untracked QEMU (recovery failed, foreign state) is killed by
    // its verified pid before its files go.
    co_await shutdown_qemu(paths, *pid, std::chrono::seconds(10));
  }
  auto still = [paths] { return verified_qemu_pid(paths); };
  if (auto left = co_await run_blocking(still))
    co_return HttpResponse::detail(500, "QEMU (pid " + std::to_string(*left) + ") of VM " + id_text + " could not be stopped.");
  auto remove = [paths]() -> std::uint64_t {
    const std::uint64_t freed = tree_blocks_bytes(paths.instance_dir);
    std::error_code ec;
    fs::remove_all(paths.instance_dir, ec);
    fs::remove(paths.qmp_socket, ec);
    return freed;
  };
  const std::uint64_t freed = co_await run_blocking(remove);
  // Only a VM's row: a command task may carry the same id.
  auto rec = co_await deps_.store.get_task(*id);
  if (rec && rec->kind == "vm") co_await deps_.store.delete_task(*id);
  spdlog::info("VM instance {} deleted ({} bytes freed)", *id, freed);
  co_return HttpResponse::json(200, deleted_body(*id, freed));
}

asio::awaitable<void> VmService::forward(api::WebSocket& ws, std::string container_id, std::uint16_t port,
                                         tunnel::Proto proto) {
  // vm-{task_id}; the VM must be tracked and have its address.
  std::string ip;
  if (auto id = parse_vm_task_id(std::string_view(container_id).substr(3))) {
    auto it = vms_.find(*id);
    if (it != vms_.end() && !it->second->gone) ip = it->second->state.vm_ip;
  }
  if (ip.empty()) {
    co_await ws.send("Error: Cannot resolve VM target: " + container_id, false);
    co_await ws.close(api::ws_close::kInternalError);
    co_return;
  }
  co_await serve_vm_forward(ws, ip, port, proto);
}

}  // namespace kr::vm
