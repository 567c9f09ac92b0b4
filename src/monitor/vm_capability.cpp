#include "monitor/vm_capability.hpp"

#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <spdlog/spdlog.h>
#include <system_error>
#include <utility>

#include "monitor/sysfs.hpp"

extern char** environ;

namespace kr::monitor {

namespace fs = std::filesystem;
using detail::under;

namespace {

// ---- tools and files --------------------------------------------------------

std::optional<fs::path> which(std::string_view name, const std::string& path_env) {
  std::string_view rest = path_env;
  while (!rest.empty()) {
    auto colon = rest.find(':');
    std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (dir.empty()) continue;
    fs::path candidate = fs::path(dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// Runs `exe args...` with stdin/stderr on /dev/null and returns its stdout if
// it exits 0 within `timeout`; kills it otherwise. posix_spawn, not fork, as
// the runner is multi-threaded.
std::optional<std::string> run_capture(const fs::path& exe, const std::vector<std::string>& args,
                                       std::chrono::milliseconds timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  ::posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> argv_s{exe.string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return std::nullopt;
  }

  std::string out;
  bool timed_out = false;
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      timed_out = pr == 0;
      break;
    }
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() < 64 * 1024) out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

// ---- PCI / IOMMU -------------------------------------------------------------

std::optional<std::string> pci_attr(const fs::path& root, const std::string& addr, const char* attr) {
  return detail::read_trimmed(under(root, "/sys/bus/pci/devices") / addr / attr);
}

std::string strip_0x(std::string s) {
  for (auto pos = s.find("0x"); pos != std::string::npos; pos = s.find("0x")) s.erase(pos, 2);
  return s;
}

std::string slot_of(const std::string& addr) { return addr.substr(0, addr.rfind('.')); }

std::optional<int> iommu_group_of(const fs::path& root, const std::string& addr) {
  const fs::path dev = under(root, "/sys/bus/pci/devices") / addr;
  std::error_code ec;
  // A real link must lead somewhere (upstream: Path.exists()).
  if (fs::is_symlink(dev / "iommu_group", ec) && !fs::exists(dev / "iommu_group", ec)) return std::nullopt;
  auto target = detail::read_link(dev, "iommu_group");
  if (!target) return std::nullopt;
  auto group = detail::parse_int(target->filename().string());
  if (!group || *group < 0) return std::nullopt;
  return static_cast<int>(*group);
}

std::string gpu_name(const VmCapabilityOptions& opt, const std::string& path_env, const std::string& addr) {
  if (opt.use_lspci && opt.root == fs::path("/")) {
    if (auto lspci = which("lspci", path_env)) {
      if (auto out = run_capture(*lspci, {"-s", addr, "-mm"}, std::chrono::seconds(5))) {
        // `-mm`: slot "class" "vendor" "device" ...; the device is the 3rd quoted field.
        std::string_view text = detail::trim(*out);
        std::vector<std::string_view> parts;
        for (std::size_t start = 0;;) {
          auto q = text.find('"', start);
          parts.push_back(text.substr(start, q == std::string_view::npos ? q : q - start));
          if (q == std::string_view::npos) break;
          start = q + 1;
        }
        if (!text.empty() && parts.size() >= 6) return std::string(parts[5]);
      }
    }
  }
  if (auto label = pci_attr(opt.root, addr, "label")) return *label;
  return "GPU at " + addr;
}

// ---- host checks -------------------------------------------------------------

bool cpu_has_virtualization(const fs::path& root, std::string& error) {
  auto cpuinfo = detail::read_small_file(under(root, "/proc/cpuinfo"), 32 << 20);
  if (!cpuinfo) {
    error = "Cannot read /proc/cpuinfo";
    return false;
  }
  if (cpuinfo->find("vmx") != std::string::npos || cpuinfo->find("svm") != std::string::npos) return true;
  error = "CPU virtualization (VMX/SVM) not found in /proc/cpuinfo";
  return false;
}

bool qemu_tools_present(const VmCapabilityOptions& opt, const std::string& path_env, std::string& error) {
  std::vector<std::string> missing;
  if (!which("qemu-system-x86_64", path_env)) missing.push_back("qemu-system-x86_64 not found (apt install qemu-system-x86)");
  if (!which("qemu-img", path_env)) missing.push_back("qemu-img not found (apt install qemu-utils)");
  static constexpr const char* kOvmf[] = {
      "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_CODE_4M.fd",
      "/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/qemu/OVMF_CODE.fd"};
  std::error_code ec;
  if (opt.firmware == "auto") {
    if (std::none_of(std::begin(kOvmf), std::end(kOvmf),
                     [&](const char* p) { return fs::exists(under(opt.root, p), ec); }))
      missing.push_back("OVMF firmware not found (apt install ovmf)");
  } else if (!opt.firmware.empty() && !fs::is_regular_file(under(opt.root, opt.firmware), ec)) {
    missing.push_back("VM_FIRMWARE file not found: " + opt.firmware);
  }
  if (!which("genisoimage", path_env) && !which("mkisofs", path_env))
    missing.push_back("genisoimage/mkisofs not found (apt install genisoimage)");
  for (std::size_t i = 0; i < missing.size(); ++i) error += (i ? "; " : "") + missing[i];
  return missing.empty();
}

bool iommu_enabled(const fs::path& root) {
  std::error_code ec;
  fs::directory_iterator it(under(root, "/sys/kernel/iommu_groups"), ec);
  return !ec && it != fs::directory_iterator();
}

bool vfio_modules_present(const fs::path& root, std::string& error) {
  // Module names are the first field of /proc/modules; a module built into
  // the kernel is absent there but has /sys/module/<name>.
  std::set<std::string, std::less<>> loaded;
  if (auto text = detail::read_small_file(under(root, "/proc/modules"), 4 << 20)) {
    std::string_view rest = *text;
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      loaded.emplace(line.substr(0, line.find(' ')));
    }
  }
  std::string missing;
  for (const char* m : {"vfio", "vfio_pci", "vfio_iommu_type1"}) {
    std::error_code ec;
    if (loaded.count(std::string_view(m)) || fs::exists(under(root, "/sys/module") / m, ec)) continue;
    missing += (missing.empty() ? "" : ", ") + std::string(m);
  }
  if (missing.empty()) return true;
  error = "VFIO modules not loaded: " + missing + " (modprobe vfio-pci)";
  return false;
}

}  // namespace

bool probe_kvm(const fs::path& dev_kvm, std::string& error) {
  const int fd = ::open(dev_kvm.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    error = errno == ENOENT ? "/dev/kvm not found (KVM not enabled or kernel module not loaded)"
                            : "/dev/kvm not accessible: " + std::string(std::strerror(errno));
    return false;
  }
  const int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    error = version < 0 ? "KVM_GET_API_VERSION failed: " + std::string(std::strerror(errno))
                        : "unexpected KVM API version " + std::to_string(version);
    ::close(fd);
    return false;
  }
  // Creating (and dropping) a VM proves the kernel really lets us run guests.
  int vm = -1;
  do {
    vm = ::ioctl(fd, KVM_CREATE_VM, 0);
  } while (vm < 0 && errno == EINTR);
  if (vm < 0) {
    error = "KVM_CREATE_VM failed: " + std::string(std::strerror(errno));
    ::close(fd);
    return false;
  }
  ::close(vm);
  ::close(fd);
  return true;
}

std::vector<VfioGpu> discover_vfio_gpus(const VmCapabilityOptions& opt, std::vector<std::string>* warnings) {
  std::vector<VfioGpu> gpus;
  const std::string path_env = opt.path_env.value_or(std::getenv("PATH") ? std::getenv("PATH") : "");
  const fs::path pci_dir = under(opt.root, "/sys/bus/pci/devices");
  const fs::path groups_dir = under(opt.root, "/sys/kernel/iommu_groups");

  std::vector<std::string> addrs;
  std::error_code ec;
  for (fs::directory_iterator it(pci_dir, ec), end; !ec && it != end; it.increment(ec))
    addrs.push_back(it->path().filename().string());
  std::sort(addrs.begin(), addrs.end());

  for (const std::string& addr : addrs) {
    auto cls = pci_attr(opt.root, addr, "class");
    if (!cls || !cls->starts_with("0x03")) continue;
    auto vendor = pci_attr(opt.root, addr, "vendor");
    auto device = pci_attr(opt.root, addr, "device");
    if (!vendor || !device) continue;
    VfioGpu gpu;
    gpu.vendor_id = strip_0x(*vendor);
    gpu.device_id = strip_0x(*device);
    if (gpu.vendor_id != "10de") continue;

    auto group = iommu_group_of(opt.root, addr);
    if (!group) {
      spdlog::debug("GPU {}: no IOMMU group, skipping", addr);
      continue;
    }
    const fs::path members = groups_dir / std::to_string(*group) / "devices";
    if (!fs::exists(members, ec)) {
      spdlog::debug("GPU {}: IOMMU group {} not viable, skipping", addr, *group);
      continue;
    }

    std::vector<std::string> others;
    for (const std::string& peer : detail::list_entries(members)) {
      if (peer == addr) continue;
      auto peer_cls = pci_attr(opt.root, peer, "class").value_or("");
      if (peer_cls.starts_with("0x06")) continue;  // bridges are kernel-managed
      if (peer_cls.starts_with("0x0403")) {
        if (slot_of(peer) == slot_of(addr)) gpu.audio_pci = peer;
      } else if (peer_cls.starts_with("0x03")) {
        gpu.iommu_group_peers.push_back(peer);  // co-grouped GPU: bound together
      } else {
        others.push_back(peer);
      }
    }
    if (!others.empty()) {
      std::string list;
      for (auto& o : others) list += (list.empty() ? "" : ", ") + o;
      std::string w = "GPU " + addr + ": IOMMU group " + std::to_string(*group) +
                      " has non-GPU/audio endpoints (ignored with ACS override): " + list;
      spdlog::warn("{}", w);
      if (warnings) warnings->push_back(std::move(w));
    }

    gpu.gpu_id = static_cast<int>(gpus.size());
    gpu.pci_address = addr;
    gpu.iommu_group = *group;
    gpu.name = gpu_name(opt, path_env, addr);
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

VmCapabilityOptions vm_capability_options(const std::string& accel, const std::string& firmware) {
  VmCapabilityOptions o;
  o.tcg = accel == "tcg";
  o.firmware = firmware;
  return o;
}

VmCapability check_vm_capability(const VmCapabilityOptions& opt) {
  VmCapability cap;
  const std::string path_env = opt.path_env.value_or(std::getenv("PATH") ? std::getenv("PATH") : "");
  std::string err;

  const fs::path dev_kvm = under(opt.root, "/dev/kvm");
  bool kvm_ok = true;
  if (!opt.tcg) {
    kvm_ok = opt.kvm_probe ? opt.kvm_probe(dev_kvm, err) : probe_kvm(dev_kvm, err);
    if (!kvm_ok) cap.errors.push_back(std::exchange(err, {}));
    // V1: the ioctls are the proof; nested and PVM hosts hide vmx/svm from
    // /proc/cpuinfo although KVM works, so a missing flag only warns.
    if (!cpu_has_virtualization(opt.root, err)) cap.warnings.push_back(std::exchange(err, {}));
  }
  const bool qemu_ok = qemu_tools_present(opt, path_env, err);
  if (!qemu_ok) cap.errors.push_back(std::exchange(err, {}));

  const bool iommu_ok = iommu_enabled(opt.root);
  if (!iommu_ok)
    cap.warnings.push_back("IOMMU: IOMMU not enabled (add intel_iommu=on or amd_iommu=on to kernel params)");
  const bool vfio_ok = vfio_modules_present(opt.root, err);
  if (!vfio_ok) cap.warnings.push_back("VFIO: " + std::exchange(err, {}));
  if (detail::read_trimmed(under(opt.root, "/sys/module/nvidia_drm/parameters/modeset")).value_or("") == "Y")
    cap.warnings.push_back(
        "nvidia_drm.modeset=Y: GPU unbinding will hang on consumer cards. "
        "Set nvidia_drm.modeset=0 in kernel params for headless compute nodes");

  if (iommu_ok && vfio_ok) {
    cap.vfio_gpus = discover_vfio_gpus(opt, &cap.warnings);
    if (cap.vfio_gpus.empty()) cap.warnings.push_back("No GPUs suitable for VFIO passthrough found");
  }
  cap.vm_capable = kvm_ok && qemu_ok;
  return cap;
}

const VmCapability& vm_capability(const VmCapabilityOptions& options) {
  static std::once_flag once;
  static VmCapability cached;
  std::call_once(once, [&options] {
    try {
      cached = check_vm_capability(options);
    } catch (const std::exception& e) {
      // Upstream: failure of the whole check -> false / null.
      spdlog::warn("VM capability check failed: {}", e.what());
      cached = VmCapability{};
    }
    spdlog::info("VM capability: vm_capable={}, {} VFIO GPU(s)", cached.vm_capable, cached.vfio_gpus.size());
    for (const auto& e : cached.errors) spdlog::info("VM capability: {}", e);
    for (const auto& w : cached.warnings) spdlog::info("VM capability: {}", w);
  });
  return cached;
}

nlohmann::json vfio_gpus_json(const std::vector<VfioGpu>& gpus) {
  if (gpus.empty()) return nullptr;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& g : gpus) {
    nlohmann::json audio = nullptr;
    if (g.audio_pci) audio = *g.audio_pci;
    out.push_back({{"gpu_id", g.gpu_id},
                   {"pci_address", g.pci_address},
                   {"name", g.name},
                   {"vendor_id", g.vendor_id},
                   {"device_id", g.device_id},
                   {"iommu_group", g.iommu_group},
                   {"audio_pci", audio},
                   {"iommu_group_peers", g.iommu_group_peers}});
  }
  return out;
}

}  // namespace kr::monitor
