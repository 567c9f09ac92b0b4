// /proc/stat, /proc/meminfo and CPU-count readers against the recorded H100
// node and synthetic inputs (psutil semantics).
#include "source_dir.hpp"
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "monitor_test_util.hpp"
#include "monitor/cpu_memory.hpp"

namespace fs = std::filesystem;
using namespace kr::monitor;

namespace {

fs::path fixture(const std::string& name) { return fs::path(kr_source_dir()) / "tests/fixtures" / name; }

using kr::monitor::testing::TempTree;

CpuTimes h100_times() {
  CpuTimes t;
  t.user = 73; t.nice = 0; t.system = 486; t.idle = 39377; t.iowait = 103;
  t.irq = 0; t.softirq = 15; t.steal = 2; t.guest = 0; t.guest_nice = 0;
  t.fields = 10;
  return t;
}

}  // namespace

TEST(MonitorCpu, ParsesRecordedProcStat) {
  auto t = read_cpu_times(fixture("h100-node/root"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->fields, 10);
  EXPECT_EQ(t->user, 73u);
  EXPECT_EQ(t->system, 486u);
  EXPECT_EQ(t->idle, 39377u);
  EXPECT_EQ(t->iowait, 103u);
  EXPECT_EQ(t->softirq, 15u);
  EXPECT_EQ(t->steal, 2u);
}

TEST(MonitorCpu, ParsesOldKernelLineAndRejectsGarbage) {
  auto t = parse_cpu_times("cpu  10 20 30 40 50 60 70\ncpu0 1 2 3 4 5 6 7\n");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->fields, 7);
  EXPECT_EQ(t->softirq, 70u);
  EXPECT_EQ(t->steal, 0u);
  EXPECT_FALSE(parse_cpu_times("cpu0 1 2 3 4\n"));
  EXPECT_FALSE(parse_cpu_times("cpu  1 x 3 4\n"));
  EXPECT_FALSE(parse_cpu_times(""));
}

TEST(MonitorCpu, PercentBusyOverTotal) {
  CpuTimes a = h100_times(), b = a;
  b.user += 3; b.system += 1; b.idle += 11; b.iowait += 1;  // busy 4 of 16
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, b, 100), 25.0);
}

TEST(MonitorCpu, PercentMatchesPsutilFloatRounding) {
  // Exact arithmetic would give 12.25 -> 12.2 (ties to even); psutil works on
  // ticks/CLK_TCK floats, lands on 12.250000000000034 and reports 12.3.
  CpuTimes a = h100_times(), b = a;
  b.user += 49; b.idle += 351;
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, b, 100), 12.3);
  b = a;
  b.user += 1; b.idle += 15;  // psutil: 6.249999999998673 -> 6.2
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, b, 100), 6.2);
}

TEST(MonitorCpu, GuestIsNotCountedTwiceAndIowaitIsIdle) {
  CpuTimes a = h100_times(), b = a;
  b.user += 50; b.guest += 50;  // guest time is part of user
  b.idle += 30; b.iowait += 20;
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, b, 100), 50.0);
}

TEST(MonitorCpu, NoElapsedTimeAndBackwardsCounters) {
  CpuTimes a = h100_times();
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, a, 100), 0.0);
  CpuTimes b = a;
  b.idle -= 100;  // counters going backwards are clamped at 0
  b.user += 10;
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, b, 100), 100.0);
  CpuTimes c = a;
  c.guest += 10;  // guest alone is not busy time of its own (it is inside user)
  c.idle += 10;
  EXPECT_DOUBLE_EQ(cpu_percent_between(a, c, 100), 0.0);
}

TEST(MonitorCpu, SamplerMeasuresSinceConstructionThenSincePreviousCall) {
  TempTree t;
  t.write("proc/stat", "cpu  100 0 0 900 0 0 0 0 0 0\n");
  CpuSampler sampler(t.dir);  // baseline, like psutil's import-time sample
  t.write("proc/stat", "cpu  150 0 0 950 0 0 0 0 0 0\n");
  EXPECT_DOUBLE_EQ(sampler.sample(), 50.0);
  EXPECT_DOUBLE_EQ(sampler.sample(), 0.0);  // nothing moved since
  t.write("proc/stat", "cpu  160 0 0 1040 0 0 0 0 0 0\n");
  EXPECT_DOUBLE_EQ(sampler.sample(), 10.0);
}

