// The per-heartbeat system metrics (protocol.md §1.3.2; execution.md §8.1):
// plain small procfs/sysfs reads only, no process spawning - cheap enough to
// run on the I/O thread every heartbeat.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include <nlohmann/json_fwd.hpp>

#include "monitor/cpu_memory.hpp"

namespace kr::monitor {

struct SystemMetrics {
  double cpu_percent = 0.0;
  double memory_percent = 0.0;
  std::int64_t memory_used_bytes = 0;   // MemoryInfo::used (total − available)
  std::int64_t memory_total_bytes = 0;
  std::optional<double> current_avg_temp;  // D-TEMP: all CPU sensors
  std::optional<double> current_max_temp;
};

// `cpu` holds the previous /proc/stat sample; keep one per process (it must
// be the same object every heartbeat). Unreadable /proc/meminfo -> memory
// values 0.
SystemMetrics collect_system_metrics(const std::filesystem::path& root, CpuSampler& cpu);

// Adds the six heartbeat keys (cpu_percent, memory_percent, memory_used_bytes,
// memory_total_bytes, current_avg_temp, current_max_temp; temps null when
// unknown) to `body`.
void add_system_metrics(nlohmann::json& body, const SystemMetrics& m);

}  // namespace kr::monitor
