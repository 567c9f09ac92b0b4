// vm-state.json (vm.md §10).
#include <gtest/gtest.h>

#include "vm/vm_state.hpp"

using namespace kr::vm;
using nlohmann::json;

TEST(VmState, UpstreamsKeysInOrderAndBack) {
  VmState s;
  s.task_id = 42;
  s.container_name = "vm-42";
  s.allocated_cores = 4;
  s.allocated_gpus = {0, 1};
  s.vm_ip = "10.200.0.10";
  s.tap_device = "tap-1ef51593";
  s.mac_address = "52:54:00:1e:f5:15";
  s.gpu_pci_addresses = {"0000:41:00.0", "0000:41:00.1"};
  s.network_mode = "standard";
  s.bridge_name = "kohaku-br0";
  s.gateway = "10.200.0.1";
  s.prefix_len = 24;
  s.ssh_port = 2222;
  const auto j = to_json(s);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"task_id", "container_name", "allocated_cores", "allocated_gpus", "numa_node",
                                            "vm_ip", "tap_device", "mac_address", "gpu_pci_addresses", "network_mode",
                                            "bridge_name", "gateway", "prefix_len", "ssh_port"}));
  EXPECT_TRUE(j["numa_node"].is_null());
  EXPECT_EQ(vm_state_from_json(json::parse(j.dump(2))), s);
  s.overlay_token = "tok";
  s.ssh_port.reset();
  EXPECT_EQ(vm_state_from_json(json::parse(to_json(s).dump())), s);
}

TEST(VmState, RejectsBrokenFiles) {
  EXPECT_THROW(vm_state_from_json(json::array()), std::invalid_argument);
  EXPECT_THROW(vm_state_from_json(json::parse(R"({"task_id": 1})")), std::invalid_argument);
  EXPECT_THROW(vm_state_from_json(json::parse(R"({"task_id": "1x", "vm_ip": "a", "tap_device": "t"})")),
               std::invalid_argument);
  EXPECT_THROW(vm_state_from_json(json::parse(R"({"task_id": 1, "vm_ip": 5, "tap_device": "t"})")),
               std::invalid_argument);
  auto s = vm_state_from_json(json::parse(R"({"task_id": "7", "vm_ip": "10.200.0.11", "tap_device": "t"})"));
  EXPECT_EQ(s.task_id, 7);
  EXPECT_EQ(s.container_name, "vm-7");
}