TEST(MonitorCpu, SamplerOnRecordedNodeAndWithoutProcStat) {
  CpuSampler recorded(fixture("h100-node/root"));
  EXPECT_DOUBLE_EQ(recorded.sample(), 0.0);  // psutil also recorded 0.0
  TempTree t;
  CpuSampler missing(t.dir);
  EXPECT_DOUBLE_EQ(missing.sample(), 0.0);
  t.write("proc/stat", "cpu  1 0 0 9 0 0 0 0 0 0\n");
  EXPECT_DOUBLE_EQ(missing.sample(), 0.0);  // first readable sample is its own baseline
}

TEST(MonitorCpu, LiveSamplerIsInRange) {
  CpuSampler live;
  double v = live.sample();
  EXPECT_GE(v, 0.0);
  EXPECT_LE(v, 100.0);
}

TEST(MonitorMemory, RecordedNodeMeminfo) {
  auto m = read_memory_info(fixture("h100-node/root"));
  ASSERT_TRUE(m);
  auto expected = nlohmann::json::parse(std::ifstream(fixture("h100-node/upstream-style.json")));
  const auto& vm = expected["psutil"]["virtual_memory"];
  // The psutil snapshot was taken a moment apart from meminfo: total and the
  // rounded percent agree, the rest drifts.
  EXPECT_EQ(m->total, vm["total"].get<std::uint64_t>());
  EXPECT_DOUBLE_EQ(m->percent, vm["percent"].get<double>());
  EXPECT_EQ(m->available, 131479128ull * 1024);
  EXPECT_EQ(m->free, 130725800ull * 1024);
  EXPECT_EQ(m->buffers, 13396ull * 1024);
  EXPECT_EQ(m->cached, (948216ull + 11548) * 1024);
  EXPECT_EQ(m->used, (131981020ull - 131479128) * 1024);
  EXPECT_EQ(m->used_legacy, (131981020ull - 130725800 - 13396 - 948216 - 11548) * 1024);
}

TEST(MonitorMemory, ReproducesRecordedPsutilSnapshot) {
  // Feed psutil's own snapshot back as meminfo: `used` must come out as the
  // recorded value (psutil >= 7.1: total - available); the pre-7.1 formula
  // of protocol.md §1.3.2 does not reproduce it.
  auto expected = nlohmann::json::parse(std::ifstream(fixture("h100-node/upstream-style.json")));
  const auto& vm = expected["psutil"]["virtual_memory"];
  auto kb = [&](const char* k) { return std::to_string(vm[k].get<std::uint64_t>() / 1024); };
  std::string text = "MemTotal: " + kb("total") + " kB\nMemFree: " + kb("free") +
                     " kB\nMemAvailable: " + kb("available") + " kB\nBuffers: " + kb("buffers") +
                     " kB\nCached: " + kb("cached") + " kB\nSReclaimable: 0 kB\n";
  auto m = parse_meminfo(text);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->total, vm["total"].get<std::uint64_t>());
  EXPECT_EQ(m->available, vm["available"].get<std::uint64_t>());
  EXPECT_EQ(m->used, vm["used"].get<std::uint64_t>());
  EXPECT_DOUBLE_EQ(m->percent, vm["percent"].get<double>());
  EXPECT_NE(m->used_legacy, vm["used"].get<std::uint64_t>());
}

TEST(MonitorMemory, FallbacksAndErrors) {
  // No MemAvailable (kernel < 3.14): free + cached.
  auto m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->available, 300u * 1024);
  EXPECT_DOUBLE_EQ(m->percent, 70.0);
  EXPECT_EQ(m->used_legacy, 650u * 1024);
  // Container-distorted numbers: negative legacy used -> total - free;
  // available above total -> free.
  m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 900 kB\nMemAvailable: 5000 kB\nCached: 800 kB\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->used_legacy, 100u * 1024);
  EXPECT_EQ(m->available, 900u * 1024);
  EXPECT_FALSE(parse_meminfo("MemFree: 1 kB\n"));
  EXPECT_FALSE(read_memory_info("/nonexistent-root"));
}

TEST(MonitorCpuCount, RecordedTreesAndFallback) {
  EXPECT_EQ(online_cpu_count(fixture("h100-node/root")), 16);  // cpuN lines of /proc/stat
  EXPECT_EQ(online_cpu_count(fixture("monitor-numa2/root")), 32);  // sys/devices/system/cpu/online
  TempTree empty;
  EXPECT_EQ(online_cpu_count(empty.dir), 4);
  EXPECT_EQ(online_cpu_count("/"), static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
}
