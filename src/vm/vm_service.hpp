// QEMU VM VPS sessions (vm.md §3, §4, §9–§11, §14; decisions V5–V10, V23,
// V24): the one owner of this runner's VMs. Plugs into the Docker VPS
// manager as its VmBackend (create/stop/kill/pause/resume dispatch on
// `vps_backend == "qemu"` and on the vm-<id> records) and adds the VM-only
// routes. Same principles as the Docker VPS: every report goes through the
// durable outbox, each VM has a state-store row (kind "vm", extra_json =
// the vm-state.json object) so nothing is lost across runner restarts, and
// QEMU outlives the runner (V26) and is re-adopted by start().
//
// Blocking work (qemu-img, genisoimage, QEMU's launcher, netlink, iptables,
// sysfs) runs on the blocking pool; everything else on the I/O thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "host_link/host_client.hpp"
#include "monitor/gpu_remap.hpp"
#include "api/router.hpp"
#include "config/config.hpp"
#include "service/stop_signal.hpp"
#include "store/outbox.hpp"
#include "store/state_store.hpp"
#include "vm/qemu_instance.hpp"
#include "tunnel/frame.hpp"
#include "vm/ssh_proxy.hpp"
#include "vm/ssh_relay_guard.hpp"
#include "vm/vm_ending.hpp"
#include "vm/vm_network.hpp"
#include "vm/vm_state.hpp"
#include "vps/vps_manager.hpp"

namespace kr::vm {

// Where VMs go in overlay mode (vm.md §13.2, §7.5).
struct OverlayVmNetwork {
  std::string bridge;   // kohaku-overlay
  std::string gateway;  // the runner's overlay gateway (agent URL host)
  int prefix_len = 18;  // of the runner's overlay subnet
  int mtu = 1450;       // V18
};

struct VmServiceDeps {
  const config::RunnerConfig& cfg;
  store::StateStore& store;
  store::Outbox& outbox;
  // Prefix put before QEMU's argv (tests: none in production). See
  // QemuSettings::launch_prefix.
  std::vector<std::string> launch_prefix;
  // Overlay mode: returns the overlay while it is up (then VMs reserve their
  // address at the host and join kohaku-overlay), nullopt for NAT mode.
  std::function<std::optional<OverlayVmNetwork>()> overlay_network = {};
  host_link::HostClient* host = nullptr;  // overlay IP reservations
  std::string hostname = {};              // the `runner=` of a reservation
};

// A host reservation (tunnel-overlay.md §3.8). Pure parse of the reply;
// throws std::invalid_argument naming what is missing.
struct OverlayReservation {
  std::string ip;
  std::string token;
  int ttl_seconds = 1800;
};
OverlayReservation parse_overlay_reservation(const std::string& body);

// The body of POST /api/vps/{id}/vm-heartbeat (vm.md §8.3) as the runner
// validates it (pydantic: task_id int required; timestamp float|null; gpus
// list[object]|null; system object|null; status str = "healthy"; extra keys
// ignored). Pure. On error the alternative holds the 422 body.
struct VmHeartbeat {
  std::int64_t task_id = 0;
  std::optional<double> timestamp;
  nlohmann::json gpus = nlohmann::json::array();
  nlohmann::json system = nullptr;
  std::string status = "healthy";
};
std::variant<VmHeartbeat, nlohmann::json> parse_vm_heartbeat(std::string_view body);

// A VM task id as written in instance directory names and `vm-{id}` forward
// targets: decimal digits that fit int64 (host ids are 19-digit snowflakes).
std::optional<std::int64_t> parse_vm_task_id(std::string_view s);

// §14 GET /api/vps/vm-instances body for `instances_dir` (blocking: walks
// the directories). `tracked` says which ids have a store row. QEMU counts
// as running only when the pid file's process is this instance's QEMU (V11).
nlohmann::json vm_instances_listing(const std::filesystem::path& instances_dir, const std::filesystem::path& run_dir,
                                    const std::vector<std::int64_t>& tracked);

class VmService : public vps::VmBackend {
 public:
  VmService(boost::asio::any_io_executor ex, VmServiceDeps deps);

  // vm-restart, vm-status, vm-heartbeat, vm-phone-home, /api/vm/images,
  // /api/vps/vm-instances (GET, DELETE).
  void add_routes(api::Router& router);
  // Recovery (§10): re-adopts running QEMUs, reports the others stopped.
  void start();
  void stop();

  // ---- VmBackend
  boost::asio::awaitable<api::HttpResponse> create(vps::VpsRequest rq, std::string body) override;
  boost::asio::awaitable<api::HttpResponse> stop(int64_t task_id) override;
  boost::asio::awaitable<api::HttpResponse> control(int64_t task_id, std::string action) override;
  bool owns(int64_t task_id) const override { return vms_.count(task_id) > 0; }
  std::vector<int64_t> running_ids() const override;
  void report_running_again() override;  // vm_recovery.cpp

  // /ws/forward/vm-{id}/{port} (tunnel-overlay.md §2.3.3): the tunnel
  // hub's HubOptions::vm_forward.
  boost::asio::awaitable<void> forward(api::WebSocket& ws, std::string container_id, std::uint16_t port,
                                       tunnel::Proto proto);

  // The last heartbeat bodies of running VMs (gpu_info remap, vm.md §2).
  std::map<int64_t, nlohmann::json> last_agent_reports() const;
  // Per running VM: its passed-through PCI addresses and its agent's last
  // `gpus` list, for the heartbeat's gpu_info remap (vm.md §2).
  std::vector<monitor::VmGpuReport> gpu_reports() const;

