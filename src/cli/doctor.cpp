#include "cli/doctor.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "access/access_setup.hpp"
#include "api/access_policy.hpp"
#include "cli/doctor_migration.hpp"
#include "cli/init_commands.hpp"
#include "docker/docker_client.hpp"
#include "monitor/nvml.hpp"
#include "monitor/vm_capability.hpp"

namespace kr::cli {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

CheckResult ok(std::string name, std::string result) { return {CheckStatus::Ok, std::move(name), std::move(result), {}}; }
CheckResult info(std::string name, std::string result, std::string fix = {}) {
  return {CheckStatus::Info, std::move(name), std::move(result), std::move(fix)};
}
CheckResult warn(std::string name, std::string result, std::string fix) {
  return {CheckStatus::Warn, std::move(name), std::move(result), std::move(fix)};
}
CheckResult fail(std::string name, std::string result, std::string fix) {
  return {CheckStatus::Fail, std::move(name), std::move(result), std::move(fix)};
}

// A TCP connect with a deadline; empty on success, else the reason.
std::string tcp_connect(const std::string& host, int port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    return std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (rc == 0) {
        why = "no answer within " + std::to_string(timeout.count() / 1000) + " s";
        rc = -1;
      } else if (rc > 0) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        rc = soerr == 0 ? 0 : -1;
        if (soerr) why = std::strerror(soerr);
      }
    } else if (rc != 0) {
      why = std::strerror(errno);
    }
    ::close(fd);
    if (rc == 0) {
      freeaddrinfo(res);
      return {};
    }
  }
  freeaddrinfo(res);
  return why;
}

CheckResult check_config(const RunnerOptions& options, RunnerLaunch& launch) {
  std::ostringstream out, err;
  if (prepare_launch(options, launch, out, err) != 0) {
    std::string msg = err.str();
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    launch = RunnerLaunch{};  // go on with the defaults for the other checks
    return fail("config", msg, "correct the file (every setting and its default: kohakuriver init config --runner)");
  }
  std::string where = launch.config_source;
  if (!launch.warnings.empty())
    return warn("config", where + " parses, with " + std::to_string(launch.warnings.size()) +
                              " warning(s): " + launch.warnings.front(),
                "remove or correct the named lines");
  if (where == "built-in defaults")
    return warn("config", "no configuration file; built-in defaults (HOST_ADDRESS 127.0.0.1)",
                "kohakuriver init config --runner, then set HOST_ADDRESS and SHARED_DIR");
  return ok("config", where + " parses");
}

struct DockerFindings {
  std::string error;
  json version;
  std::string negotiated;
  std::map<std::string, std::optional<json>> networks;
};

// A plain coroutine function (not a capturing coroutine lambda: see
// docs/decisions.md on GCC 12); its arguments outlive io.run().
asio::awaitable<void> probe_docker(docker::DockerClient& client, const std::vector<std::string>& names,
                                   DockerFindings& f) {
  try {
    auto ping = co_await client.ping();
    f.negotiated = ping.value("negotiated_version", "");
    f.version = co_await client.version();
    for (const auto& n : names) f.networks[n] = co_await client.inspect_network(n);
  } catch (const std::exception& e) {
    f.error = e.what();
  }
}

DockerFindings query_docker(const config::RunnerConfig& cfg) {
  DockerFindings f;
  asio::io_context io(1);
  docker::ClientOptions opts;
  opts.socket_path = cfg.docker_socket;
  opts.default_deadline = std::chrono::seconds(5);
  docker::DockerClient client(io.get_executor(), opts);
  std::vector<std::string> names = {cfg.docker_network_name};
  if (cfg.overlay_enabled) names.push_back(cfg.overlay_network_name);
  asio::co_spawn(io, probe_docker(client, names, f), asio::detached);
  io.run();
  return f;
}

