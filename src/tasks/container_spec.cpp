#include "tasks/container_spec.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "docker/names.hpp"
#include "monitor/numa.hpp"
#include "tasks/log_paths.hpp"
#include "tasks/shell.hpp"

namespace kr::tasks {
namespace {

using nlohmann::json;

constexpr int64_t kMiB = 1024 * 1024;
constexpr int64_t kNanoPerCpu = 1000000000;

// Upstream handed every one of these to execve; Python refuses a NUL byte
// there with ValueError("embedded null byte") inside the guarded block, so
// the task failed with "Task execution failed: embedded null byte".
void check_no_nul(std::string_view s) {
  if (s.find('\0') != std::string_view::npos) throw SpecError("embedded null byte");
}

// Go's strconv.ParseBool, which the docker CLI applies to mount options.
std::optional<bool> go_parse_bool(std::string_view v) {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"})
    if (v == t) return true;
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"})
    if (v == f) return false;
  return std::nullopt;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    auto pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

// Applies one option field of an ADDITIONAL_MOUNTS entry, with the docker
// CLI's (case-sensitive) keys and its error texts.
void apply_mount_option(json& m, std::string_view field, std::string_view spec) {
  auto fail = [&](const std::string& why) {
    throw SpecError("ADDITIONAL_MOUNTS entry '" + std::string(spec) + "': " + why);
  };
  auto bind_options = [&]() -> json& {
    if (!m.contains("BindOptions")) m["BindOptions"] = json::object();
    return m["BindOptions"];
  };
  auto eq = field.find('=');
  if (eq == std::string_view::npos) {
    if (field == "ro" || field == "readonly") {
      m["ReadOnly"] = true;
    } else if (field == "rw") {
      // Not a docker CLI field (it answered "invalid field 'rw' must be a
      // key=value pair"); accepted here as the obvious read-write intent.
      m["ReadOnly"] = false;
    } else if (field == "bind-nonrecursive") {
      bind_options()["NonRecursive"] = true;
    } else {
      fail("invalid field '" + std::string(field) + "' must be a key=value pair");
    }
    return;
  }
  const std::string_view key = field.substr(0, eq), val = field.substr(eq + 1);
  auto parse_bool = [&]() {
    auto b = go_parse_bool(val);
    if (!b) fail("invalid value for " + std::string(key) + ": " + std::string(val));
    return *b;
  };
  if (key == "ro" || key == "readonly") {
    m["ReadOnly"] = parse_bool();
  } else if (key == "bind-nonrecursive") {
    bind_options()["NonRecursive"] = parse_bool();
  } else if (key == "bind-propagation") {
    // The CLI lower-cased and passed it on; dockerd accepted only these.
    std::string p = lower(val);
    static const char* kModes[] = {"private", "rprivate", "shared", "rshared", "slave", "rslave"};
    if (std::none_of(std::begin(kModes), std::end(kModes), [&](const char* k) { return p == k; }))
      fail("invalid bind propagation mode '" + std::string(val) + "'");
    bind_options()["Propagation"] = p;
  } else if (key == "consistency") {
    m["Consistency"] = lower(val);
  } else if (key == "source" || key == "src") {
    m["Source"] = std::string(val);
  } else if (key == "target" || key == "dst" || key == "destination") {
    m["Target"] = std::string(val);
  } else if (key == "type") {
    if (lower(val) != "bind") fail("only bind mounts are supported (type=" + std::string(val) + ")");
  } else {
    fail("unexpected key '" + std::string(key) + "' in '" + std::string(field) + "'");
  }
}

}  // namespace

json bind_mount(std::string source, std::string target, bool read_only) {
  return json{{"Type", "bind"}, {"Source", std::move(source)}, {"Target", std::move(target)}, {"ReadOnly", read_only}};
}

std::string tunnel_url(std::string_view gateway, int port) {
  return "ws://" + std::string(gateway) + ":" + std::to_string(port);
}

json gpu_device_requests(const std::vector<int64_t>& gpu_ids) {
  // What the CLI made of --gpus "device=0,1".
  json ids = json::array();
  for (auto g : gpu_ids) ids.push_back(std::to_string(g));
  return json::array({json{{"Driver", ""},
                           {"Count", 0},
                           {"DeviceIDs", std::move(ids)},
                           {"Capabilities", json::array({json::array({"gpu"})})},
                           {"Options", json::object()}}});
}

std::string task_container_name(int64_t task_id) { return "kohakuriver-task-" + std::to_string(task_id); }

std::string env_image_reference(std::string_view env_name) {
  std::string ref = "kohakuriver/" + std::string(env_name) + ":base";
  if (!docker::is_valid_image_reference(ref))
    throw SpecError("Environment name '" + std::string(env_name) + "' does not form a valid image reference ('" +
                    ref + "').");
  return ref;
}

std::string task_image_reference(const TaskRequest& req) {
  if (req.registry_image && !req.registry_image->empty()) {
    // S-ARGV: upstream put this into `docker pull`/`docker run` argv, where a
    // value like "--help" became an option.
    if (!docker::is_valid_image_reference(*req.registry_image))
      throw SpecError("Invalid registry image reference '" + *req.registry_image + "'.");
    return *req.registry_image;
  }
  if (!req.container_name) throw SpecError("Neither container_name nor registry_image was given.");
  return env_image_reference(*req.container_name);
}

int64_t task_memory_limit(std::optional<int64_t> required_memory_bytes) {
  if (!required_memory_bytes || *required_memory_bytes <= 0) return 0;
  // bytes / 2^20 is exact in double apart from the int→double rounding that
  // Python's true division performs too; "%.0f" rounds half to even on the
  // binary value in both glibc and Python (1.5 MiB → 2, 2.5 MiB → 2).
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", static_cast<double>(*required_memory_bytes) / static_cast<double>(kMiB));
  const long long mib = std::strtoll(buf, nullptr, 10);
  if (mib > std::numeric_limits<int64_t>::max() / kMiB) throw SpecError("Memory limit is too large.");
  return mib * kMiB;
}

std::string format_cpuset(std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  cpus.erase(cpus.begin(), std::lower_bound(cpus.begin(), cpus.end(), 0));
  return monitor::format_cpu_list(cpus);  // kernel cpulist form, as Docker takes it
}

std::vector<std::string> build_task_env(const TaskRequest& req, const config::RunnerConfig& cfg,
                                        std::string_view container_gateway) {
  // Python dict semantics: assigning an existing key keeps its position.
  std::vector<std::pair<std::string, std::string>> env(req.env_vars.begin(), req.env_vars.end());
  auto set = [&](const std::string& key, std::string value) {
    auto it = std::find_if(env.begin(), env.end(), [&](const auto& kv) { return kv.first == key; });
    if (it != env.end())
      it->second = std::move(value);
    else
      env.emplace_back(key, std::move(value));
  };
  set("KOHAKURIVER_TASK_ID", std::to_string(req.task_id));
  // Runner-host paths, not the in-container mount points (upstream quirk).
  set("KOHAKURIVER_LOCAL_TEMP_DIR", cfg.local_temp_dir);
  set("KOHAKURIVER_SHARED_DIR", cfg.shared_dir);
  if (req.target_numa_node_id) set("KOHAKURIVER_TARGET_NUMA_NODE", std::to_string(*req.target_numa_node_id));
  // Upstream passed these as later -e flags; Docker let the later value win
  // at the earlier position, which is what `set` does.
  if (cfg.tunnel_enabled) {
    set("KOHAKURIVER_TUNNEL_URL",
        tunnel_url(container_gateway.empty() ? cfg.docker_network_gateway : container_gateway, cfg.runner_port));
    set("KOHAKURIVER_CONTAINER_ID", task_container_name(req.task_id));
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (auto& [k, v] : env) {
    check_no_nul(k);
    check_no_nul(v);
    // The docker CLI's ValidateEnv refused an empty name.
    if (k.empty()) throw SpecError("invalid environment variable: =" + v);
    out.push_back(k + "=" + v);
  }
  return out;
}

std::optional<json> parse_additional_mount(std::string_view spec, std::vector<std::string>* warnings) {
  check_no_nul(spec);
  auto parts = split(spec, ':');
  if (parts.size() < 2) {
    if (warnings) warnings->push_back("Invalid mount format: '" + std::string(spec) + "'. Skipping.");
    return std::nullopt;
  }
  json m = bind_mount(std::string(parts[0]), std::string(parts[1]), false);
  // Upstream joined the options with ',' into one CSV value, so a ',' inside
  // an option separated fields there too.
  for (std::size_t i = 2; i < parts.size(); ++i)
    for (auto field : split(parts[i], ',')) apply_mount_option(m, field, spec);
  if (m["Target"].get_ref<const std::string&>().empty())
    throw SpecError("ADDITIONAL_MOUNTS entry '" + std::string(spec) + "': target is required");
  if (m["Source"].get_ref<const std::string&>().empty())
    throw SpecError("ADDITIONAL_MOUNTS entry '" + std::string(spec) + "': source is required");
  return m;
}

json build_task_create_body(const TaskRequest& req, const config::RunnerConfig& cfg, const TaskContainerContext& ctx,
                            std::vector<std::string>* warnings) {
  const std::string image = ctx.image.empty() ? task_image_reference(req) : ctx.image;
  if (!docker::is_valid_image_reference(image)) throw SpecError("Invalid image reference '" + image + "'.");
  const std::string network = ctx.network.empty() ? cfg.docker_network_name : ctx.network;
  const bool tunnel = cfg.tunnel_enabled && ctx.tunnel_client_path && !ctx.tunnel_client_path->empty();

  check_no_nul(req.command);
  for (const auto& a : req.arguments) check_no_nul(a);
  check_no_nul(req.working_dir);
  // From the same normalised path the pipeline checked (issue 6, item 7).
  const std::string out = container_log_path(req.stdout_path, cfg.shared_dir);
  const std::string err = container_log_path(req.stderr_path, cfg.shared_dir);
  check_no_nul(out);
  check_no_nul(err);

  json body;
  body["Image"] = image;
  body["Cmd"] = json::array({"/bin/sh", "-c", build_task_script(req.command, req.arguments, out, err, tunnel)});
  body["Env"] = build_task_env(req, cfg, ctx.container_gateway);
  if (!req.working_dir.empty()) body["WorkingDir"] = req.working_dir;
  body["Labels"] = json{{"kohakuriver.task_id", std::to_string(req.task_id)},
                        {"kohakuriver.kind", "task"},
                        {"kohakuriver.node", ctx.hostname}};

  json host;
  host["NetworkMode"] = network;
  host["Privileged"] = cfg.tasks_privileged;
  if (!cfg.tasks_privileged) host["CapAdd"] = json::array({"SYS_NICE"});

  // Same sources as upstream's f-strings (plain concatenation; dockerd
  // cleans a doubled '/').
  json mounts = json::array();
  mounts.push_back(bind_mount(cfg.shared_dir + "/shared_data", "/shared", false));
  mounts.push_back(bind_mount(cfg.shared_dir + "/logs", std::string(kContainerLogsDir), false));
  mounts.push_back(bind_mount(cfg.local_temp_dir, "/local_temp", false));
  for (const auto& spec : cfg.additional_mounts)
    if (auto m = parse_additional_mount(spec, warnings)) mounts.push_back(std::move(*m));
  if (tunnel) mounts.push_back(bind_mount(*ctx.tunnel_client_path, std::string(kTunnelClientContainerPath), true));
  host["Mounts"] = std::move(mounts);

  if (req.required_cores > 0) {
    if (req.required_cores > std::numeric_limits<int64_t>::max() / kNanoPerCpu)
      throw SpecError("required_cores is too large.");
    host["NanoCpus"] = req.required_cores * kNanoPerCpu;  // --cpus N
  }
  if (int64_t mem = task_memory_limit(req.required_memory_bytes); mem > 0) host["Memory"] = mem;
  if (!req.required_gpus.empty()) host["DeviceRequests"] = gpu_device_requests(req.required_gpus);
  if (req.target_numa_node_id) {
    // decisions.md NUMA Fix: bind with the cpuset instead of numactl inside
    // the image. A node outside the topology runs unbound, as upstream did.
    auto node = ctx.numa_cpus.find(*req.target_numa_node_id);
    std::string cpus = node == ctx.numa_cpus.end() ? std::string() : format_cpuset(node->second);
    if (!cpus.empty()) {
      host["CpusetCpus"] = cpus;
      host["CpusetMems"] = std::to_string(*req.target_numa_node_id);
    } else if (warnings) {
      warnings->push_back("NUMA node " + std::to_string(*req.target_numa_node_id) +
                          " is not in the detected topology; the task runs without NUMA binding.");
    }
  }
  // The runner removes the container once the final status is durable.
  host["AutoRemove"] = false;
  body["HostConfig"] = std::move(host);

  json endpoint = json::object();
  if (req.reserved_ip && !req.reserved_ip->empty()) {
    if (!config::is_ipv4_literal(*req.reserved_ip))
      throw SpecError("Invalid reserved_ip '" + *req.reserved_ip + "': not an IPv4 address.");
    endpoint["IPAMConfig"] = json{{"IPv4Address", *req.reserved_ip}};
  }
  body["NetworkingConfig"] = json{{"EndpointsConfig", json{{network, std::move(endpoint)}}}};
  return body;
}

}  // namespace kr::tasks
