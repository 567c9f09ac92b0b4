#include "monitor/gpu_remap.hpp"

#include <cctype>
#include <set>
#include <spdlog/spdlog.h>

#include "monitor/sysfs.hpp"

namespace kr::monitor {

using nlohmann::json;

std::string normalize_pci_address(std::string_view pci) {
  std::string s(detail::trim(pci));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // Only addresses with domain:bus:dev.fn are touched.
  const auto first = s.find(':');
  if (first != std::string::npos && s.find(':', first + 1) != std::string::npos && first > 4)
    s.erase(0, first - 4);
  return s;
}

VmGpuStatsByPci pair_vm_gpu_stats(const std::vector<VmGpuReport>& vms,
                                  const std::vector<VfioGpu>& vfio_gpus) {
  std::set<std::string> vfio_set;
  for (const auto& g : vfio_gpus) vfio_set.insert(normalize_pci_address(g.pci_address));

  VmGpuStatsByPci out;
  for (const auto& vm : vms) {
    if (!vm.agent_gpus.is_array() || vm.agent_gpus.empty()) continue;
    std::vector<std::string> gpu_pcis;
    for (const auto& addr : vm.gpu_pci_addresses) {
      auto n = normalize_pci_address(addr);
      if (vfio_set.count(n)) gpu_pcis.push_back(std::move(n));
    }
    for (std::size_t i = 0; i < vm.agent_gpus.size() && i < gpu_pcis.size(); ++i)
      out[gpu_pcis[i]] = VmGpuStats{vm.task_id, vm.agent_gpus[i]};
  }
  return out;
}

namespace {

// Python truthiness of a JSON value (upstream: `entry.get("name") or ...`).
bool truthy(const json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0.0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  if (v.is_array() || v.is_object()) return !v.empty();
  return true;
}

}  // namespace

json remap_gpu_info_for_vfio(const json& nvml_list, const std::vector<VfioGpu>& vfio_gpus,
                             const VmGpuStatsByPci& vm_stats) {
  if (vfio_gpus.empty()) return nvml_list;
  try {
    std::map<std::string, int> pci_to_vfio_id;
    for (const auto& g : vfio_gpus) pci_to_vfio_id[normalize_pci_address(g.pci_address)] = g.gpu_id;

    json out = nvml_list;
    std::set<std::string> seen;
    for (auto& gpu : out) {
      const std::string pci = normalize_pci_address(gpu.value("pci_bus_id", std::string()));
      if (pci.empty()) continue;
      if (auto it = pci_to_vfio_id.find(pci); it != pci_to_vfio_id.end()) gpu["gpu_id"] = it->second;
      seen.insert(pci);
    }

    for (const auto& vfio : vfio_gpus) {
      const std::string pci = normalize_pci_address(vfio.pci_address);
      if (seen.count(pci)) continue;  // still visible to NVML
      json entry;
      if (auto it = vm_stats.find(pci); it != vm_stats.end()) {
        if (!it->second.stats.is_object()) throw std::invalid_argument("VM GPU stats are not an object");
        entry = it->second.stats;
        entry["gpu_id"] = vfio.gpu_id;
        if (!truthy(entry.value("name", json()))) entry["name"] = vfio.name;
        entry["pci_bus_id"] = vfio.pci_address;
        entry["vm_task_id"] = it->second.vm_task_id;
        entry["vfio_bound"] = true;
      } else {
        // Bound to vfio-pci but no VM reports it (e.g. between VMs).
        entry = {{"gpu_id", vfio.gpu_id},
                 {"name", vfio.name},
                 {"pci_bus_id", vfio.pci_address},
                 {"vfio_bound", true}};
      }
      out.push_back(std::move(entry));
    }
    return out;
  } catch (const std::exception& e) {
    spdlog::debug("Failed to remap GPU info with VFIO data: {}", e.what());
    return nvml_list;
  }
}

}  // namespace kr::monitor
