// Ending a VM (vm.md §11.2; issue 16 point 5): stop, kill and runner-side
// failures. What is promised: a VM is never forgotten while its QEMU lives.
// The ending is accepted and written to the VM's store row first; QEMU is
// powered down, then SIGKILLed, and while the process still exists (a
// SIGKILL can stay pending: frozen cgroup, a hung device) the VM keeps its
// state file, IP, TAP and VFIO bindings and stays in running_tasks, and the
// kill is repeated in the background. Only once the process is gone are
// those freed and the one final report sent. A restart in progress is
// cancelled by a stop or kill (restart_in_background hands over).
#include <filesystem>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "vm/vfio.hpp"
#include "vm/vm_service.hpp"

namespace kr::vm {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;
using api::HttpResponse;

namespace {
json message_body(const std::string& m) { return json{{"message", m}}; }
}  // namespace

asio::awaitable<HttpResponse> VmService::stop(int64_t id) {
  const std::string id_text = std::to_string(id);
  return end_by_host(id, stop_ending(), "VPS " + id_text + " stopped.", "Failed to stop VPS " + id_text + ".");
}

asio::awaitable<HttpResponse> VmService::end_by_host(int64_t id, VmEnding ending, std::string ok_message,
                                                    std::string fail_message) {
  const std::string id_text = std::to_string(id);
  auto it = vms_.find(id);
  // V9: a VM we do not (or no longer) track is stopped: 200.
  if (it == vms_.end()) co_return HttpResponse::json(200, message_body(ok_message));
  VmPtr vm = it->second;
  if (vm->busy && !vm->launched) co_return HttpResponse::detail(409, "VPS " + id_text + " is still being created.");
  if (!ending_replaces(vm->ending, ending))  // a repeat: already being ended
    co_return HttpResponse::json(200, message_body(ok_message));
  vm->ending = std::move(ending);
  vm->busy = true;
  ++vm->generation;  // no watchdog acts on it any more
  const bool recorded = co_await record_ending(vm);
  // A restart owns the QEMU process and hands over at its next step; an
  // ending already under way (the watchdog's) now reports this one.
  bool gone = false;
  if (!vm->restarting && !vm->ending_started)
    gone = co_await end_vm(vm, std::chrono::seconds(deps_.cfg.vm_powerdown_timeout_seconds));
  if (!recorded && !gone) co_return HttpResponse::detail(500, fail_message);
  spdlog::info("VM {}: {} by request{}", id, vm->ending->status, gone ? "" : " (QEMU not gone yet)");
  co_return HttpResponse::json(200, message_body(ok_message));
}

asio::awaitable<bool> VmService::record_ending(VmPtr vm) {
  const int64_t id = vm->state.task_id;
  store::TaskChanges ch;
  ch.extra_json = store_extra(*vm);
  std::optional<std::string> error;
  try {
    if (co_await deps_.store.update_task(id, "ending", ch)) co_return true;
    error = "no store row";
  } catch (const std::exception& e) {
    error = e.what();
  }
  spdlog::error("VM {}: cannot record its {} durably: {}", id, vm->ending->status, *error);
  co_return false;
}

asio::awaitable<bool> VmService::end_vm(VmPtr vm, std::chrono::milliseconds grace) {
  if (vm->ending_started || vm->gone) co_return false;
  vm->ending_started = true;
  vm->busy = true;
  ++vm->generation;
  if (vm->ssh_proxy) vm->ssh_proxy->stop();  // no new sessions into a VM being ended
  const bool gone = vm->pid <= 0 || co_await shutdown_qemu(vm->paths, vm->pid, grace);
  if (gone) {
    co_await finish_ending(vm);
    co_return true;
  }
  spdlog::error("VM {}: QEMU pid {} is still there after SIGKILL; the VM stays tracked and is killed again until "
                "its process is gone",
                vm->state.task_id, vm->pid);
  asio::co_spawn(ex_, keep_ending(vm), asio::detached);
  co_return false;
}

asio::awaitable<void> VmService::keep_ending(VmPtr vm) {
  const int64_t id = vm->state.task_id;
  auto backoff = kEndRetryFirst;
  for (int attempt = 1;; ++attempt) {
    // Runner stopping: the ending is in the store; the next start finishes it.
    if (!co_await stop_.sleep_for(backoff)) co_return;
    if (vm->gone) co_return;
    if (co_await kill_qemu(vm->paths, vm->pid, std::chrono::seconds(2))) {
      spdlog::info("VM {}: QEMU pid {} is gone after {} more kill(s)", id, vm->pid, attempt);
      co_await finish_ending(vm);
      co_return;
    }
    if (attempt % 10 == 0) spdlog::warn("VM {}: QEMU pid {} still not gone ({} kills so far)", id, vm->pid, attempt);
    backoff = std::min(backoff * 2, kEndRetryMax);
  }
}

asio::awaitable<void> VmService::finish_ending(VmPtr vm) {
  const int64_t id = vm->state.task_id;
  if (vm->ssh_proxy) vm->ssh_proxy->stop();
  vm->gone = true;
  vms_.erase(id);
  co_await free_vm_resources(vm->state, vm->paths);
  const VmEnding ending = vm->ending.value_or(stop_ending());
  co_await report_final(id, status_body(id, ending.status, std::nullopt, ending.message, std::nullopt, true));
  spdlog::info("VM {} ended ({})", id, ending.status);
}

asio::awaitable<void> VmService::free_vm_resources(VmState st, VmPaths paths) {
  auto cleanup = [st, paths] {
    Vfio vfio;
    for (const auto& addr : st.gpu_pci_addresses)
      for (const auto& e : vfio.unbind_group(addr)) spdlog::warn("VM {}: unbind: {}", st.task_id, e);
    if (!st.tap_device.empty()) delete_tap(st.tap_device);
    std::error_code ec;
    fs::remove(paths.qmp_socket, ec);
    fs::remove(paths.pid_file, ec);  // QEMU is gone: its pid may be reused
    fs::remove(paths.state_json, ec);
  };
  co_await run_blocking(cleanup);
  release_network(st);
}

}  // namespace kr::vm
