#include "vm/vfio.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <memory>
#include <spdlog/spdlog.h>
#include <thread>

#include "monitor/sysfs.hpp"
#include "vm/process.hpp"

namespace kr::vm {

namespace fs = std::filesystem;
using monitor::detail::list_entries;
using monitor::detail::read_link;
using monitor::detail::read_trimmed;
using monitor::detail::under;

SysfsWrite write_sysfs(const fs::path& file, std::string_view data, std::chrono::milliseconds timeout) {
  auto done = std::make_shared<std::promise<SysfsWrite>>();
  auto result = done->get_future();
  std::thread([done, file, text = std::string(data)] {
    SysfsWrite r;
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      r.status = SysfsWrite::Status::Failed;
      r.error = std::strerror(errno);
    } else {
      // sysfs attributes take the whole value in one write.
      ssize_t n;
      do {
        n = ::write(fd, text.data(), text.size());
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        r.status = SysfsWrite::Status::Failed;
        r.error = std::strerror(errno);
      }
      ::close(fd);
    }
    done->set_value(std::move(r));
  }).detach();
  if (result.wait_for(timeout) != std::future_status::ready) return {SysfsWrite::Status::TimedOut, "timed out"};
  return result.get();
}

Vfio::Vfio(VfioOptions options) : options_(std::move(options)) {
  if (!options_.write)
    options_.write = [](const fs::path& f, std::string_view d) { return write_sysfs(f, d); };
  if (!options_.run)
    options_.run = [](const std::vector<std::string>& argv) {
      ProcessOptions o;
      o.timeout = std::chrono::seconds(10);
      return run_process(argv, o).exit_code;
    };
}

fs::path Vfio::sys(std::string_view rel) const { return under(options_.root, rel); }
fs::path Vfio::device(const std::string& addr) const { return sys("/sys/bus/pci/devices") / addr; }

std::optional<std::string> Vfio::driver_of(const std::string& addr) const {
  auto target = read_link(device(addr), "driver");
  if (!target) return std::nullopt;
  return target->filename().string();
}

std::optional<int> Vfio::group_of(const std::string& addr) const {
  auto target = read_link(device(addr), "iommu_group");
  if (!target) return std::nullopt;
  auto n = monitor::detail::parse_int(target->filename().string());
  if (!n || *n < 0) return std::nullopt;
  return static_cast<int>(*n);
}

std::vector<std::string> Vfio::group_members(const std::string& addr) const {
  const auto group = group_of(addr);
  if (!group) return {addr};
  std::vector<std::string> members;
  for (const std::string& m : list_entries(sys("/sys/kernel/iommu_groups") / std::to_string(*group) / "devices")) {
    if (read_trimmed(device(m) / "class").value_or("").starts_with("0x06")) continue;  // bridges stay with the host
    members.push_back(m);
  }
  std::sort(members.begin(), members.end());
  if (members.empty()) members.push_back(addr);
  return members;
}

void Vfio::stop_persistenced() {
  // It holds the GPUs open; unbinding under it hangs.
  if (options_.run({"systemctl", "is-active", "--quiet", "nvidia-persistenced"}) == 0)
    options_.run({"systemctl", "stop", "nvidia-persistenced"});
}

void Vfio::after_group_change() { options_.run({"systemctl", "start", "nvidia-persistenced"}); }

bool Vfio::bind_device(const std::string& addr) {
  const auto driver = driver_of(addr);
  if (driver == "vfio-pci") return false;
  if (!read_trimmed(device(addr) / "vendor") || !read_trimmed(device(addr) / "device"))
    throw VfioError("Cannot read vendor/device of " + addr);
  if (driver) {
    if (*driver == "nvidia") stop_persistenced();
    const SysfsWrite w = options_.write(device(addr) / "driver" / "unbind", addr);
    if (w.status == SysfsWrite::Status::Failed)
      throw VfioError("Unbinding " + addr + " from " + *driver + " failed: " + w.error);
    if (w.status == SysfsWrite::Status::TimedOut) {
      if (auto still = driver_of(addr)) throw VfioError("Unbind timed out and " + addr + " still bound to " + *still);
      spdlog::warn("VFIO: unbinding {} timed out but took effect", addr);
    }
  }
  const SysfsWrite o = options_.write(device(addr) / "driver_override", "vfio-pci");
  if (o.status == SysfsWrite::Status::Failed)
    throw VfioError("Setting driver_override of " + addr + " failed: " + o.error);
  if (o.status == SysfsWrite::Status::TimedOut) spdlog::warn("VFIO: driver_override write for {} timed out", addr);
  const SysfsWrite probe = options_.write(sys("/sys/bus/pci/drivers_probe"), addr);
  if (probe.status != SysfsWrite::Status::Done) spdlog::debug("VFIO: drivers_probe {}: {}", addr, probe.error);
  if (driver_of(addr) != "vfio-pci") {
    const SysfsWrite b = options_.write(sys("/sys/bus/pci/drivers/vfio-pci/bind"), addr);
    if (b.status != SysfsWrite::Status::Done) spdlog::debug("VFIO: vfio-pci bind {}: {}", addr, b.error);
  }
  const auto now = driver_of(addr);
  if (now != "vfio-pci") throw VfioError("Expected vfio-pci but got '" + now.value_or("none") + "' for " + addr);
  return true;
}

