// VFIO GPU passthrough: IOMMU groups, binding to vfio-pci and back
// (vm.md §12, decisions V5, V21, V22).
//
// Every path is under a configurable root so the logic runs against recorded
// or synthetic sysfs trees in tests; sysfs writes and the systemctl calls go
// through injectable functions for the same reason.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "monitor/vm_capability.hpp"

namespace kr::vm {

class VfioError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct SysfsWrite {
  enum class Status { Done, TimedOut, Failed } status = Status::Done;
  std::string error;  // for Failed: strerror text
};

// Writes `data` to a sysfs attribute on a helper thread and waits at most
// `timeout`: consumer NVIDIA cards can hang in unbind even after it took
// effect. A timed-out write's thread is left behind (it cannot be cancelled).
SysfsWrite write_sysfs(const std::filesystem::path& file, std::string_view data,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5));

struct VfioOptions {
  std::filesystem::path root = "/";  // prefix of /sys
  // Writes a sysfs attribute; default: write_sysfs with a 5 s limit.
  std::function<SysfsWrite(const std::filesystem::path&, std::string_view)> write;
  // Runs a command (argv) and returns its exit status (-1: could not run or
  // timed out); default: run_process with a 10 s limit. Used for systemctl.
  std::function<int(const std::vector<std::string>&)> run;
};

class Vfio {
public:
  explicit Vfio(VfioOptions options = {});

  // Basename of the device's `driver` link; nullopt when unbound.
  std::optional<std::string> driver_of(const std::string& addr) const;
  // IOMMU group number; nullopt when the device has none.
  std::optional<int> group_of(const std::string& addr) const;
  // The devices bound together with `addr`: its IOMMU group minus bridges
  // (class 0x06), sorted; just {addr} when it has no group.
  std::vector<std::string> group_members(const std::string& addr) const;

  // §12.2. Returns false when it already was on vfio-pci. Throws VfioError.
  bool bind_device(const std::string& addr);
  // §12.3. Returns false when it was not on vfio-pci. Throws VfioError.
  bool unbind_device(const std::string& addr);

  // Binds the whole group in order; stops at the first failure (throws).
  // Returns the members it moved to vfio-pci (for roll-back, V5).
  std::vector<std::string> bind_group(const std::string& addr);
  // Unbinds every member, continuing past failures; returns the errors.
  std::vector<std::string> unbind_group(const std::string& addr);

private:
  std::filesystem::path sys(std::string_view rel) const;
  std::filesystem::path device(const std::string& addr) const;
  void stop_persistenced();
  void after_group_change();

  VfioOptions options_;
};

// The PCI addresses handed to QEMU for the requested VFIO gpu ids: each GPU
// then its same-slot audio function, duplicates dropped, order kept. Ids not
// in `gpus` fail the create (V22), unlike upstream's silent skip.
std::vector<std::string> passthrough_addresses(const std::vector<int>& gpu_ids,
                                               const std::vector<monitor::VfioGpu>& gpus);

// Host NVIDIA driver version from <root>/sys/module/nvidia/version (the
// first source upstream tries; read before binding, vm.md §4 step 7.5).
std::optional<std::string> nvidia_driver_version_from_sysfs(const std::filesystem::path& root = "/");

// ---- ACS override (§12.4, V21) -------------------------------------------------

// V21: only when enabled AND VFIO GPUs were discovered.
bool acs_override_wanted(bool setting_enabled, const std::vector<monitor::VfioGpu>& gpus);

// The setpci argv lists upstream runs, from `lspci` and `lspci -d 10b5:`
// output, in upstream's order: root ports, PLX switches (three writes each),
// PCI bridges.
struct AcsCommand {
  enum class Kind { RootPort, PlxSwitch, PciBridge } kind;
  std::vector<std::string> argv;
};
std::vector<AcsCommand> acs_override_commands(std::string_view lspci_all, std::string_view lspci_plx);

// What one ACS override pass did (§12.4): root ports and bridges counted
// when their write succeeded, PLX switches counted per device (their three
// writes' results are ignored, as upstream), errors in words.
struct AcsOverrideResult {
  int root_ports = 0;
  int plx_switches = 0;
  int pci_bridges = 0;
  std::vector<std::string> errors;
};
// Runs `lspci`, `lspci -d 10b5:` and the setpci writes through `run` (argv →
// exit code and output; blocking, 5 s each in production). A failing lspci
// is an error and ends the pass.
struct AcsRunResult {
  int exit_code = -1;
  std::string output;
};
using AcsRunner = std::function<AcsRunResult(const std::vector<std::string>& argv)>;
AcsOverrideResult apply_acs_override(const AcsRunner& run);
// The production runner: vm/process run_process with a 5 s timeout.
AcsRunResult run_acs_tool(const std::vector<std::string>& argv);

}  // namespace kr::vm
