// The heartbeat's VFIO-aware gpu_info (protocol.md §1.3.3 "VFIO-aware form",
// decision D16): NVML entries get their stable VFIO gpu_id by PCI address, and
// VFIO GPUs NVML cannot see (bound to vfio-pci, maybe inside a VM) are
// appended with `vfio_bound: true`. Registration sends the plain NVML list.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "monitor/vm_capability.hpp"

namespace kr::monitor {

// Trimmed, lower-case, domain cut to its last 4 hex digits:
// "00000000:41:00.0" -> "0000:41:00.0" (NVML form -> sysfs form).
std::string normalize_pci_address(std::string_view pci);

// GPU stats reported by a VM's agent for one passed-through GPU.
struct VmGpuStats {
  std::int64_t vm_task_id = 0;
  nlohmann::json stats;  // NVML-form keys, as the agent sent them
};
// Keyed by normalize_pci_address().
using VmGpuStatsByPci = std::map<std::string, VmGpuStats>;

// What the VM manager knows about one running VM.
struct VmGpuReport {
  std::int64_t task_id = 0;
  std::vector<std::string> gpu_pci_addresses;  // as passed to QEMU, audio functions included
  nlohmann::json agent_gpus;                   // the agent's GPU list (array), may be null
};

// Upstream pairing: a VM's addresses that are VFIO GPUs (audio companions drop
// out), in order, zipped with its agent's GPU list, in order. VMs without
// agent GPU stats are skipped; a later VM wins on a shared address.
VmGpuStatsByPci pair_vm_gpu_stats(const std::vector<VmGpuReport>& vms,
                                  const std::vector<VfioGpu>& vfio_gpus);

// Pure; returns `nvml_list` unchanged when there are no VFIO GPUs or on any
// malformed input (upstream: "any error -> the plain NVML list").
nlohmann::json remap_gpu_info_for_vfio(const nlohmann::json& nvml_list,
                                       const std::vector<VfioGpu>& vfio_gpus,
                                       const VmGpuStatsByPci& vm_stats = {});

}  // namespace kr::monitor