std::vector<CheckResult> check_docker(const config::RunnerConfig& cfg) {
  std::vector<CheckResult> out;
  DockerFindings f = query_docker(cfg);
  if (!f.error.empty()) {
    out.push_back(fail("docker", "cannot use the Engine API at " + cfg.docker_socket + ": " + f.error,
                       "start dockerd (systemctl start docker), run as root or a docker group member, "
                       "or set DOCKER_SOCKET"));
    return out;
  }
  out.push_back(ok("docker", "Docker Engine " + f.version.value("Version", std::string("?")) + ", API " +
                                 f.version.value("ApiVersion", std::string("?")) + " (using " + f.negotiated +
                                 ") at " + cfg.docker_socket));
  for (const auto& [name, inspect] : f.networks) {
    if (!inspect) {
      out.push_back(info("network", name + " does not exist yet; the runner creates it on start"));
      continue;
    }
    auto nets = access::ipam_networks(*inspect, name);
    std::string subnets;
    for (const auto& n : nets) subnets += (subnets.empty() ? "" : ", ") + n.network.to_string();
    if (name == cfg.docker_network_name) {
      auto want = net::parse_network(cfg.docker_network_subnet);
      bool match = want && std::any_of(nets.begin(), nets.end(), [&](const auto& n) { return n.network == *want; });
      if (!match) {
        out.push_back(warn("network", name + " exists with subnet " + (subnets.empty() ? "none" : subnets) +
                                          ", not DOCKER_NETWORK_SUBNET " + cfg.docker_network_subnet,
                           "set DOCKER_NETWORK_SUBNET to the network's subnet, or remove the network "
                           "(docker network rm " + name + ") while no container uses it"));
        continue;
      }
    }
    out.push_back(ok("network", name + " exists (" + subnets + ")"));
  }
  return out;
}

}  // namespace

std::set<std::string> parse_cgroup_controllers(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string name; in >> name;) out.insert(name);
  return out;
}

CheckResult cgroup_controllers_result(const std::string& label, const std::set<std::string>& available,
                                      const std::set<std::string>& needed) {
  std::string missing;
  for (const auto& c : needed)
    if (!available.count(c)) missing += (missing.empty() ? "" : ", ") + c;
  if (missing.empty()) return ok("cgroup", label);
  return warn("cgroup", label + "; controller(s) missing: " + missing,
              "enable them (kernel command line, e.g. cgroup_enable=memory): without cpu/memory Docker drops "
              "the tasks' limits, without cpuset NUMA-bound tasks fail, without freezer (v1) pause fails");
}

CheckResult check_cgroup(const std::string& root) {
  struct statfs s{};
  if (::statfs(root.c_str(), &s) != 0)
    return warn("cgroup", "cannot inspect " + root + ": " + std::strerror(errno), "mount cgroupfs (Docker needs it)");
  if (static_cast<unsigned long>(s.f_type) == CGROUP2_SUPER_MAGIC) {
    // v2: pause uses cgroup.freeze (no controller); the rest are controllers.
    std::ifstream f(root + "/cgroup.controllers");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return cgroup_controllers_result("cgroup v2 (unified hierarchy)", parse_cgroup_controllers(text),
                                     {"cpu", "cpuset", "memory"});
  }
  if (static_cast<unsigned long>(s.f_type) == TMPFS_MAGIC) {
    struct statfs u{};
    bool hybrid = ::statfs((root + "/unified").c_str(), &u) == 0 &&
                  static_cast<unsigned long>(u.f_type) == CGROUP2_SUPER_MAGIC;
    const std::set<std::string> needed{"cpu", "cpuset", "freezer", "memory"};
    std::set<std::string> mounted;
    std::error_code ec;
    for (const auto& c : needed)
      if (fs::is_directory(fs::path(root) / c, ec)) mounted.insert(c);
    return cgroup_controllers_result(hybrid ? "cgroup v1 (hybrid)" : "cgroup v1", mounted, needed);
  }
  return warn("cgroup", root + " is not a cgroup mount", "boot with a systemd/cgroup setup Docker supports");
}