bool Vfio::unbind_device(const std::string& addr) {
  if (driver_of(addr) != "vfio-pci") return false;
  const bool nvidia = read_trimmed(device(addr) / "vendor").value_or("") == "0x10de";
  if (nvidia) stop_persistenced();
  const SysfsWrite w = options_.write(device(addr) / "driver" / "unbind", addr);
  if (w.status == SysfsWrite::Status::Failed)
    throw VfioError("Unbinding " + addr + " from vfio-pci failed: " + w.error);
  if (w.status == SysfsWrite::Status::TimedOut && driver_of(addr) == "vfio-pci")
    throw VfioError("Unbind timed out and " + addr + " still bound to vfio-pci");
  options_.write(device(addr) / "driver_override", "\n");  // errors ignored: probing still works
  options_.write(sys("/sys/bus/pci/drivers_probe"), addr);
  if (nvidia && driver_of(addr) != "nvidia") options_.write(sys("/sys/bus/pci/drivers/nvidia/bind"), addr);
  return true;
}

std::vector<std::string> Vfio::bind_group(const std::string& addr) {
  std::vector<std::string> moved;
  struct Restart {
    Vfio& v;
    const std::vector<std::string>& moved;
    ~Restart() {
      if (!moved.empty()) v.after_group_change();
    }
  } restart{*this, moved};
  for (const std::string& member : group_members(addr)) {
    if (bind_device(member)) moved.push_back(member);
  }
  return moved;
}

std::vector<std::string> Vfio::unbind_group(const std::string& addr) {
  std::vector<std::string> errors;
  bool touched = false;
  for (const std::string& member : group_members(addr)) {
    try {
      touched = unbind_device(member) || touched;
    } catch (const VfioError& e) {
      touched = true;
      errors.emplace_back(e.what());
    }
  }
  if (touched) after_group_change();
  return errors;
}

std::vector<std::string> passthrough_addresses(const std::vector<int>& gpu_ids,
                                               const std::vector<monitor::VfioGpu>& gpus) {
  std::vector<std::string> out;
  auto add = [&](const std::string& a) {
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  };
  for (int id : gpu_ids) {
    auto it = std::find_if(gpus.begin(), gpus.end(), [&](const monitor::VfioGpu& g) { return g.gpu_id == id; });
    if (it == gpus.end()) {
      std::string available;
      for (const auto& g : gpus) available += (available.empty() ? "" : ", ") + std::to_string(g.gpu_id);
      throw std::invalid_argument("GPU " + std::to_string(id) + " is not a VFIO GPU on this node (available: " +
                                  (available.empty() ? "none" : available) + ")");
    }
    add(it->pci_address);
    if (it->audio_pci) add(*it->audio_pci);
  }
  return out;
}

std::optional<std::string> nvidia_driver_version_from_sysfs(const fs::path& root) {
  auto v = read_trimmed(under(root, "/sys/module/nvidia/version"));
  if (!v || v->empty()) return std::nullopt;
  return v;
}

bool acs_override_wanted(bool setting_enabled, const std::vector<monitor::VfioGpu>& gpus) {
  return setting_enabled && !gpus.empty();
}

namespace {
std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) out.emplace_back(line);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  }
  return out;
}
std::string first_field(const std::string& line) { return line.substr(0, line.find(' ')); }
}  // namespace

std::vector<AcsCommand> acs_override_commands(std::string_view lspci_all, std::string_view lspci_plx) {
  std::vector<AcsCommand> out;
  const auto all = lines_of(lspci_all);
  for (const auto& line : all)
    if (line.find("Root Port") != std::string::npos)
      out.push_back({AcsCommand::Kind::RootPort, {"setpci", "-s", first_field(line), "ECAP_ACS+6.w=0000"}});
  for (const auto& line : lines_of(lspci_plx))
    for (const char* write : {"ECAP_ACS+6.w=0000", "0x154.w=0000", "0xf2a.w=0000"})
      out.push_back({AcsCommand::Kind::PlxSwitch, {"setpci", "-s", first_field(line), write}});
  for (const auto& line : all)
    if (line.find("PCI bridge") != std::string::npos)
      out.push_back({AcsCommand::Kind::PciBridge, {"setpci", "-s", first_field(line), "ECAP_ACS+6.w=0000"}});
  return out;
}

AcsOverrideResult apply_acs_override(const AcsRunner& run) {
  AcsOverrideResult r;
  const auto all = run({"lspci"});
  if (all.exit_code != 0) {
    r.errors.push_back("lspci failed: " + all.output.substr(0, 200));
    return r;
  }
  const auto plx = run({"lspci", "-d", "10b5:"});
  if (plx.exit_code != 0) r.errors.push_back("lspci -d 10b5: failed: " + plx.output.substr(0, 200));
  std::string last_plx;
  for (const auto& cmd : acs_override_commands(all.output, plx.exit_code == 0 ? plx.output : "")) {
    const auto res = run(cmd.argv);
    const std::string& addr = cmd.argv[2];
    switch (cmd.kind) {
      case AcsCommand::Kind::PlxSwitch:
        if (addr != last_plx) ++r.plx_switches;
        last_plx = addr;
        break;
      case AcsCommand::Kind::RootPort:
      case AcsCommand::Kind::PciBridge:
        if (res.exit_code == 0) {
          ++(cmd.kind == AcsCommand::Kind::RootPort ? r.root_ports : r.pci_bridges);
        } else {
          r.errors.push_back("setpci -s " + addr + " failed: " + res.output.substr(0, 200));
        }
        break;
    }
  }
  return r;
}

AcsRunResult run_acs_tool(const std::vector<std::string>& argv) {
  ProcessOptions opts;
  opts.timeout = std::chrono::seconds(5);
  auto res = run_process(argv, opts);
  if (res.timed_out) res.output = "timed out after 5 s";
  return {res.exit_code, std::move(res.output)};
}

}  // namespace kr::vm
