#include "vm/vm_state.hpp"

#include <stdexcept>

namespace kr::vm {

using nlohmann::json;
using nlohmann::ordered_json;

ordered_json to_json(const VmState& s) {
  ordered_json j;
  j["task_id"] = s.task_id;
  j["container_name"] = s.container_name;
  j["allocated_cores"] = s.allocated_cores;
  j["allocated_gpus"] = s.allocated_gpus;
  j["numa_node"] = s.numa_node ? ordered_json(*s.numa_node) : ordered_json(nullptr);
  j["vm_ip"] = s.vm_ip;
  j["tap_device"] = s.tap_device;
  j["mac_address"] = s.mac_address;
  j["gpu_pci_addresses"] = s.gpu_pci_addresses;
  j["network_mode"] = s.network_mode;
  j["bridge_name"] = s.bridge_name;
  j["gateway"] = s.gateway;
  j["prefix_len"] = s.prefix_len;
  j["ssh_port"] = s.ssh_port ? ordered_json(*s.ssh_port) : ordered_json(nullptr);
  if (s.overlay_token) j["overlay_token"] = *s.overlay_token;
  return j;
}

namespace {

template <class T>
T required(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) throw std::invalid_argument(std::string("vm-state: missing '") + key + "'");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw std::invalid_argument(std::string("vm-state: bad '") + key + "'");
  }
}

template <class T>
T optional_or(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw std::invalid_argument(std::string("vm-state: bad '") + key + "'");
  }
}

}  // namespace

VmState vm_state_from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("vm-state: not an object");
  VmState s;
  // Upstream writes the id as a number; tolerate a string (task ids, D1).
  if (auto it = j.find("task_id"); it != j.end() && it->is_string()) {
    try {
      std::size_t used = 0;
      s.task_id = std::stoll(it->get<std::string>(), &used);
      if (used != it->get_ref<const std::string&>().size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw std::invalid_argument("vm-state: bad 'task_id'");
    }
  } else {
    s.task_id = required<std::int64_t>(j, "task_id");
  }
  s.container_name = optional_or<std::string>(j, "container_name", "vm-" + std::to_string(s.task_id));
  s.allocated_cores = optional_or<int>(j, "allocated_cores", 0);
  s.allocated_gpus = optional_or<std::vector<int>>(j, "allocated_gpus", {});
  if (auto it = j.find("numa_node"); it != j.end() && it->is_number_integer()) s.numa_node = it->get<int>();
  s.vm_ip = required<std::string>(j, "vm_ip");
  s.tap_device = required<std::string>(j, "tap_device");
  s.mac_address = optional_or<std::string>(j, "mac_address", "");
  s.gpu_pci_addresses = optional_or<std::vector<std::string>>(j, "gpu_pci_addresses", {});
  s.network_mode = optional_or<std::string>(j, "network_mode", "standard");
  s.bridge_name = optional_or<std::string>(j, "bridge_name", "");
  s.gateway = optional_or<std::string>(j, "gateway", "");
  s.prefix_len = optional_or<int>(j, "prefix_len", 24);
  if (auto it = j.find("ssh_port"); it != j.end() && !it->is_null()) s.ssh_port = optional_or<int>(j, "ssh_port", 0);
  if (auto it = j.find("overlay_token"); it != j.end() && it->is_string()) s.overlay_token = it->get<std::string>();
  return s;
}

}  // namespace kr::vm