CheckResult check_state_dir(const std::string& dir) {
  std::error_code ec;
  fs::path p(dir);
  if (!fs::exists(p, ec)) {
    fs::path parent = p.parent_path();
    while (!parent.empty() && !fs::exists(parent, ec)) parent = parent.parent_path();
    if (!parent.empty() && ::access(parent.c_str(), W_OK) == 0)
      return ok("state-dir", dir + " does not exist yet; the runner creates it");
    return fail("state-dir", dir + " does not exist and cannot be created here",
                "create it (mkdir -p " + dir + ") or set STATE_DIR; run the runner as root");
  }
  struct stat st{};
  if (::stat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fail("state-dir", dir + " is not a directory", "remove it or set STATE_DIR to a directory");
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    return fail("state-dir", dir + " is not writable by this user", "run as root, or chown it to the runner's user");
  if (st.st_mode & S_IWOTH)
    return fail("state-dir", dir + " is writable by every user (mode " + [&] {
      char b[8];
      std::snprintf(b, sizeof b, "%04o", st.st_mode & 07777);
      return std::string(b);
    }() + ")", "chmod o-w " + dir + " (it holds the durable task state)");
  return ok("state-dir", dir + " is a writable directory");
}

std::string format_check(const CheckResult& r) {
  const char* tag = r.status == CheckStatus::Ok     ? "[ OK ]"
                    : r.status == CheckStatus::Info ? "[INFO]"
                    : r.status == CheckStatus::Warn ? "[WARN]"
                                                    : "[FAIL]";
  std::string line = std::string(tag) + " " + r.name;
  if (r.name.size() < 10) line.append(10 - r.name.size(), ' ');
  line += " " + r.result;
  if (!r.fix.empty()) line += " | fix: " + r.fix;
  return line;
}

namespace {

CheckResult check_host(const config::RunnerConfig& cfg) {
  std::string why = tcp_connect(cfg.host_address, cfg.host_port, std::chrono::seconds(3));
  if (why.empty()) return ok("host", "host " + cfg.host_url() + " accepts connections");
  return fail("host", "cannot connect to the host at " + cfg.host_url() + ": " + why,
              "check HOST_ADDRESS/HOST_PORT, that the host runs, and firewalls between them");
}

CheckResult check_port(const config::RunnerConfig& cfg) {
  const bool v6 = cfg.runner_bind_ip == "::";
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(cfg.runner_port));
    a6->sin6_addr = in6addr_any;
    len = sizeof *a6;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(cfg.runner_port));
    inet_pton(AF_INET, cfg.runner_bind_ip.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
  int e = errno;
  ::close(fd);
  const std::string where = cfg.runner_bind_ip + ":" + std::to_string(cfg.runner_port);
  if (rc == 0) return ok("port", where + " is free");
  if (e == EADDRINUSE) {
    // Our own runner already running there is fine.
    std::string probe = cfg.runner_bind_ip == "0.0.0.0" || v6 ? "127.0.0.1" : cfg.runner_bind_ip;
    if (tcp_connect(probe, cfg.runner_port, std::chrono::seconds(1)).empty())
      return warn("port", where + " is in use (a runner already running there?)",
                  "stop the other program, or set RUNNER_PORT; ignore if it is this node's runner service");
  }
  return fail("port", "cannot listen on " + where + ": " + std::strerror(e),
              "set RUNNER_BIND_IP to an address of this machine and RUNNER_PORT to a free port");
}

CheckResult check_gpus() {
  auto api = monitor::load_nvml_library();
  if (!api) return info("gpu", "NVML not found: no GPUs reported", "install the NVIDIA driver if this node has GPUs");
  if (auto rc = api->init(); rc != monitor::nvml::kSuccess)
    return warn("gpu", "NVML present but failed to initialise: " + api->error_string(rc),
                "check the NVIDIA driver (nvidia-smi)");
  unsigned count = 0;
  api->device_get_count(&count);
  api->shutdown();
  return ok("gpu", "NVML: " + std::to_string(count) + " GPU(s)");
}

std::vector<CheckResult> check_vm(const config::RunnerConfig& cfg) {
  std::vector<CheckResult> out;
  const monitor::VmCapability cap =
      monitor::check_vm_capability(monitor::vm_capability_options(cfg.vm_qemu_accel, cfg.vm_firmware));
  if (cap.vm_capable) {
    out.push_back(ok("vm", cfg.vm_qemu_accel == "tcg"
                               ? "QEMU available: this node can run VMs under software emulation (VM_QEMU_ACCEL=tcg)"
                               : "KVM and QEMU available: this node can run VMs"));
  } else {
    std::string why;
    for (const auto& e : cap.errors) why += (why.empty() ? "" : "; ") + e;
    out.push_back(info("vm", "VMs not available: " + why, "only needed for QEMU VPS: install qemu-system-x86 and "
                                                          "enable KVM (VT-x/AMD-V in firmware, kvm module)"));
  }
  bool ovmf = false;
  for (const char* p : {"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_CODE_4M.fd",
                        "/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"})
    if (::access(p, R_OK) == 0) ovmf = true;
  out.push_back(ovmf ? ok("ovmf", "UEFI firmware (OVMF) found")
                     : info("ovmf", "no OVMF firmware found", "only needed for UEFI VMs: apt install ovmf"));
  if (cap.vfio_gpus.empty()) {
    std::string why;
    for (const auto& w : cap.warnings) why += (why.empty() ? "" : "; ") + w;
    out.push_back(info("vfio", why.empty() ? "no GPUs for VFIO passthrough" : why,
                       "only needed for GPU VMs: enable the IOMMU and load vfio-pci"));
  } else {
    out.push_back(ok("vfio", std::to_string(cap.vfio_gpus.size()) + " GPU(s) usable for VFIO passthrough"));
  }
  return out;
}

std::vector<CheckResult> check_policy(const config::RunnerConfig& cfg) {
  std::vector<CheckResult> out;
  try {
    api::AccessPolicy policy(access::access_rules_from_config(cfg));
    for (const auto& line : policy.describe()) out.push_back(info("policy", line));
    if (auto host = net::parse_ip(cfg.host_address)) {
      for (const auto& w : policy.rules().workload_networks)
        if (w.network.contains(*host))
          out.push_back(fail("policy", "HOST_ADDRESS " + cfg.host_address + " lies in the container/VM network " +
                                           w.network.to_string() + " (" + w.source + ")",
                             "change " + w.source + " so that it does not overlap the host's network"));
    }
  } catch (const std::exception& e) {
    out.push_back(fail("policy", e.what(), "correct the list in the configuration"));
  }
  return out;
}

}  // namespace

