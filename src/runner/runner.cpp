#include "runner/runner.hpp"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "access/access_setup.hpp"
#include "api/access_policy.hpp"
#include "api/http_server.hpp"
#include "common/owned_io_context.hpp"
#include "api/router.hpp"
#include "docker/docker_client.hpp"
#include "fs/fs_service.hpp"
#include "host_link/host_link.hpp"
#include "overlay/overlay_manager.hpp"
#include "metrics/metrics.hpp"
#include "runner/node_reporter.hpp"
#include "runner/sd_notify.hpp"
#include "runner/tunnel_lookup.hpp"
#include "runner/watchdog.hpp"
#include "store/outbox.hpp"
#include "store/state_store.hpp"
#include "tasks/task_manager.hpp"
#include "tunnel/container_addresses.hpp"
#include "tunnel/gateway_listener.hpp"
#include "tunnel/tunnel_hub.hpp"
#include "terminal/terminal_service.hpp"
#include "vm/vfio.hpp"
#include "vm/vm_service.hpp"
#include "vps/vps_manager.hpp"

namespace kr::runner {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

spdlog::level::level_enum to_spdlog(config::LogLevel l) {
  switch (l) {
    case config::LogLevel::Full: return spdlog::level::trace;
    case config::LogLevel::Debug: return spdlog::level::debug;
    case config::LogLevel::Info: return spdlog::level::info;
    case config::LogLevel::Warning: return spdlog::level::warn;
  }
  return spdlog::level::info;
}

void setup_logging(const config::RunnerConfig& cfg) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!cfg.runner_log_file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.runner_log_file));
    } catch (const spdlog::spdlog_ex& e) {
      std::fprintf(stderr, "WARNING: cannot open RUNNER_LOG_FILE %s: %s\n", cfg.runner_log_file.c_str(), e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("runner", sinks.begin(), sinks.end());
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e | %^%-7l%$ | %v");
  logger->set_level(to_spdlog(cfg.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// Best-effort directories of protocol.md §5.1 steps 5–6; none is fatal.
void prepare_directories(const config::RunnerConfig& cfg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(cfg.shared_dir, ec)) {
    spdlog::error("SHARED_DIR {} does not exist; tasks that use shared storage will fail", cfg.shared_dir);
  } else {
    fs::create_directories(fs::path(cfg.shared_dir) / "shared_data", ec);
    if (ec) spdlog::warn("Cannot create {}/shared_data: {}", cfg.shared_dir, ec.message());
  }
  fs::create_directories(cfg.local_temp_dir, ec);
  if (ec) spdlog::warn("Cannot create LOCAL_TEMP_DIR {}: {}", cfg.local_temp_dir, ec.message());
}

// "degraded" while the state store has failed within the last 10 minutes
// (full disk, read-only file system: new work cannot be recorded durably),
// with the error, so an operator sees it without reading logs.
json health_body(bool registered, std::size_t tasks, std::size_t reports_pending, const store::StoreHealth& sh,
                 uint64_t tasks_ended_by_storage) {
  const auto now = static_cast<int64_t>(std::time(nullptr));
  const bool degraded = sh.errors > 0 && now - sh.last_error_unix < 600;
  json body = {{"status", degraded ? "degraded" : "ok"},
               {"registered", registered},
               {"version", KR_VERSION},
               {"tasks", tasks},
               {"reports_pending", reports_pending}};
  if (sh.errors > 0) {
    json storage = {{"errors", sh.errors},
                    {"last_error", sh.last_error},
                    {"seconds_since_last_error", now - sh.last_error_unix},
                    {"tasks_ended", tasks_ended_by_storage}};
    body["state_store"] = storage;
  }
  return body;
}

}  // namespace

// vm.md §12.4 with V21: once, after the first successful registration, and
// only when VFIO GPUs were found. On its own thread: it waits for the VM
// capability probe and runs lspci/setpci (blocking, 5 s each).
static void start_acs_override(const config::RunnerConfig& cfg) {
  const auto options = monitor::vm_capability_options(cfg.vm_qemu_accel, cfg.vm_firmware);
  std::thread([options] {
    const auto& cap = monitor::vm_capability(options);
    if (!vm::acs_override_wanted(true, cap.vfio_gpus)) {
      spdlog::debug("ACS override skipped: no VFIO GPUs on this node");
      return;
    }
    const auto r = vm::apply_acs_override(vm::run_acs_tool);
    spdlog::info("ACS override: {} root port(s), {} PLX switch(es), {} PCI bridge(s), {} error(s)", r.root_ports,
                 r.plx_switches, r.pci_bridges, r.errors.size());
    for (const auto& e : r.errors) spdlog::warn("ACS override: {}", e);
    std::ifstream cmdline("/proc/cmdline");
    std::string line;
    std::getline(cmdline, line);
    if (line.find("pcie_acs_override") == std::string::npos)
      spdlog::info("ACS override: the kernel command line has no pcie_acs_override=, so the writes may not split "
                   "IOMMU groups");
  }).detach();
}

int run_runner(config::RunnerLaunch& launch) {
  const config::RunnerConfig& cfg = launch.config;
  setup_logging(cfg);
  spdlog::info("Starting KohakuRiver Runner {} (config: {})", KR_VERSION, launch.config_source);

  // Declared first so that it outlives every object bound to it; its pending
  // handlers are destroyed before those objects (see OwnedIoContext).
  OwnedIoContext io(1);
  prepare_directories(cfg);

  std::unique_ptr<store::StateStore> state;
  try {
    state = std::make_unique<store::StateStore>(cfg.state_dir);
  } catch (const std::exception& e) {
    spdlog::critical("Cannot open the runner state in {}: {}", cfg.state_dir, e.what());
    return 3;  // upstream: application startup failed
  }

  NodeReporterImpl reporter(io.get_executor(), cfg);
  host_link::HostLinkOptions link_opts;
  link_opts.host_address = cfg.host_address;
  link_opts.host_port = static_cast<uint16_t>(cfg.host_port);
  link_opts.bind_ip = cfg.runner_bind_ip;
  link_opts.runner_port = static_cast<uint16_t>(cfg.runner_port);
  link_opts.heartbeat_interval = std::chrono::seconds(cfg.heartbeat_interval_seconds);

  docker::ClientOptions docker_opts;
  docker_opts.socket_path = cfg.docker_socket;
  docker_opts.on_request = [](docker::Method m, const std::string& target, double seconds) {
    metrics::docker_request(metrics::docker_operation(docker::method_name(m), target), seconds);
  };
  docker::DockerClient docker(io.get_executor(), docker_opts);

  std::function<std::vector<int64_t>()> running_tasks;
  host_link::HostLink link(io.get_executor(), link_opts, reporter, [&] { return running_tasks(); });
  store::Outbox outbox(*state, io.get_executor(), [&link](const std::string& body) -> asio::awaitable<int> {
    auto res = co_await link.client().request("POST", "/api/update", body, std::chrono::seconds(15));
    co_return res.status;
  });

  overlay::OverlayManager overlay(io.get_executor(), cfg, docker, [&link] { return link.runner_url(); });
  bool acs_started = false;
  link.set_on_registered([&overlay, &cfg, &acs_started](const json& reply, bool) {
    overlay.on_registration(reply);
    if (!acs_started && cfg.vm_acs_override) {
      acs_started = true;
      start_acs_override(cfg);
    }
  });

  std::map<int64_t, std::vector<int>> numa_cpus;
  if (const auto& topo = reporter.numa_topology())
    for (const auto& node : *topo) numa_cpus[node.id] = node.cores;
  tasks::TaskManager task_manager(
      io.get_executor(),
      tasks::TaskManagerDeps{cfg, docker, *state, outbox, link.hostname(), numa_cpus, find_tunnel_client(cfg), &overlay});
  vps::VpsManager vps_manager(io.get_executor(), vps::VpsManagerDeps{cfg, docker, *state, outbox, task_manager,
                                                                     link.hostname(), find_tunnel_client(cfg)});
  vm::VmServiceDeps vm_deps{cfg, *state, outbox, {}};
  // Overlay mode for VMs while the VXLAN overlay is up (vm.md §13.2).
  vm_deps.overlay_network = [&overlay, &cfg]() -> std::optional<vm::OverlayVmNetwork> {
    auto alloc = overlay.ready_allocation();
    if (!alloc) return std::nullopt;
    return vm::OverlayVmNetwork{overlay::kBridgeName, overlay::format_ipv4(alloc->gateway), alloc->subnet.prefix,
                                cfg.overlay_mtu};
  };
  vm_deps.host = &link.client();
  vm_deps.hostname = link.hostname();
  vm::VmService vm_service(io.get_executor(), std::move(vm_deps));
  vps_manager.set_vm_backend(&vm_service);  // vps_backend "qemu" and vm-<id> records
  link.set_on_reconnected([&vps_manager] { vps_manager.report_running_again(); });
  reporter.set_vm_gpu_reports([&vm_service] { return vm_service.gpu_reports(); });
  running_tasks = [&] {
    auto ids = task_manager.running_task_ids();
    auto vps_ids = vps_manager.running_vps_ids();
    ids.insert(ids.end(), vps_ids.begin(), vps_ids.end());
    return ids;
  };

  api::Router router;
  router.add("GET", "/healthz", [&](api::HttpRequest&) -> asio::awaitable<api::HttpResponse> {
    json body = health_body(link.registered(), task_manager.running_task_ids().size(), outbox.pending(),
                            state->health(), task_manager.storage_failures());
    body["overlay"] = overlay.status();
    co_return api::HttpResponse::json(200, body);
  });
  vps_manager.add_routes(router);  // first: it wraps /api/kill|pause|resume for VPS ids
  vm_service.add_routes(router);
  metrics::declare_finished_statuses("task", {"completed", "failed", "killed", "killed_oom", "stopped"});
  metrics::declare_finished_statuses("vps", {"failed", "stopped"});
  router.add("GET", "/metrics", [&](api::HttpRequest&) -> asio::awaitable<api::HttpResponse> {
    metrics::ScrapeState st;
    for (const char* state : {"provisioning", "running", "killing"}) st.tasks[{"task", state}] = 0;
    for (const auto& [state, n] : task_manager.task_states()) st.tasks[{"task", state}] = n;
    st.tasks[{"vps", "running"}] = static_cast<int64_t>(vps_manager.running_vps_ids().size());
    st.outbox_pending = static_cast<int64_t>(outbox.pending());
    if (auto t = link.last_heartbeat_success())
      st.last_heartbeat_success_unix = std::chrono::duration<double>(t->time_since_epoch()).count();
    st.gpu_info = reporter.last_gpu_sample();
    co_return api::HttpResponse{200, metrics::render(st), metrics::kContentType, {}};
  });
  task_manager.add_routes(router);
  fs::FsService fs_service(docker, *state);
  fs_service.add_routes(router);
  terminal::TerminalService terminal_service(docker, *state);
  terminal_service.add_routes(router);
  // Port forwarding (tunnel-overlay.md §2): /ws/tunnel, /ws/forward.
  tunnel::HubOptions hub_options;
  hub_options.container_addresses = [&docker](std::string id) {
    return tunnel::container_addresses(docker, std::move(id));
  };
  hub_options.vm_forward = [&vm_service](api::WebSocket& ws, std::string id, std::uint16_t port,
                                         tunnel::Proto proto) { return vm_service.forward(ws, std::move(id), port, proto); };
  tunnel::TunnelHub tunnel_hub(io.get_executor(), std::move(hub_options));
  tunnel::add_tunnel_routes(router, tunnel_hub);
  std::optional<tunnel::GatewayListener> gateway_listener;  // T11
  if (cfg.tunnel_enabled && tunnel::needs_gateway_listener(cfg.runner_bind_ip, cfg.docker_network_gateway))
    gateway_listener.emplace(io, tunnel_hub, cfg.docker_network_gateway, static_cast<uint16_t>(cfg.runner_port));

  // Source-address policy: containers and VMs off the control API.
  api::AccessPolicy access(access::access_rules_from_config(cfg));
  for (const auto& line : access.describe()) spdlog::info("Source-address policy: {}", line);
  StopSignal access_stop(io.get_executor());

  api::HttpServerOptions server_opts;
  server_opts.privileged_sources = {cfg.host_address};  // the host keeps reserved connections
  server_opts.max_buffered_body_bytes = static_cast<std::uint64_t>(cfg.max_buffered_request_bytes);
  api::HttpServer server(io, router, server_opts);
  server.set_gate([&access](const api::HttpRequest& req) { return access.check(req); });
  std::optional<Watchdog> watchdog;
  if (auto interval = watchdog_interval_from_env()) watchdog.emplace(io.get_executor(), *interval);
  // Installed before listening and before READY=1, so a SIGTERM that
  // arrives during start-up is handled (not the default "terminate").
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("Received signal {}; shutting down (containers keep running)", sig);
    notify_systemd("STOPPING=1");
    server.stop();
    tunnel_hub.stop();
    if (gateway_listener) gateway_listener->stop();
    access_stop.stop();
    if (watchdog) watchdog->stop();
    link.stop();
    task_manager.stop();
    vps_manager.stop();
    vm_service.stop();
    overlay.stop();
    docker.cancel_all();
    reporter.stop();
    // D7: give pending status reports a last chance (at most 5 s).
    // (A completion handler, not a coroutine lambda: a coroutine lambda's
    // captures die with the lambda object before the coroutine ends.)
    asio::co_spawn(io, outbox.flush(std::chrono::seconds(5)), [&](std::exception_ptr, bool empty) {
      if (!empty)
        spdlog::warn("{} status report(s) not yet delivered; they are kept and sent after the next start",
                     outbox.pending());
      outbox.stop();
      io.stop();
    });
  });

  try {
    server.listen(cfg.runner_bind_ip, static_cast<uint16_t>(cfg.runner_port));
  } catch (const std::exception& e) {
    spdlog::critical("Cannot listen on {}:{}: {}", cfg.runner_bind_ip, cfg.runner_port, e.what());
    return 1;
  }
  spdlog::info("Listening on http://{}:{}", cfg.runner_bind_ip, server.port());
  if (gateway_listener) gateway_listener->start();

  reporter.start();
  outbox.start();
  task_manager.start();
  vps_manager.start();
  vm_service.start();
  link.start();
  asio::co_spawn(io, access::follow_docker_networks(docker, access, cfg, access_stop), asio::detached);
  notify_systemd("READY=1");
  if (watchdog) watchdog->start();

  io.run();
  io.destroy_pending_handlers();
  spdlog::info("Runner stopped");
  // No spdlog::shutdown(): the one-off VM capability probe thread may still
  // be logging; the logger lives until static destruction.
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace kr::runner
