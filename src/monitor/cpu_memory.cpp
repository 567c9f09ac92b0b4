#include "monitor/cpu_memory.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "monitor/numa.hpp"
#include "monitor/sysfs.hpp"

namespace kr::monitor {

namespace fs = std::filesystem;
using detail::under;

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

// Splits off the next whitespace-separated token of `line`.
std::string_view next_token(std::string_view& line) {
  while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
  std::size_t n = 0;
  while (n < line.size() && !is_space(line[n])) ++n;
  std::string_view tok = line.substr(0, n);
  line.remove_prefix(n);
  return tok;
}

std::string_view first_line(std::string_view text) {
  return text.substr(0, text.find('\n'));
}

}  // namespace

std::optional<CpuTimes> parse_cpu_times(std::string_view proc_stat) {
  std::string_view line = first_line(proc_stat);
  if (next_token(line) != "cpu") return std::nullopt;
  std::array<std::uint64_t, 10> v{};
  int n = 0;
  for (; n < 10; ++n) {
    std::string_view tok = next_token(line);
    if (tok.empty()) break;
    auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v[n]);
    if (ec != std::errc() || p != tok.data() + tok.size()) return std::nullopt;
  }
  if (n < 4) return std::nullopt;
  CpuTimes t;
  t.user = v[0]; t.nice = v[1]; t.system = v[2]; t.idle = v[3]; t.iowait = v[4];
  t.irq = v[5]; t.softirq = v[6]; t.steal = v[7]; t.guest = v[8]; t.guest_nice = v[9];
  t.fields = n;
  return t;
}

std::optional<CpuTimes> read_cpu_times(const fs::path& root) {
  // The aggregate line comes first; 4 KiB is plenty and skips the long
  // per-CPU and interrupt lines of big machines.
  auto text = detail::read_small_file(under(root, "/proc/stat"), 4096);
  if (!text) return std::nullopt;
  return parse_cpu_times(*text);
}

long clock_ticks_per_second() {
  long t = ::sysconf(_SC_CLK_TCK);
  return t > 0 ? t : 100;
}

double cpu_percent_between(const CpuTimes& before, const CpuTimes& after, long clock_ticks) {
  // Mirrors psutil's float arithmetic (ticks / CLK_TCK, deltas clamped at 0,
  // summed in field order) so the rounded result matches it exactly.
  const double hz = static_cast<double>(clock_ticks > 0 ? clock_ticks : 100);
  auto delta = [&](std::uint64_t a, std::uint64_t b) {
    return std::max(0.0, static_cast<double>(b) / hz - static_cast<double>(a) / hz);
  };
  const int n = std::min(before.fields, after.fields);
  const std::array<double, 10> d = {
      delta(before.user, after.user),       delta(before.nice, after.nice),
      delta(before.system, after.system),   delta(before.idle, after.idle),
      delta(before.iowait, after.iowait),   delta(before.irq, after.irq),
      delta(before.softirq, after.softirq), delta(before.steal, after.steal),
      delta(before.guest, after.guest),     delta(before.guest_nice, after.guest_nice)};
  double total = 0.0;
  for (int i = 0; i < n; ++i) total += d[i];
  // Guest time is already counted in user/nice.
  if (n > 8) total -= d[8];
  if (n > 9) total -= d[9];
  const double busy = total - d[3] - (n > 4 ? d[4] : 0.0);
  if (total == 0.0) return 0.0;
  const double pct = busy / total * 100.0;
  return detail::round_1dp(std::clamp(pct, 0.0, 100.0));
}

CpuSampler::CpuSampler(fs::path root) : root_(std::move(root)), last_(read_cpu_times(root_)) {}

double CpuSampler::sample() {
  auto now = read_cpu_times(root_);
  if (!now) return 0.0;
  CpuTimes before = last_.value_or(*now);
  last_ = now;
  return cpu_percent_between(before, *now);
}

std::optional<MemoryInfo> parse_meminfo(std::string_view text) {
  std::optional<std::uint64_t> total, free, available;
  std::uint64_t buffers = 0, cached = 0, sreclaimable = 0;
  while (!text.empty()) {
    std::string_view line = first_line(text);
    text.remove_prefix(std::min(text.size(), line.size() + 1));
    std::string_view key = next_token(line);
    std::string_view num = next_token(line);
    std::uint64_t kb = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), kb);
    if (ec != std::errc() || p != num.data() + num.size()) continue;
    const std::uint64_t bytes = kb * 1024;
    if (key == "MemTotal:") total = bytes;
    else if (key == "MemFree:") free = bytes;
    else if (key == "MemAvailable:") available = bytes;
    else if (key == "Buffers:") buffers = bytes;
    else if (key == "Cached:") cached = bytes;
    else if (key == "SReclaimable:") sreclaimable = bytes;
  }
  if (!total || !free) return std::nullopt;

  MemoryInfo m;
  m.total = *total;
  m.free = *free;
  m.buffers = buffers;
  m.cached = cached + sreclaimable;
  // Kernels before 3.14 lack MemAvailable and some report 0; psutil then
  // estimates from /proc/zoneinfo. We use its simple fallback, free + cached.
  m.available = (available && *available != 0) ? *available : m.free + cached;
  if (m.available > m.total) m.available = m.free;  // container-distorted values (psutil)

  const std::uint64_t deducted = m.free + m.buffers + m.cached;
  m.used_legacy = deducted <= m.total ? m.total - deducted : m.total - std::min(m.total, m.free);
  m.used = m.total - m.available;
  m.percent = m.total == 0 ? 0.0
                           : detail::round_1dp(static_cast<double>(m.total - m.available) /
                                               static_cast<double>(m.total) * 100.0);
  return m;
}

std::optional<MemoryInfo> read_memory_info(const fs::path& root) {
  auto text = detail::read_small_file(under(root, "/proc/meminfo"), 16 * 1024);
  if (!text) return std::nullopt;
  return parse_meminfo(*text);
}

int online_cpu_count(const fs::path& root) {
  long n = 0;
  if (root == fs::path("/")) {
    n = ::sysconf(_SC_NPROCESSORS_ONLN);
  } else if (auto online = detail::read_trimmed(under(root, "/sys/devices/system/cpu/online"))) {
    n = static_cast<long>(parse_cpu_list(*online).size());
  } else if (auto stat = detail::read_small_file(under(root, "/proc/stat"), 1 << 20)) {
    std::string_view text = *stat;
    while (!text.empty()) {
      std::string_view line = first_line(text);
      text.remove_prefix(std::min(text.size(), line.size() + 1));
      if (line.size() > 3 && line.starts_with("cpu") && line[3] >= '0' && line[3] <= '9') ++n;
    }
  }
  return n > 0 ? static_cast<int>(n) : 4;
}

}  // namespace kr::monitor