int run_doctor(const RunnerOptions& options, std::ostream& out, std::ostream& err) {
  RunnerLaunch launch;
  std::vector<CheckResult> results;
  auto emit = [&](CheckResult r) {
    out << format_check(r) << std::endl;  // flushed: slow checks follow
    results.push_back(std::move(r));
  };
  emit(check_config(options, launch));
  const config::RunnerConfig& cfg = launch.config;
  for (auto& r : check_docker(cfg)) emit(std::move(r));
  emit(check_cgroup("/sys/fs/cgroup"));
  emit(check_host(cfg));
  emit(check_state_dir(cfg.state_dir));
  // Switching from the Python runner (docs/migration.md).
  emit(check_python_runner_process("/proc"));
  emit(check_python_unit(systemd_unit_dir()));
  emit(check_python_store(cfg.local_temp_dir, cfg.state_dir));
  {
    std::error_code ec;
    if (fs::is_directory(cfg.shared_dir, ec))
      emit(ok("shared-dir", cfg.shared_dir + " exists"));
    else
      emit(warn("shared-dir", cfg.shared_dir + " does not exist",
                "mount the cluster share there, or set SHARED_DIR (tasks using shared storage fail)"));
  }
  emit(check_port(cfg));
  emit(check_gpus());
  for (auto& r : check_vm(cfg)) emit(std::move(r));
  for (auto& r : check_policy(cfg)) emit(std::move(r));

  int failed = 0;
  for (const auto& r : results) failed += r.status == CheckStatus::Fail;
  if (failed) {
    out << failed << " required check(s) failed\n";
    return 1;
  }
  out << "All required checks passed\n";
  return 0;
}

}  // namespace kr::cli
