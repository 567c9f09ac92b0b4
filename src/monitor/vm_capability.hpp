// VM capability and VFIO-passthrough GPUs for the heartbeat (protocol.md
// §1.3.4, decision V1).
//
// vm_capable = KVM answers (/dev/kvm opens read-write, KVM_GET_API_VERSION is
// 12 and KVM_CREATE_VM succeeds; skipped when the operator chose TCG) AND
// qemu-system-x86_64,
// qemu-img and genisoimage|mkisofs are on PATH AND the firmware exists (one
// of upstream's OVMF code files; none for SeaBIOS; the configured file).
// IOMMU/VFIO problems, and vmx/svm missing from /proc/cpuinfo (upstream's
// check, which nested/PVM hosts fail although KVM works), are warnings only.
//
// vfio_gpus: only when IOMMU groups exist and vfio, vfio_pci,
// vfio_iommu_type1 are loaded or built in: NVIDIA (vendor 10de) display-class
// (0x03xxxx) PCI functions, in sorted address order, that sit in a viable
// IOMMU group. As upstream, a group is viable when the device's iommu_group
// link resolves and the group's devices directory exists; bridges (0x06xxxx)
// in the group are ignored, other non-GPU/non-audio endpoints only warn.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kr::monitor {

struct VfioGpu {
  int gpu_id = 0;                       // running index over qualifying GPUs
  std::string pci_address;              // sysfs form "0000:41:00.0"
  std::string name;
  std::string vendor_id;                // "10de"
  std::string device_id;                // "2204"
  int iommu_group = 0;
  std::optional<std::string> audio_pci; // same-slot class-0x0403 function in the group
  std::vector<std::string> iommu_group_peers;  // other display-class devices in the group
};

struct VmCapability {
  bool vm_capable = false;
  std::vector<VfioGpu> vfio_gpus;
  std::vector<std::string> errors;    // why vm_capable is false
  std::vector<std::string> warnings;  // IOMMU / VFIO / group remarks
};

struct VmCapabilityOptions {
  // Prefix for /dev/kvm, /proc, /sys and the OVMF files.
  std::filesystem::path root = "/";
  // PATH used to find the tools; unset -> the process environment's PATH.
  std::optional<std::string> path_env;
  // KVM check; unset -> probe_kvm(). Tests replace it.
  std::function<bool(const std::filesystem::path& dev_kvm, std::string& error)> kvm_probe;
  // Ask `lspci -s <addr> -mm` for GPU names first (upstream does); only used
  // for the live root. Runs a process with a 5 s limit.
  bool use_lspci = true;
  // VM_QEMU_ACCEL == "tcg": software emulation needs neither KVM nor the
  // CPU's virtualization flags (issue 10).
  bool tcg = false;
  // VM_FIRMWARE: "auto" = one of upstream's OVMF files must exist; "" =
  // SeaBIOS, nothing required; a path = that file must exist.
  std::string firmware = "auto";
};

// open(O_RDWR) + KVM_GET_API_VERSION == 12 + KVM_CREATE_VM (VM fd closed).
bool probe_kvm(const std::filesystem::path& dev_kvm, std::string& error);

// The options the runner's settings ask for (VM_QEMU_ACCEL, VM_FIRMWARE).
VmCapabilityOptions vm_capability_options(const std::string& accel, const std::string& firmware);

// Full check, uncached. Blocking (KVM ioctls, maybe lspci): call it off the
// I/O thread.
VmCapability check_vm_capability(const VmCapabilityOptions& options = {});

// The live system's capability, computed on first use and cached for the
// process lifetime (thread-safe); the first caller's options count. Warm it
// at startup before the I/O loop.
const VmCapability& vm_capability(const VmCapabilityOptions& options = {});

// Only the GPU discovery part (no IOMMU/module gate).
std::vector<VfioGpu> discover_vfio_gpus(const VmCapabilityOptions& options,
                                        std::vector<std::string>* warnings = nullptr);

// Heartbeat `vfio_gpus`: array of the 8-key objects, or null when empty
// (decision D15: never []).
nlohmann::json vfio_gpus_json(const std::vector<VfioGpu>& gpus);

}  // namespace kr::monitor
