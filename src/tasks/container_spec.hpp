#pragma once
// The Docker Engine API `POST /containers/create` body of a command task.
// Its observable result equals what upstream's `docker run` argv produced
// (execution.md §1.4–1.6, protocol.md A.1) with this project's rulings:
// labels, no auto-remove, NUMA binding through the cpuset instead of numactl,
// S-ARGV validation. Pure functions, no I/O.
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "tasks/task_request.hpp"

namespace kr::tasks {

// A request or configuration value that cannot become a container (invalid
// image reference, IP, mount option, NUL byte …). what() is a complete
// sentence-like reason; the caller reports it as
// "Task execution failed: <what()>" (R-SILENT).
class SpecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "kohakuriver-task-<id>"
std::string task_container_name(int64_t task_id);

// "kohakuriver/<env_name>:base" with the name verbatim (not lower-cased);
// throws SpecError when that is not a valid Docker reference.
std::string env_image_reference(std::string_view env_name);

// The image a task runs: registry_image when non-empty, else the environment
// image of container_name. Throws SpecError when it is not a valid reference
// (S-ARGV) or when neither is given.
std::string task_image_reference(const TaskRequest& req);

// What the caller knows about the node when the container is created.
struct TaskContainerContext {
  std::string hostname;           // label kohakuriver.node
  std::string network;            // NetworkMode; "" → DOCKER_NETWORK_NAME
  std::string container_gateway;  // tunnel URL host; "" → DOCKER_NETWORK_GATEWAY
  // Host path of the tunnel client binary when one was found (§1.8); the
  // mount and the start-up wrapper are added only then (and only when
  // TUNNEL_ENABLED). The tunnel variables depend on TUNNEL_ENABLED alone.
  std::optional<std::string> tunnel_client_path;
  // NUMA node id → its CPUs (sysfs); empty when unknown.
  std::map<int64_t, std::vector<int>> numa_cpus;
  std::string image;  // "" → task_image_reference(req)
};

// Memory limit in bytes for --memory "{M}m": M = printf("%.0f",
// bytes / 2^20) (half-to-even on the binary value, as Python's format),
// times 2^20. 0 = no limit (null, <= 0, or under half a MiB).
int64_t task_memory_limit(std::optional<int64_t> required_memory_bytes);

// Kernel cpulist text ("0-3,8,10-11") of a CPU set, ascending, duplicates
// and negatives dropped. Docker's CpusetCpus accepts this form.
std::string format_cpuset(std::vector<int> cpus);

// The task's environment in §1.6 order as "KEY=VALUE": the user's variables
// in request order, then KOHAKURIVER_TASK_ID, _LOCAL_TEMP_DIR, _SHARED_DIR,
// _TARGET_NUMA_NODE (when requested) and, when TUNNEL_ENABLED,
// KOHAKURIVER_TUNNEL_URL / _CONTAINER_ID. A user key equal to a runner key
// keeps the user's position and takes the runner's value (what Docker made
// of upstream's duplicate -e flags); no key appears twice.
std::vector<std::string> build_task_env(const TaskRequest& req, const config::RunnerConfig& cfg,
                                        std::string_view container_gateway);

// One ADDITIONAL_MOUNTS entry as an Engine API mount object, or nullopt
// (with a warning) when it has fewer than two ':'-separated parts — upstream
// skipped those. Parts: source, target, then options (each may itself hold
// ','-separated fields, as they reached the CLI's CSV parser): ro / readonly
// [=bool], rw (ReadOnly false), bind-propagation=X, bind-nonrecursive[=bool],
// consistency=X, source|src=, target|dst|destination=, type=bind. Anything
// else throws SpecError, as the docker CLI refused it.
std::optional<nlohmann::json> parse_additional_mount(std::string_view spec, std::vector<std::string>* warnings);

// Pieces shared with the VPS container spec (src/vps).
// An Engine API bind mount object.
nlohmann::json bind_mount(std::string source, std::string target, bool read_only);
// KOHAKURIVER_TUNNEL_URL: "ws://<gateway>:<runner port>".
std::string tunnel_url(std::string_view gateway, int port);
// HostConfig.DeviceRequests for upstream's --gpus "device=<ids>".
nlohmann::json gpu_device_requests(const std::vector<int64_t>& gpu_ids);

// The create body (the container name goes in the `name` query parameter,
// see task_container_name). Throws SpecError for invalid input. Non-fatal
// findings (skipped mount entries, a NUMA node missing from the topology:
// the task then runs unbound but still gets KOHAKURIVER_TARGET_NUMA_NODE)
// are appended to `warnings` when given.
nlohmann::json build_task_create_body(const TaskRequest& req, const config::RunnerConfig& cfg,
                                      const TaskContainerContext& ctx,
                                      std::vector<std::string>* warnings = nullptr);

}  // namespace kr::tasks
