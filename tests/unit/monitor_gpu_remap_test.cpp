// VFIO-aware gpu_info for heartbeats (protocol.md §1.3.3, decision D16).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "monitor/gpu_remap.hpp"

using namespace kr::monitor;
using nlohmann::json;

namespace {

VfioGpu vfio(int id, const std::string& addr, const std::string& name) {
  VfioGpu g;
  g.gpu_id = id;
  g.pci_address = addr;
  g.name = name;
  g.vendor_id = "10de";
  g.device_id = "2330";
  g.iommu_group = 50 + id;
  return g;
}

json nvml_entry(int id, const std::string& bus) {
  return {{"gpu_id", id}, {"name", "NVIDIA H100"}, {"pci_bus_id", bus}, {"gpu_utilization", 5}};
}

const std::vector<VfioGpu> kVfio = {vfio(0, "0000:41:00.0", "GPU A"), vfio(1, "0000:61:00.0", "GPU B"),
                                    vfio(2, "0000:62:00.0", "GPU C")};

}  // namespace

TEST(MonitorGpuRemap, NormalisesPciAddresses) {
  EXPECT_EQ(normalize_pci_address("00000000:41:00.0"), "0000:41:00.0");
  EXPECT_EQ(normalize_pci_address(" 0000:C1:00.0\n"), "0000:c1:00.0");
  EXPECT_EQ(normalize_pci_address("0001:41:00.0"), "0001:41:00.0");
  EXPECT_EQ(normalize_pci_address("41:00.0"), "41:00.0");
  EXPECT_EQ(normalize_pci_address(""), "");
}

TEST(MonitorGpuRemap, NoVfioGpusLeavesListAlone) {
  json list = json::array({nvml_entry(0, "00000000:00:06.0")});
  EXPECT_EQ(remap_gpu_info_for_vfio(list, {}), list);
}

TEST(MonitorGpuRemap, StableIdsAndVfioBoundEntries) {
  // 61:00.0 is bound to vfio-pci, so NVML renumbered 62:00.0 to index 1.
  json list = json::array({nvml_entry(0, "00000000:41:00.0"), nvml_entry(1, "00000000:62:00.0"),
                           nvml_entry(2, "00000000:a1:00.0")});
  json got = remap_gpu_info_for_vfio(list, kVfio);
  json expected = json::array({nvml_entry(0, "00000000:41:00.0"), nvml_entry(2, "00000000:62:00.0"),
                               nvml_entry(2, "00000000:a1:00.0"),  // not a VFIO GPU: untouched
                               {{"gpu_id", 1}, {"name", "GPU B"}, {"pci_bus_id", "0000:61:00.0"}, {"vfio_bound", true}}});
  EXPECT_EQ(got, expected) << got.dump(1);
}

TEST(MonitorGpuRemap, VmAgentStatsForPassedThroughGpus) {
  json list = json::array({nvml_entry(0, "00000000:41:00.0")});
  // VM 7312345678901234567 got 61:00.0 (+ audio) and 62:00.0; its agent reports two GPUs.
  VmGpuReport vm;
  vm.task_id = 7312345678901234567;
  vm.gpu_pci_addresses = {"0000:61:00.0", "0000:61:00.1", "0000:62:00.0"};
  vm.agent_gpus = json::array({{{"name", ""}, {"gpu_utilization", 97}, {"temperature", 71}},
                               {{"name", "NVIDIA H100 (guest)"}, {"gpu_utilization", 3}}});
  VmGpuReport no_agent;
  no_agent.task_id = 5;
  no_agent.gpu_pci_addresses = {"0000:41:00.0"};
  auto stats = pair_vm_gpu_stats({vm, no_agent}, kVfio);
  ASSERT_EQ(stats.size(), 2u);

  json got = remap_gpu_info_for_vfio(list, kVfio, stats);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1], json({{"gpu_id", 1}, {"name", "GPU B"}, {"pci_bus_id", "0000:61:00.0"},
                          {"gpu_utilization", 97}, {"temperature", 71},
                          {"vm_task_id", 7312345678901234567}, {"vfio_bound", true}}));
  EXPECT_EQ(got[2], json({{"gpu_id", 2}, {"name", "NVIDIA H100 (guest)"}, {"pci_bus_id", "0000:62:00.0"},
                          {"gpu_utilization", 3}, {"vm_task_id", 7312345678901234567}, {"vfio_bound", true}}));
}

TEST(MonitorGpuRemap, MalformedInputFallsBackToPlainList) {
  json list = json::array({nvml_entry(0, "00000000:41:00.0"), {{"gpu_id", 1}, {"pci_bus_id", 7}}});
  EXPECT_EQ(remap_gpu_info_for_vfio(list, kVfio), list);

  VmGpuStatsByPci bad = {{"0000:61:00.0", VmGpuStats{3, json::array()}}};
  json ok = json::array({nvml_entry(0, "00000000:41:00.0")});
  EXPECT_EQ(remap_gpu_info_for_vfio(ok, kVfio, bad), ok);
}
