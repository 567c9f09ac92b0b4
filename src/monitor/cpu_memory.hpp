// CPU utilisation (/proc/stat), memory (/proc/meminfo) and the online CPU
// count, with psutil's Linux semantics (protocol.md §1.2.1, §1.3.2;
// execution.md §8.1).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

namespace kr::monitor {

// The aggregate "cpu" line of /proc/stat, in clock ticks.
struct CpuTimes {
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0,
                softirq = 0, steal = 0, guest = 0, guest_nice = 0;
  int fields = 0;  // how many of the above the kernel reported (7..10)
};

std::optional<CpuTimes> parse_cpu_times(std::string_view proc_stat);
std::optional<CpuTimes> read_cpu_times(const std::filesystem::path& root);

// sysconf(_SC_CLK_TCK), 100 if unknown.
long clock_ticks_per_second();

// psutil.cpu_percent between two samples: every field delta clamped at 0,
// total = sum − guest − guest_nice, busy = total − idle − iowait; busy/total
// × 100 clamped to [0, 100] and rounded to one decimal; 0.0 if no time passed.
double cpu_percent_between(const CpuTimes& before, const CpuTimes& after,
                           long clock_ticks = clock_ticks_per_second());

// psutil.cpu_percent(interval=None): each call reports utilisation since the
// previous call. Construction takes the baseline (psutil takes it at import,
// i.e. process start), so the first sample covers the time since then and a
// sample taken right away is 0.0.
class CpuSampler {
 public:
  explicit CpuSampler(std::filesystem::path root = "/");
  double sample();

 private:
  std::filesystem::path root_;
  std::optional<CpuTimes> last_;
};

// /proc/meminfo, in bytes (kB × 1024).
struct MemoryInfo {
  std::uint64_t total = 0;
  std::uint64_t available = 0;  // MemAvailable (MemFree + Cached if absent or 0)
  std::uint64_t free = 0;
  std::uint64_t buffers = 0;
  std::uint64_t cached = 0;     // Cached + SReclaimable, as psutil/free report it
  // total − available: psutil >= 7.1 (what the recorded node's upstream sent).
  std::uint64_t used = 0;
  // total − free − buffers − cached, or total − free if negative: psutil
  // < 7.1 and the formula in protocol.md §1.3.2.
  std::uint64_t used_legacy = 0;
  double percent = 0.0;  // (total − available) / total × 100, one decimal
};

std::optional<MemoryInfo> parse_meminfo(std::string_view meminfo);
std::optional<MemoryInfo> read_memory_info(const std::filesystem::path& root);

// Online logical CPUs (psutil cpu_count()): sysconf(_SC_NPROCESSORS_ONLN) for
// the live root; for a recorded tree /sys/devices/system/cpu/online, else the
// cpuN lines of /proc/stat. 4 when unknown (upstream's default).
int online_cpu_count(const std::filesystem::path& root = "/");

}  // namespace kr::monitor
