#pragma once
// Prometheus metrics (GET /metrics, text format 0.0.4) built with
// prometheus-cpp's core library: a registry for what accumulates (finished
// tasks, Docker request durations) and, at scrape time, gauges built from
// the current state (tasks in flight, outbox, heartbeat, GPUs, process).
//
// The accumulating families are process-wide (like every Prometheus client
// library's default registry), so any part of the runner can count without
// being handed an object. Call them from the I/O thread (they are also
// thread-safe: prometheus-cpp metrics are atomic).
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::metrics {

// kohakuriver_runner_tasks_finished_total{kind,status}
void task_finished(std::string_view kind, std::string_view status);
// Exports these (kind, status) series at 0 before anything finished, so the
// family is present from the start and rate() sees the first increment.
void declare_finished_statuses(std::string_view kind, const std::vector<std::string>& statuses);
// kohakuriver_runner_docker_request_duration_seconds{operation}
void docker_request(std::string_view operation, double seconds);
// kohakuriver_runner_vm_ssh_relay_connections_total{outcome}: "accepted",
// "refused_total", "refused_per_source", "handshake_timeout".
void ssh_relay_event(std::string_view outcome);
// kohakuriver_runner_vm_ssh_relay_open_connections: +1 when a relayed
// connection is admitted, -1 when it ends.
void ssh_relay_open_changed(int delta);

// Docker Engine API call → bounded operation label: "container_create",
// "container_start", "image_pull", "network_inspect", "ping", ...
// `target` is unversioned ("/containers/x/json?all=1").
std::string docker_operation(std::string_view method, std::string_view target);

// The current state, gathered by the runner when scraped.
struct ScrapeState {
  // (kind, state) → count, e.g. ("task","running") → 3.
  std::map<std::pair<std::string, std::string>, std::int64_t> tasks;
  std::int64_t outbox_pending = 0;
  std::optional<double> last_heartbeat_success_unix;  // nullopt: none yet
  // The plain NVML gpu_info list (protocol.md §1.3.3): gpu_id, gpu_utilization
  // (percent), memory_used_mib, temperature (°C). Empty without GPUs.
  nlohmann::json gpu_info = nlohmann::json::array();
};

// Process figures from /proc (Linux), as the official client libraries
// report them.
struct ProcessStats {
  double resident_bytes = 0;
  double cpu_seconds = 0;
  double open_fds = 0;
  double start_time_unix = 0;
};
ProcessStats read_process_stats();

// The whole exposition text.
std::string render(const ScrapeState& state);

inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace kr::metrics
