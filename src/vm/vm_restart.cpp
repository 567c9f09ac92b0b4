// Restarting a VM (vm.md §11.3; V8): the old QEMU ended (killed again
// until it is gone: never two QEMUs on one disk, TAP and GPUs), the GPUs
// reset through VFIO, the same argv launched again, and the agent's return
// watched. A stop or kill during the restart takes over.
#include <algorithm>
#include <chrono>
#include <variant>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "vm/vfio.hpp"
#include "vm/vm_service.hpp"

namespace kr::vm {

namespace asio = boost::asio;

namespace {

// Restart: the host's vm-restart call has a 15 s timeout and the restart
// runs after the reply (V8); the powerdown wait is capped there.
constexpr std::chrono::seconds kMaxRestartGrace{20};
// §9 restart watchdog: how long and how often to look for the restarted
// instance's first heartbeat (it only logs).
constexpr int kRestartWatchSeconds = 180;
constexpr int kRestartWatchStep = 5;

}  // namespace

asio::awaitable<void> VmService::restart_in_background(VmPtr vm) {
  const int64_t id = vm->state.task_id;
  const pid_t old_pid = vm->pid;
  const auto grace = std::min<std::chrono::seconds>(kMaxRestartGrace, std::chrono::seconds(deps_.cfg.vm_powerdown_timeout_seconds));
  bool ended = co_await shutdown_qemu(vm->paths, old_pid, grace);
  // No second QEMU on the same disk, TAP and GPUs: while the old one lives
  // the VM stays as it is and the kill is repeated, until a stop or kill
  // takes over (issue 16 point 5).
  for (auto backoff = kEndRetryFirst; !ended && !vm->ending; backoff = std::min(backoff * 2, kEndRetryMax)) {
    if (!co_await stop_.sleep_for(backoff)) co_return;  // runner stopping: the next start re-adopts it
    if (vm->ending) break;
    ended = co_await kill_qemu(vm->paths, old_pid, std::chrono::seconds(2));
  }
  if (vm->ending) {
    // A stop or kill arrived during the restart: no relaunch.
    vm->restarting = false;
    co_await end_vm(vm, std::chrono::seconds(1));
    co_return;
  }
  std::string error;
  std::optional<LaunchedVm> launched;
  {
    const QemuSettings settings = settings_;
    const std::vector<std::string> argv = vm->argv;
    const std::vector<std::string> pci = vm->state.gpu_pci_addresses;
    auto work = [settings, id, argv, pci]() -> std::variant<LaunchedVm, std::string> {
      try {
        // Unbind + bind again: the passed GPUs get a function-level reset.
        Vfio vfio;
        for (const auto& addr : pci) vfio.unbind_group(addr);
        for (const auto& addr : pci) vfio.bind_group(addr);
        return relaunch(settings, id, argv);
      } catch (const std::exception& e) {
        return std::string(e.what());
      }
    };
    auto res = co_await run_blocking(work);
    if (auto* why = std::get_if<std::string>(&res))
      error = *why;
    else
      launched = std::get<LaunchedVm>(std::move(res));
  }
  if (vm->gone) co_return;
  vm->restarting = false;
  vm->pid = launched ? launched->pid : 0;
  if (launched) vm->argv = launched->argv;  // the share may have moved (vm_share.hpp)
  if (vm->ending) {
    // A stop or kill arrived while the new QEMU was being started: end it.
    co_await end_vm(vm, std::chrono::seconds(deps_.cfg.vm_powerdown_timeout_seconds));
    co_return;
  }
  if (launched) {
    vm->last_heartbeat.reset();  // the new instance's first heartbeat reports running
    ++vm->generation;
    vm->busy = false;
    spdlog::info("VM {} restarted: QEMU pid {}", id, vm->pid);
    asio::co_spawn(ex_, restart_watch(vm, vm->generation), asio::detached);
    co_return;
  }
  // Problems go to the host as status (V8): the VM is down; free it.
  spdlog::error("VM {}: restart failed: {}", id, error);
  vm->ending = failure_ending("VM restart failed: " + error);
  co_await record_ending(vm);
  co_await end_vm(vm, std::chrono::seconds(1));
}

asio::awaitable<void> VmService::restart_watch(VmPtr vm, std::uint64_t generation) {
  const int64_t id = vm->state.task_id;
  for (int waited = kRestartWatchStep; waited <= kRestartWatchSeconds; waited += kRestartWatchStep) {
    if (!co_await stop_.sleep_for(std::chrono::seconds(kRestartWatchStep))) co_return;
    if (vm->gone || vm->generation != generation) co_return;
    if (vm->last_heartbeat) {
      spdlog::info("VM {}: agent heartbeat within {} s of the restart", id, waited);
      co_return;
    }
  }
  spdlog::warn("VM {}: no agent heartbeat within {} s of the restart (the VM keeps running)", id,
               kRestartWatchSeconds);
}

}  // namespace kr::vm
