#include "monitor/system_metrics.hpp"

#include <nlohmann/json.hpp>

#include "monitor/temperature.hpp"

namespace kr::monitor {

SystemMetrics collect_system_metrics(const std::filesystem::path& root, CpuSampler& cpu) {
  SystemMetrics m;
  m.cpu_percent = cpu.sample();
  if (auto mem = read_memory_info(root)) {
    m.memory_percent = mem->percent;
    // psutil >= 7.1 semantics (total − available), which is what the upstream
    // runner reported on the recorded node; MemoryInfo::used_legacy holds the
    // older formula of protocol.md §1.3.2.
    m.memory_used_bytes = static_cast<std::int64_t>(mem->used);
    m.memory_total_bytes = static_cast<std::int64_t>(mem->total);
  }
  const CpuTemperatures t = read_cpu_temperatures(root);
  m.current_avg_temp = t.average;
  m.current_max_temp = t.max;
  return m;
}

void add_system_metrics(nlohmann::json& body, const SystemMetrics& m) {
  auto opt = [](const std::optional<double>& v) -> nlohmann::json {
    if (v) return *v;
    return nullptr;
  };
  body["cpu_percent"] = m.cpu_percent;
  body["memory_percent"] = m.memory_percent;
  body["memory_used_bytes"] = m.memory_used_bytes;
  body["memory_total_bytes"] = m.memory_total_bytes;
  body["current_avg_temp"] = opt(m.current_avg_temp);
  body["current_max_temp"] = opt(m.current_max_temp);
}

}  // namespace kr::monitor