 private:
  struct Vm {
    VmState state;
    VmPaths paths;
    pid_t pid = 0;
    std::vector<std::string> argv;
    double created_at = 0;               // unix seconds
    std::string started_at;              // naive local ISO of created_at
    bool ssh_ready = false;
    std::optional<double> last_heartbeat;  // runner receive time (V24)
    nlohmann::json last_report = nullptr;  // last heartbeat body
    bool launched = false;  // QEMU started (create finished)
    bool busy = false;      // create/stop/restart running
    bool restarting = false;  // restart_in_background owns the QEMU process
    // Accepted stop/kill/failure: the final report once QEMU is gone
    // (vm_stop.cpp). The VM stays tracked until then.
    std::optional<VmEnding> ending;
    bool ending_started = false;  // end_vm runs (once per VM)
    bool gone = false;      // stopped: late coroutines must not touch it
    std::uint64_t generation = 0;  // bumped per QEMU instance (watchdogs)
    bool gpu = false;
    std::unique_ptr<SshProxy> ssh_proxy;  // {ssh_port} -> {vm_ip}:22 (V25)
  };
  using VmPtr = std::shared_ptr<Vm>;

  // ---- vm_service.cpp
  boost::asio::awaitable<api::HttpResponse> fail_create(VmPtr vm, std::string message, int http_status);
  boost::asio::awaitable<void> report(int64_t id, nlohmann::json body, bool is_final);
  // A final status: recorded in the state store (whose outbox delivers it),
  // or, when the store cannot take it, sent directly.
  boost::asio::awaitable<void> report_final(int64_t id, nlohmann::json body);
  nlohmann::json status_body(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                             std::optional<std::string> message, std::optional<std::string> started_at,
                             bool completed) const;
  boost::asio::awaitable<void> persist(VmPtr vm);
  // The store row's extra_json: the state, plus the accepted ending.
  std::string store_extra(const Vm& vm) const;
  void release_network(const VmState& state);
  // ---- vm_stop.cpp (§11.2; issue 16: a VM is never forgotten while its
  // QEMU lives)
  // A host stop or kill: accepted and recorded, QEMU ended (cancelling a
  // restart in progress), the final report once QEMU is gone.
  boost::asio::awaitable<api::HttpResponse> end_by_host(int64_t id, VmEnding ending, std::string ok_message,
                                                        std::string fail_message);
  // Writes vm->ending into the store row; false when the store failed.
  boost::asio::awaitable<bool> record_ending(VmPtr vm);
  // Ends QEMU with `grace` for the powerdown. Gone: frees what the VM holds
  // and sends the final report (true). Still alive: it stays tracked and is
  // killed again in the background until it is gone (false).
  boost::asio::awaitable<bool> end_vm(VmPtr vm, std::chrono::milliseconds grace);
  boost::asio::awaitable<void> keep_ending(VmPtr vm);
  // QEMU is gone: untracked, free_vm_resources, final report.
  boost::asio::awaitable<void> finish_ending(VmPtr vm);
  // The one clean-up of a VM whose QEMU is gone (an ending, or a dead VM
  // found at startup): VFIO groups back to their host drivers, TAP deleted,
  // QMP socket, pid file and state file removed, the pool address or the
  // overlay reservation released. Call after the VM left vms_.
  boost::asio::awaitable<void> free_vm_resources(VmState st, VmPaths paths);
  boost::asio::awaitable<void> watchdog(VmPtr vm, std::uint64_t generation, int seconds);
  // ---- vm_restart.cpp (§11.3, V8)
  boost::asio::awaitable<void> restart_in_background(VmPtr vm);
  // §9: logs whether the restarted instance's agent came back.
  boost::asio::awaitable<void> restart_watch(VmPtr vm, std::uint64_t generation);
  boost::asio::awaitable<std::string> ensure_network();
  // ---- vm_overlay.cpp (§13.2, O5/V20)
  // POST /api/overlay/ip/reserve (15 s); nullopt with `error` set on failure.
  boost::asio::awaitable<std::optional<OverlayReservation>> reserve_overlay_ip(std::optional<std::string> ip,
                                                                              std::string& error, int& status);
  boost::asio::awaitable<void> release_overlay_ip(std::string token);
  // Re-reserves the VM's address when its reservation expires (the host
  // never marks VM reservations used), keeping the new token.
  boost::asio::awaitable<void> renew_overlay(VmPtr vm, int first_wait_seconds);
  boost::asio::awaitable<api::HttpResponse> qmp_pause(VmPtr vm, bool pause);
  // The agent's call is from this VM's address (V7).
  bool from_vm(const VmPtr& vm, const api::HttpRequest& req) const;
  void mark_running(VmPtr vm);

  // ---- vm_routes.cpp
  boost::asio::awaitable<api::HttpResponse> restart_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> status_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> heartbeat_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> phone_home_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> images_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> instances_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> delete_instance_route(api::HttpRequest& req);

  // ---- vm_recovery.cpp
  boost::asio::awaitable<void> recover();

  boost::asio::any_io_executor ex_;
  VmServiceDeps deps_;
  QemuSettings settings_;
  std::string settings_error_;  // VM_FIRMWARE/VM_QEMU_ACCEL problem: creates fail with it
  StopSignal stop_;
  std::optional<NatIpPool> pool_;
  bool network_ready_ = false;
  std::map<int64_t, VmPtr> vms_;
  // The bounds every VM's SSH relay shares (ssh_relay_guard.hpp).
  std::shared_ptr<SshRelayGuard> relay_guard_;
};

}  // namespace kr::vm
