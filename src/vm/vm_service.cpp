// VM create / pause / cloud-init watchdog and the service's shared state
// (vm.md §4, §11; V5, V6, V9, V23). Restart: vm_restart.cpp; stop, kill and
// the clean-up: vm_stop.cpp; startup recovery: vm_recovery.cpp.
#include "vm/vm_service.hpp"

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "common/datetime.hpp"
#include "common/log_rate_limiter.hpp"
#include "host_link/status_update.hpp"
#include "monitor/vm_capability.hpp"
#include "ssh/client.hpp"
#include "vm/process.hpp"
#include "vm/qmp_client.hpp"
#include "vm/validation.hpp"
#include "vm/vfio.hpp"
#include "vm/vm_share.hpp"

namespace kr::vm {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;
using api::HttpRequest;
using api::HttpResponse;

namespace {

json message_body(const std::string& m) { return json{{"message", m}}; }
json create_ok_body(const std::string& ip, const std::string& network_mode) {
  return json{{"success", true}, {"vm_ip", ip}, {"ssh_ready", false}, {"network_mode", network_mode}};
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string iso_of(double unix_seconds) {
  return naive_local_iso(std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(unix_seconds))));
}

void write_state_file(const fs::path& file, const VmState& state) {
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json(state).dump(2) << "\n";
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, file);
}

QemuSettings settings_from(const config::RunnerConfig& cfg, std::vector<std::string> prefix, std::string& error) {
  QemuSettings s;
  s.images_dir = cfg.vm_images_dir;
  s.instances_dir = cfg.vm_instances_dir;
  s.run_dir = cfg.vm_run_dir;
  s.accel = parse_accel(cfg.vm_qemu_accel).value_or(Accel::Kvm);
  s.cpu_model = resolve_cpu_model(s.accel, cfg.vm_qemu_cpu);
  const char* path = std::getenv("PATH");
  s.path_env = path ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  s.launch_prefix = std::move(prefix);
  s.legacy_share_root = cfg.local_temp_dir;
  try {
    s.firmware = resolve_firmware(cfg.vm_firmware);
  } catch (const std::exception& e) {
    error = std::string("VM_FIRMWARE: ") + e.what();
  }
  return s;
}

}  // namespace

VmService::VmService(asio::any_io_executor ex, VmServiceDeps deps)
    : ex_(ex), deps_(std::move(deps)), stop_(ex),
      relay_guard_(std::make_shared<SshRelayGuard>(relay_settings_from(deps_.cfg))) {
  settings_ = settings_from(deps_.cfg, deps_.launch_prefix, settings_error_);
  if (std::string reach = vm_dirs_reach_error(deps_.cfg); !reach.empty()) {
    spdlog::error("{}", reach);
    settings_error_ += (settings_error_.empty() ? "" : "; ") + reach;
  }
  try {
    pool_.emplace(deps_.cfg.vm_bridge_subnet, deps_.cfg.vm_bridge_gateway);
  } catch (const std::exception& e) {
    settings_error_ += (settings_error_.empty() ? "" : "; ") + std::string(e.what());
  }
}

std::vector<int64_t> VmService::running_ids() const {
  std::vector<int64_t> ids;
  for (const auto& [id, vm] : vms_)
    if (!vm->gone) ids.push_back(id);
  return ids;
}

std::map<int64_t, json> VmService::last_agent_reports() const {
  std::map<int64_t, json> out;
  for (const auto& [id, vm] : vms_)
    if (!vm->last_report.is_null()) out[id] = vm->last_report;
  return out;
}

std::vector<monitor::VmGpuReport> VmService::gpu_reports() const {
  std::vector<monitor::VmGpuReport> out;
  for (const auto& [id, vm] : vms_) {
    if (vm->gone || vm->state.gpu_pci_addresses.empty()) continue;
    monitor::VmGpuReport r;
    r.task_id = id;
    r.gpu_pci_addresses = vm->state.gpu_pci_addresses;
    if (vm->last_report.is_object() && vm->last_report.contains("gpus")) r.agent_gpus = vm->last_report["gpus"];
    out.push_back(std::move(r));
  }
  return out;
}

json VmService::status_body(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                            std::optional<std::string> message, std::optional<std::string> started_at,
                            bool completed) const {
  return host_link::status_update_body(id, status, exit_code, message, started_at, completed);
}

