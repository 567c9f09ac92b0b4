// Startup recovery of VMs (vm.md §10; V11, V26): QEMU outlives the runner;
// a restarted runner re-adopts every VM whose QEMU still runs (pid verified
// by /proc/<pid>/cmdline) and reports the others stopped.
#include <filesystem>
#include <fstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "common/datetime.hpp"
#include "ssh/client.hpp"
#include "vm/process.hpp"
#include "vm/vm_service.hpp"
#include "vm/vm_share.hpp"

namespace kr::vm {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Found {
  VmState state;
  bool in_store = false;
  std::optional<std::string> started_at;
  std::optional<pid_t> pid;
  std::vector<std::string> argv;
  std::optional<VmEnding> ending;  // a stop/kill/failure waiting for QEMU to go
};

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Reads vm-state.json files of instance dirs not in `known`, and checks
// every VM's QEMU. Blocking.
std::vector<Found> survey(std::vector<Found> from_store, const fs::path& instances, const fs::path& run_dir) {
  std::set<int64_t> known;
  for (const auto& f : from_store) known.insert(f.state.task_id);
  std::error_code ec;
  for (fs::directory_iterator it(instances, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path file = it->path() / "vm-state.json";
    std::ifstream in(file);
    if (!in) continue;
    try {
      Found f;
      f.state = vm_state_from_json(json::parse(in));
      if (known.count(f.state.task_id) || it->path().filename() != std::to_string(f.state.task_id)) continue;
      known.insert(f.state.task_id);
      from_store.push_back(std::move(f));
    } catch (const std::exception& e) {
      spdlog::warn("VM recovery: ignoring {}: {}", file.string(), e.what());
    }
  }
  for (auto& f : from_store) {
    const VmPaths paths = vm_paths(instances, run_dir, f.state.task_id);
    f.pid = verified_qemu_pid(paths);
    if (f.pid) f.argv = load_saved_argv(paths).value_or(std::vector<std::string>{});
  }
  return from_store;
}

}  // namespace

void VmService::start() {
  asio::co_spawn(ex_, resolve_exempt_host(relay_guard_, deps_.cfg.host_address), asio::detached);
  asio::co_spawn(ex_, recover(), asio::detached);
}

asio::awaitable<void> VmService::recover() {
  // The runner's SSH key (vm.md §1): made at startup when missing, so the
  // first VM's seed carries it and terminal/filesystem access works.
  auto make_key = [] { return ssh::runner_public_key_line(); };
  if (!(co_await run_blocking(make_key)).empty()) spdlog::debug("runner SSH key: {}", ssh::runner_key_path().string());
  std::vector<Found> found;
  std::optional<std::string> error;
  try {
    for (const auto& rec : co_await deps_.store.load_tasks()) {
      if (rec.kind != "vm") continue;
      Found f;
      f.in_store = true;
      f.started_at = rec.started_at;
      try {
        const json extra = json::parse(rec.extra_json);
        f.ending = ending_from_extra(extra);
        f.state = vm_state_from_json(extra);
      } catch (const std::exception&) {
        f.state.task_id = rec.task_id;  // a create that never got as far as QEMU
        f.state.container_name = rec.container_name;
      }
      f.state.task_id = rec.task_id;
      found.push_back(std::move(f));
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (error) spdlog::error("VM recovery: cannot read the state store: {}", *error);
  const fs::path instances = settings_.instances_dir, run_dir = settings_.run_dir;
  auto look = [found, instances, run_dir] { return survey(found, instances, run_dir); };
  found = co_await run_blocking(look);

  for (auto& f : found) {
    const int64_t id = f.state.task_id;
    if (vms_.count(id)) continue;
    if (f.pid && !f.state.vm_ip.empty()) {
      auto vm = std::make_shared<Vm>();
      vm->state = f.state;
      vm->paths = vm_paths(instances, run_dir, id);
      vm->pid = *f.pid;
      vm->argv = f.argv;
      vm->created_at = unix_now();
      vm->started_at = f.started_at.value_or(naive_local_now());
      vm->ssh_ready = true;
      vm->launched = true;
      vm->generation = 1;
      vm->gpu = !f.state.gpu_pci_addresses.empty();
      vm->ending = f.ending;
      if (f.state.network_mode == "overlay") {
        // O5/V20: keep the reservation alive; its expiry was not kept, so
        // try soon and retry while the previous one is still live.
        asio::co_spawn(ex_, renew_overlay(vm, 60), asio::detached);
      } else if (pool_) {
        pool_->mark_used(f.state.vm_ip);
      }
      if (f.state.ssh_port && !f.ending) {
        try {
          vm->ssh_proxy = std::make_unique<SshProxy>(ex_, relay_guard_, deps_.cfg.runner_bind_ip,
                                                     static_cast<std::uint16_t>(*f.state.ssh_port), f.state.vm_ip);
          vm->ssh_proxy->start();
        } catch (const std::exception& e) {
          spdlog::error("VM {}: {}", id, e.what());
        }
      }
      vms_[id] = vm;
      if (!f.in_store) {
        store::TaskRecord rec;
        rec.task_id = id;
        rec.kind = "vm";
        rec.container_name = vm_container_name(id);
        rec.phase = "running";
        rec.started_at = vm->started_at;
        rec.extra_json = to_json(f.state).dump();
        co_await deps_.store.insert_task(rec);
      }
      // The bridge and rules may be gone (host reboot keeps QEMU? no, but a
      // network restart may): make sure they are there for the adopted VM.
      if (f.state.network_mode != "overlay") {
        std::string net_error = co_await ensure_network();
        if (!net_error.empty()) spdlog::warn("VM recovery: VM network: {}", net_error);
      }
      if (f.ending) {
        // Its stop/kill/failure was accepted before the runner restarted:
        // finish it (issue 16 point 5), never report it running again.
        spdlog::info("VM {}: QEMU pid {} still there; finishing its {}", id, vm->pid, f.ending->status);
        vm->busy = true;
        asio::co_spawn(ex_, end_vm(vm, std::chrono::seconds(deps_.cfg.vm_powerdown_timeout_seconds)),
                       asio::detached);
        continue;
      }
      spdlog::info("VM {} recovered: QEMU pid {}, {}", id, vm->pid, f.state.vm_ip);
      if (auto share = local_share_path(vm->argv);
          share && fs::path(*share).lexically_normal() != (vm->paths.instance_dir / kLocalShareName).lexically_normal())
        spdlog::warn("VM {}: its running QEMU shares {} as /local_temp (an older runner's place, which containers "
                     "may reach); the share moves into {} at the next restart",
                     id, *share, vm->paths.instance_dir.string());
      co_await report(id, status_body(id, "running", std::nullopt, std::string("VM recovered after runner restart"),
                                      vm->started_at, false),
                      false);
      continue;
    }
    // Dead: free what it held, report stopped (final), drop the state.
    spdlog::info("VM {}: QEMU not running on runner start; cleaning up", id);
    const VmState st = f.state;
    co_await free_vm_resources(st, vm_paths(instances, run_dir, id));
    json r = f.ending ? status_body(id, f.ending->status, std::nullopt, f.ending->message, std::nullopt, true)
                      : status_body(id, "stopped", -1,
                                    std::string("VM not running on runner startup (runner or machine restarted)."),
                                    std::nullopt, true);
    std::optional<store::FinishOutcome> outcome;
    if (f.in_store) {
      try {
        outcome = co_await deps_.store.finish_task(id, r.dump());
      } catch (const std::exception& e) {
        spdlog::error("VM {}: cannot record its end: {}", id, e.what());
      }
    }
    if (!outcome) co_await report(id, r, true);
  }
}

// The host link came back: every launched VM still tracked is `running`
// again at the host (which may have marked it `lost`).
void VmService::report_running_again() {
  for (const auto& [id, vm] : vms_) {
    // Not one whose stop/kill/failure is recorded (its QEMU may still be ending).
    if (!vm->launched || vm->busy || vm->gone || vm->ending || vm->restarting) continue;
    json body = status_body(id, "running", std::nullopt, std::string("VM still running (host connection restored)"),
                            vm->started_at, false);
    asio::co_spawn(ex_, report(id, std::move(body), false), asio::detached);
  }
}

}  // namespace kr::vm
