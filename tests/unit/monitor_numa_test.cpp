// NUMA topology from sysfs in upstream's numactl-derived shape.
#include "source_dir.hpp"
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "monitor/numa.hpp"

namespace fs = std::filesystem;
using namespace kr::monitor;
using nlohmann::json;

namespace {
fs::path fixture(const std::string& name) { return fs::path(kr_source_dir()) / "tests/fixtures" / name / "root"; }

std::vector<int> range(int lo, int hi) {  // [lo, hi]
  std::vector<int> v(hi - lo + 1);
  std::iota(v.begin(), v.end(), lo);
  return v;
}
}  // namespace

TEST(MonitorNuma, RecordedSingleNode) {
  auto topo = read_numa_topology(fixture("h100-node"));
  ASSERT_TRUE(topo);
  ASSERT_EQ(topo->size(), 1u);
  // MemTotal 4550128 kB -> numactl "size: 4443 MB" -> 4443 * 2^20.
  json expected = {{"0", {{"cores", range(0, 15)}, {"memory_bytes", 4658823168ull}}}};
  EXPECT_EQ(numa_topology_json(topo), expected);
}

TEST(MonitorNuma, TwoNodesAndMemoryOnlyNodeSkipped) {
  auto topo = read_numa_topology(fixture("monitor-numa2"));
  ASSERT_TRUE(topo);
  auto c0 = range(0, 7), c1 = range(8, 15);
  auto hi0 = range(16, 23), hi1 = range(24, 31);
  c0.insert(c0.end(), hi0.begin(), hi0.end());
  c1.insert(c1.end(), hi1.begin(), hi1.end());
  json expected = {{"0", {{"cores", c0}, {"memory_bytes", 67233644544ull}}},
                   {"1", {{"cores", c1}, {"memory_bytes", 67642589184ull}}}};
  EXPECT_EQ(numa_topology_json(topo), expected);
  EXPECT_EQ(format_cpu_list((*topo)[0].cores), "0-7,16-23");
  EXPECT_EQ(format_cpu_list((*topo)[1].cores), "8-15,24-31");
}

TEST(MonitorNuma, AbsentDirectoryIsNull) {
  auto topo = read_numa_topology("/nonexistent-root");
  EXPECT_FALSE(topo);
  EXPECT_TRUE(numa_topology_json(topo).is_null());
}

TEST(MonitorNuma, CpuListParsing) {
  EXPECT_EQ(parse_cpu_list("0-3,8-9\n"), (std::vector<int>{0, 1, 2, 3, 8, 9}));
  EXPECT_EQ(parse_cpu_list("5"), (std::vector<int>{5}));
  EXPECT_TRUE(parse_cpu_list("").empty());
  EXPECT_TRUE(parse_cpu_list("\n").empty());
  EXPECT_EQ(parse_cpu_list("0-3,2-5"), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(parse_cpu_list("a-b,3,7-2"), (std::vector<int>{3}));
  EXPECT_EQ(format_cpu_list({}), "");
  EXPECT_EQ(format_cpu_list({0, 2, 3, 4, 9}), "0,2-4,9");
}

TEST(MonitorNuma, LiveSystemShape) {
  auto j = numa_topology_json(read_numa_topology("/"));
  if (j.is_null()) GTEST_SKIP() << "no NUMA sysfs here";
  for (auto& [id, node] : j.items()) {
    EXPECT_FALSE(node["cores"].empty()) << id;
    EXPECT_TRUE(node.contains("memory_bytes"));
  }
}