asio::awaitable<void> VmService::report(int64_t id, json body, bool is_final) {
  co_await deps_.outbox.push(id, body.dump(), is_final);
}

asio::awaitable<void> VmService::persist(VmPtr vm) {
  store::TaskChanges ch;
  ch.extra_json = store_extra(*vm);
  ch.started_at = vm->started_at;
  co_await deps_.store.update_task(vm->state.task_id, "running", ch);
  const fs::path file = vm->paths.state_json;
  const VmState state = vm->state;
  auto write = [file, state] { write_state_file(file, state); };
  co_await run_blocking(write);
}

std::string VmService::store_extra(const Vm& vm) const {
  auto extra = to_json(vm.state);
  if (vm.ending) extra = with_ending(std::move(extra), *vm.ending);
  return extra.dump();
}

asio::awaitable<std::string> VmService::ensure_network() {
  if (network_ready_) co_return std::string();
  NatBridgeSettings s{deps_.cfg.vm_bridge_name, deps_.cfg.vm_bridge_subnet, deps_.cfg.vm_bridge_gateway};
  auto setup = [s]() -> std::string {
    try {
      for (const auto& c : ensure_nat_network(s)) spdlog::info("VM network: {}", c);
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  };
  std::string error = co_await run_blocking(setup);
  if (error.empty()) network_ready_ = true;
  co_return error;
}

void VmService::release_network(const VmState& state) {
  if (state.network_mode == "overlay") {
    if (state.overlay_token) asio::co_spawn(ex_, release_overlay_ip(*state.overlay_token), asio::detached);
    return;
  }
  if (!pool_ || state.vm_ip.empty()) return;
  // A stale record (a dead VM found at startup) must not free an address
  // that a tracked VM holds.
  for (const auto& [id, vm] : vms_)
    if (id != state.task_id && vm->state.vm_ip == state.vm_ip) return;
  pool_->release(state.vm_ip);
}

bool VmService::from_vm(const VmPtr& vm, const HttpRequest& req) const {
  if (req.remote_ip == vm->state.vm_ip) return true;
  // A guest (or container) can repeat this at will: rate-limited per source.
  static common::LogRateLimiter refusal_log;
  if (auto n = refusal_log.admit(req.remote_ip))
    spdlog::warn("VM {}: agent call from {} refused (the VM's address is {}){}", vm->state.task_id, req.remote_ip,
                 vm->state.vm_ip, common::LogRateLimiter::suppressed_note(*n));
  return false;
}

void VmService::mark_running(VmPtr vm) {
  const int64_t id = vm->state.task_id;
  json body = status_body(id, "running", std::nullopt, std::string(), vm->started_at, false);
  asio::co_spawn(ex_, report(id, std::move(body), false), asio::detached);
}

asio::awaitable<void> VmService::report_final(int64_t id, json body) {
  bool durable = false;
  try {
    durable = co_await deps_.store.finish_task(id, body.dump()) == store::FinishOutcome::Reported;
  } catch (const std::exception& e) {
    spdlog::error("VM {}: cannot record its final status: {}", id, e.what());
  }
  if (!durable) co_await report(id, std::move(body), true);
}

// ---- create (§4) -------------------------------------------------------------

asio::awaitable<HttpResponse> VmService::fail_create(VmPtr vm, std::string message, int http_status) {
  const int64_t id = vm->state.task_id;
  spdlog::warn("VM {}: {}", id, message);
  co_await report_final(id, status_body(id, "failed", std::nullopt, message, std::nullopt, true));
  vm->gone = true;
  vms_.erase(id);
  co_return HttpResponse::detail(http_status, message);
}

asio::awaitable<HttpResponse> VmService::create(vps::VpsRequest rq, std::string body) {
  const int64_t id = rq.task_id;
  auto vm = std::make_shared<Vm>();
  vm->state.task_id = id;
  vm->state.container_name = vm_container_name(id);
  vm->busy = true;
  vms_[id] = vm;  // listed in heartbeats from acceptance, like a Docker VPS
  {
    store::TaskRecord rec;
    rec.task_id = id;
    rec.kind = "vm";
    rec.container_name = vm->state.container_name;
    rec.phase = "provisioning";
    rec.request_json = body;
    bool inserted = co_await deps_.store.insert_task(rec);
    if (!inserted) {
      vms_.erase(id);
      co_return HttpResponse::detail(409, "VPS " + std::to_string(id) + " is already running on this node.");
    }
  }
  co_await report(id, status_body(id, "pending", std::nullopt, std::nullopt, std::nullopt, false), false);

  // Request values (V12, V13) before anything is touched: a 400.
  const std::string image = rq.vm_image.value_or("ubuntu-24.04");
  if (auto why = image_name_error(image)) co_return co_await fail_create(vm, "VM VPS creation failed: " + *why, 400);
  std::optional<std::uint64_t> disk_bytes;
  {
    const std::string size = rq.vm_disk_size.value_or(deps_.cfg.vm_default_disk_size);
    std::string why;
    if (!size.empty()) {
      disk_bytes = parse_disk_size(size, why);
      if (!disk_bytes) co_return co_await fail_create(vm, "VM VPS creation failed: " + why, 400);
    }
  }
  const int64_t memory_mb = rq.memory_mb.value_or(deps_.cfg.vm_default_memory_mb);
  if (memory_mb < 64 || memory_mb > (int64_t{1} << 24))
    co_return co_await fail_create(vm, "VM VPS creation failed: memory_mb must be between 64 and 16777216", 400);
  if (rq.required_cores < 1 || rq.required_cores > 1024)
    co_return co_await fail_create(vm, "VM VPS creation failed: required_cores must be between 1 and 1024", 400);
  if (!settings_error_.empty())
    co_return co_await fail_create(vm, "VM VPS creation failed: " + settings_error_, 500);

  // Capability (cached; the first call may run the KVM probe).
  const auto cap_options = monitor::vm_capability_options(deps_.cfg.vm_qemu_accel, deps_.cfg.vm_firmware);
  auto probe = [cap_options] { return &monitor::vm_capability(cap_options); };
  const monitor::VmCapability* cap = co_await run_blocking(probe);
  if (!cap->vm_capable) {
    std::string why;
    for (const auto& e : cap->errors) why += (why.empty() ? "" : "; ") + e;
    co_return co_await fail_create(vm, "Node is not VM-capable: " + why, 500);
  }

  // GPUs: unknown ids fail the create (V22).
  std::vector<std::string> pci;
  std::vector<int> gpu_ids;
  for (auto g : rq.required_gpus) gpu_ids.push_back(static_cast<int>(g));
  std::string gpu_error;
  try {
    pci = passthrough_addresses(gpu_ids, cap->vfio_gpus);
  } catch (const std::exception& e) {
    gpu_error = e.what();
  }
  if (!gpu_error.empty()) co_return co_await fail_create(vm, "VM VPS creation failed: " + gpu_error, 500);
  vm->gpu = !pci.empty();

  // Network (§13): overlay mode while the VXLAN overlay is up (an address
  // reserved at the host, on kohaku-overlay), NAT mode otherwise.
  VmState& st = vm->state;
  std::optional<OverlayVmNetwork> overlay;
  if (deps_.overlay_network) overlay = deps_.overlay_network();
  int tap_mtu = 0;
  if (overlay) {
    std::string error;
    int status = 0;
    auto reservation = co_await reserve_overlay_ip(std::nullopt, error, status);
    if (!reservation)
      co_return co_await fail_create(vm, "VM VPS creation failed: overlay IP reservation failed: " + error, 500);
    st.vm_ip = reservation->ip;
    st.overlay_token = reservation->token;
    st.network_mode = "overlay";
    st.bridge_name = overlay->bridge;
    st.gateway = overlay->gateway;
    st.prefix_len = overlay->prefix_len;
    tap_mtu = overlay->mtu;
    asio::co_spawn(ex_, renew_overlay(vm, reservation->ttl_seconds + 5), asio::detached);
  } else {
    std::string net_error = co_await ensure_network();
    if (!net_error.empty()) co_return co_await fail_create(vm, "VM VPS creation failed: VM network: " + net_error, 500);
    auto ip = pool_->allocate();
    if (!ip)
      co_return co_await fail_create(vm, "VM VPS creation failed: no free VM address in " + deps_.cfg.vm_bridge_subnet, 500);
    st.vm_ip = *ip;
    st.network_mode = "standard";
    st.bridge_name = deps_.cfg.vm_bridge_name;
    st.gateway = deps_.cfg.vm_bridge_gateway;
    st.prefix_len = pool_->prefix_len();
  }
  st.allocated_cores = static_cast<int>(rq.required_cores);
  st.allocated_gpus = gpu_ids;
  st.tap_device = tap_name(id);
  st.mac_address = mac_address(id);
  st.gpu_pci_addresses = pci;
  if (rq.ssh_port > 0) st.ssh_port = static_cast<int>(rq.ssh_port);
  vm->paths = vm_paths(settings_.instances_dir, settings_.run_dir, id);

  LaunchRequest launch;
  launch.task_id = id;
  launch.vcpus = static_cast<int>(rq.required_cores);
  launch.memory_mb = static_cast<int>(memory_mb);
  launch.image = image;
  launch.disk_bytes = disk_bytes;
  launch.vfio_pci = pci;
  launch.tap = st.tap_device;
  launch.mac = st.mac_address;
  launch.shared_data_dir = fs::path(deps_.cfg.shared_dir) / "shared_data";
  SeedSpec& seed = launch.seed;
  seed.task_id = id;
  seed.user_ssh_key = rq.ssh_public_key.value_or("");
  seed.runner_url = "http://" + st.gateway + ":" + std::to_string(deps_.cfg.runner_port);
  seed.gpu = vm->gpu;
  seed.nvidia_driver_base_url = deps_.cfg.vm_nvidia_driver_url;
  seed.network.vm_ip = st.vm_ip;
  seed.network.prefix_len = st.prefix_len;
  seed.network.gateway = st.gateway;
  seed.network.dns = deps_.cfg.vm_dns_servers;
  seed.network.mac = st.mac_address;
  if (tap_mtu > 0) seed.network.mtu = tap_mtu;  // V18

  // V25: the SSH port is bound before QEMU starts; a taken port fails the
  // create (upstream only logged it).
  if (st.ssh_port) {
    std::optional<std::string> bind_error;
    try {
      vm->ssh_proxy = std::make_unique<SshProxy>(ex_, relay_guard_, deps_.cfg.runner_bind_ip,
                                                 static_cast<std::uint16_t>(*st.ssh_port), st.vm_ip);
    } catch (const std::exception& e) {
      bind_error = e.what();
    }
    if (bind_error) {
      release_network(st);
      co_return co_await fail_create(vm, "VM VPS creation failed: " + *bind_error, 500);
    }
  }

  const QemuSettings settings = settings_;
  const std::string bridge = st.bridge_name;
  // Everything blocking in one go; on failure undo in reverse (V5).
  auto work = [settings, launch, bridge, tap_mtu]() mutable -> std::variant<LaunchedVm, std::string> {
    std::vector<std::string> bound;
    Vfio vfio;
    bool tap_made = false;
    try {
      launch.seed.runner_public_key = ssh::runner_public_key_line();  // made when missing
      if (!launch.vfio_pci.empty()) launch.seed.nvidia_driver_version = nvidia_driver_version_from_sysfs();
      for (const auto& addr : launch.vfio_pci) {
        if (std::find(bound.begin(), bound.end(), addr) != bound.end()) continue;
        auto moved = vfio.bind_group(addr);
        bound.insert(bound.end(), moved.begin(), moved.end());
      }
      // 9p share paths must exist or QEMU refuses to start (the VM's own
      // share is made by create_and_launch, vm_share.hpp).
      std::error_code ec;
      if (!fs::is_directory(launch.shared_data_dir, ec)) fs::create_directories(launch.shared_data_dir, ec);
      create_tap(launch.tap, bridge, tap_mtu);
      tap_made = true;
      return create_and_launch(settings, launch);
    } catch (const std::exception& e) {
      std::string why = e.what();
      if (tap_made) delete_tap(launch.tap);
      for (auto it = bound.rbegin(); it != bound.rend(); ++it) {
        try {
          vfio.unbind_device(*it);
        } catch (const std::exception& u) {
          spdlog::warn("VM {}: roll-back unbind of {} failed: {}", launch.task_id, *it, u.what());
        }
      }
      return why;
    }
  };
  auto launched = co_await run_blocking(work);
  if (auto* why = std::get_if<std::string>(&launched)) {
    if (vm->ssh_proxy) vm->ssh_proxy->stop();
    release_network(st);
    co_return co_await fail_create(vm, "VM VPS creation failed: VM " + std::to_string(id) + " creation failed: " + *why, 500);
  }
  LaunchedVm& lv = std::get<LaunchedVm>(launched);
  vm->pid = lv.pid;
  vm->argv = lv.argv;
  vm->created_at = unix_now();
  vm->started_at = iso_of(vm->created_at);
  vm->launched = true;
  vm->generation = 1;
  if (vm->ssh_proxy) vm->ssh_proxy->start();
  spdlog::info("VM {} started: QEMU pid {}, {} on {}", id, vm->pid, st.vm_ip, st.tap_device);

  std::optional<std::string> persist_error;
  try {
    co_await persist(vm);
  } catch (const std::exception& e) {
    persist_error = e.what();
  }
  if (persist_error) spdlog::error("VM {}: cannot save its state: {}", id, *persist_error);

  const std::string provisioning = vm->gpu
                                       ? "Provisioning VM \xe2\x80\x94 installing packages and NVIDIA drivers via cloud-init"
                                       : "Provisioning VM \xe2\x80\x94 installing packages via cloud-init";
  co_await report(id, status_body(id, "assigning", std::nullopt, provisioning, std::nullopt, false), false);
  vm->busy = false;
  const int timeout = vm->gpu ? deps_.cfg.vm_cloud_init_gpu_timeout_seconds : deps_.cfg.vm_cloud_init_timeout_seconds;
  asio::co_spawn(ex_, watchdog(vm, vm->generation, timeout), asio::detached);
  co_return HttpResponse::json(200, create_ok_body(st.vm_ip, st.network_mode));
}

// V6: no agent contact in time -> stop the VM and report failed.
asio::awaitable<void> VmService::watchdog(VmPtr vm, std::uint64_t generation, int seconds) {
  if (seconds <= 0) co_return;
  if (!co_await stop_.sleep_for(std::chrono::seconds(seconds))) co_return;
  if (vm->gone || vm->generation != generation || vm->ssh_ready || vm->busy) co_return;
  const int64_t id = vm->state.task_id;
  spdlog::warn("VM {}: no agent contact {} s after start; stopping it", id, seconds);
  vm->busy = true;
  vm->ending = failure_ending("Cloud-init timed out after " + std::to_string(seconds) + "s");
  co_await record_ending(vm);
  co_await end_vm(vm, std::chrono::seconds(10));  // reports once QEMU is gone
}

// /api/kill (D17: stops the VM), /api/pause, /api/resume and the
// /api/vps/pause|resume routes (V23: QMP stop/cont).
asio::awaitable<HttpResponse> VmService::control(int64_t id, std::string action) {
  auto it = vms_.find(id);
  const std::string id_text = std::to_string(id);
  if (it == vms_.end()) co_return HttpResponse::detail(404, "VPS " + id_text + " not found.");
  if (action == "kill")
    co_return co_await end_by_host(id, kill_ending(), "Task " + id_text + " killed.", "Failed to kill task " + id_text + ".");
  co_return co_await qmp_pause(it->second, action == "pause");
}

asio::awaitable<HttpResponse> VmService::qmp_pause(VmPtr vm, bool pause) {
  const std::string id_text = std::to_string(vm->state.task_id);
  if (vm->busy) co_return HttpResponse::detail(409, "VM " + id_text + " is busy (being created, restarted or stopped).");
  std::optional<std::string> error;
  try {
    co_await qmp_execute(vm->paths.qmp_socket, pause ? "stop" : "cont", nullptr, std::chrono::seconds(5));
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (error) {
    spdlog::warn("VM {}: QMP {} failed: {}", id_text, pause ? "stop" : "cont", *error);
    co_return HttpResponse::detail(500, (pause ? "Failed to pause VPS " : "Failed to resume VPS ") + id_text + ".");
  }
  co_return HttpResponse::json(200, message_body("VPS " + id_text + (pause ? " paused." : " resumed.")));
}

void VmService::stop() {
  stop_.stop();
  // The relays end with the runner; QEMU keeps running (V26).
  for (auto& [id, vm] : vms_)
    if (vm->ssh_proxy) vm->ssh_proxy->stop();
}

}  // namespace kr::vm
