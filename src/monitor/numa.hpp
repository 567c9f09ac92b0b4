// NUMA topology from sysfs (decisions.md "NUMA": read /sys/devices/system/node
// whether or not NUMACTL_PATH is set; report upstream's numactl-derived shape,
// protocol.md §1.2.3 / execution.md §8.4).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kr::monitor {

struct NumaNode {
  int id = 0;
  std::vector<int> cores;                    // ascending
  std::optional<std::uint64_t> memory_bytes; // whole MiB, as `numactl -H` reports
};

// Nodes with at least one CPU, ascending id. nullopt when the node directory
// is missing or holds no node with CPUs (upstream: topology null).
//
// memory_bytes = floor(MemTotal_kB / 1024) × 2^20: numactl prints
// "node N size: <MemTotal bytes / 2^20> MB" (integer division) and upstream
// multiplies that back by 2^20, so this equals what upstream sends.
std::optional<std::vector<NumaNode>> read_numa_topology(const std::filesystem::path& root = "/");

// {"<id>": {"cores": [...], "memory_bytes": n|null}, ...} or null.
nlohmann::json numa_topology_json(const std::optional<std::vector<NumaNode>>& topology);

// Kernel cpulist format ("0-7,16-23", "" = none) -> ascending CPU numbers.
// Malformed pieces are skipped.
std::vector<int> parse_cpu_list(std::string_view list);

// Inverse of parse_cpu_list for sorted input ("0-7,16-23"); usable as a
// Docker CpusetCpus value.
std::string format_cpu_list(const std::vector<int>& cpus);

}  // namespace kr::monitor
