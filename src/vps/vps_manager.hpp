#pragma once
// Docker VPS sessions (execution.md §3–4; decisions D17–D19, D-PKGMGR,
// S-KEYINJ, S-SSHCFG, D-SSHPORT, R-STALEPORT, R-VPSKILL, R-VPSSTOP,
// R-SNAPSEC, "VPS sshd setup"): long-lived containers created, stopped,
// paused and snapshotted on the host's behalf. Same principles as command
// tasks: Engine API only, every report through the durable outbox, rows in
// the state store (kind "vps") so nothing is lost across restarts, and the
// task path's image provisioner (shared per-environment locks, timeouts).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "api/router.hpp"
#include "common/async_mutex.hpp"
#include "common/cancel_token.hpp"
#include "config/config.hpp"
#include "docker/docker_client.hpp"
#include "service/stop_signal.hpp"
#include "store/outbox.hpp"
#include "store/state_store.hpp"
#include "tasks/task_manager.hpp"
#include "vps/snapshot_tags.hpp"
#include "vps/vps_request.hpp"

namespace kr::vps {

// The QEMU VM backend (`vps_backend: "qemu"`, records named vm-<id>) plugs
// in here; without one, qemu creates fail with a clear message.
class VmBackend {
 public:
  virtual ~VmBackend() = default;
  // The whole create (reports, store row); `body` is the raw request.
  virtual boost::asio::awaitable<api::HttpResponse> create(VpsRequest rq, std::string body) = 0;
  virtual boost::asio::awaitable<api::HttpResponse> stop(int64_t task_id) = 0;
  // /api/kill|pause|resume for a VM id (D17: kill stops the VM); `action`
  // is "kill", "pause" or "resume".
  virtual boost::asio::awaitable<api::HttpResponse> control(int64_t task_id, std::string action) = 0;
  virtual bool owns(int64_t task_id) const = 0;
  // Listed in heartbeat running_tasks with the Docker VPS ids.
  virtual std::vector<int64_t> running_ids() const = 0;
  // Reports every running VM as `running` again (the host came back and may
  // have marked them `lost`).
  virtual void report_running_again() = 0;
};

struct VpsManagerDeps {
  const config::RunnerConfig& cfg;
  docker::DockerClient& docker;
  store::StateStore& store;
  store::Outbox& outbox;
  tasks::TaskManager& tasks;  // image provisioning and the network
  std::string hostname;
  std::optional<std::string> tunnel_client_path;
};

class VpsManager {
 public:
  VpsManager(boost::asio::any_io_executor ex, VpsManagerDeps deps);

  // Adds the /api/vps/* routes and wraps /api/kill|pause|resume so that
  // VPS ids are handled here and everything else reaches `tasks`. Call
  // before TaskManager::add_routes (the first matching route wins).
  void add_routes(api::Router& router);
  // Heartbeat running_tasks: from acceptance of the create until stop/kill.
  std::vector<int64_t> running_vps_ids() const;
  bool tracks(int64_t task_id) const { return vps_.count(task_id) > 0; }
  // Startup reconciliation (§4.4), then the Docker event watch that reports
  // a VPS's new SSH port after Docker restarted it (R-STALEPORT).
  void start();
  void stop();
  void set_vm_backend(VmBackend* backend) { vm_ = backend; }
  // After the host link came back (HostLink::OnReconnected): every live
  // Docker VPS (and, through the backend, every running VM) is reported
  // `running` again with its SSH port — upstream's host marks a node's work
  // `lost` after missed heartbeats and accepts VPS `lost` -> `running`;
  // upstream's runner re-reports only at its own start.
  void report_running_again();

  // Route bodies.
  boost::asio::awaitable<api::HttpResponse> create(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> stop_vps(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> pause_vps(api::HttpRequest& req, bool pause);
  boost::asio::awaitable<api::HttpResponse> control(api::HttpRequest& req, std::string action);
  boost::asio::awaitable<api::HttpResponse> list_snapshots_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> create_snapshot_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> latest_snapshot_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> delete_snapshot_route(api::HttpRequest& req);
  boost::asio::awaitable<api::HttpResponse> delete_all_snapshots_route(api::HttpRequest& req);

 private:
  struct Vps {
    int64_t id = 0;
    SshKeyMode mode = SshKeyMode::Disabled;
    int ssh_port = 0;        // last reported; 0 = none
    std::string started_at;  // naive local ISO
    bool ready = false;      // container created and running reported
    bool busy = false;       // create/stop/kill in progress: ignore its events
    bool killed = false;
  };
  using VpsPtr = std::shared_ptr<Vps>;

  // ---- create / stop (vps_manager.cpp)
  boost::asio::awaitable<api::HttpResponse> create_docker(VpsRequest rq, std::string body);
  // The failed report (final, row deleted) and the 500 answer.
  boost::asio::awaitable<api::HttpResponse> fail_create(VpsPtr v, std::string message,
                                                        std::optional<int64_t> exit_code = std::nullopt);
  boost::asio::awaitable<std::optional<int>> discover_port(std::string name, int attempts);
  boost::asio::awaitable<void> remove_until_gone(int64_t id);
  nlohmann::json report(int64_t id, const std::string& status, std::optional<int64_t> exit_code,
                        std::optional<std::string> message, std::optional<std::string> started_at, bool completed,
                        std::optional<int> ssh_port) const;
  boost::asio::awaitable<void> push(int64_t id, nlohmann::json r, bool is_final);
  boost::asio::awaitable<void> save_state(const Vps& v);

  // ---- snapshots (vps_snapshots.cpp)
  boost::asio::awaitable<std::vector<SnapshotInfo>> list_snapshots(int64_t id);
  // The new tag, or nullopt (logged).
  boost::asio::awaitable<std::optional<std::string>> create_snapshot(int64_t id, std::string message);
  boost::asio::awaitable<bool> remove_snapshot(std::string tag);

  // ---- recovery and events (vps_recovery.cpp)
  boost::asio::awaitable<void> recover();
  boost::asio::awaitable<void> watch_events();
  boost::asio::awaitable<void> refresh_port(int64_t id);
  boost::asio::awaitable<void> container_destroyed(int64_t id);
  boost::asio::awaitable<void> adopt(int64_t id, std::string started_at, bool insert_row);
  boost::asio::awaitable<void> rereport_running();

  boost::asio::any_io_executor ex_;
  VpsManagerDeps deps_;
  StopSignal stop_;
  CancelToken events_cancel_;
  AsyncMutex snapshot_mu_;
  std::map<int64_t, VpsPtr> vps_;
  VmBackend* vm_ = nullptr;
};

}  // namespace kr::vps
