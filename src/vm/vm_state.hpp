// The persistent record of one VM (vm.md §10): the task-store entry and
// {instance}/vm-state.json hold the same object (JSON indented by 2).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::vm {

struct VmState {
  std::int64_t task_id = 0;
  std::string container_name;            // "vm-{id}"
  int allocated_cores = 0;
  std::vector<int> allocated_gpus;       // requested VFIO gpu ids
  std::optional<int> numa_node;          // always null (V14 Keep)
  std::string vm_ip;
  std::string tap_device;
  std::string mac_address;
  std::vector<std::string> gpu_pci_addresses;
  std::string network_mode = "standard";  // "overlay" | "standard"
  std::string bridge_name;
  std::string gateway;
  int prefix_len = 24;
  std::optional<int> ssh_port;
  // Ours (V20/O5): the overlay reservation token, so a restarted runner can
  // renew and release it. Absent in upstream's files.
  std::optional<std::string> overlay_token;

  bool operator==(const VmState&) const = default;
};

// Upstream's keys in upstream's order (plus overlay_token when set).
nlohmann::ordered_json to_json(const VmState& state);
// Accepts upstream's files too. Throws std::invalid_argument naming the bad key.
VmState vm_state_from_json(const nlohmann::json& j);

}  // namespace kr::vm
