// The heartbeat's system metrics facade over recorded trees.
#include "source_dir.hpp"
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "monitor/system_metrics.hpp"

namespace fs = std::filesystem;
using namespace kr::monitor;
using nlohmann::json;

namespace {
fs::path fixture(const std::string& rel) { return fs::path(kr_source_dir()) / "tests/fixtures" / rel; }
}  // namespace

TEST(MonitorSystemMetrics, RecordedH100Node) {
  CpuSampler cpu(fixture("h100-node/root"));
  SystemMetrics m = collect_system_metrics(fixture("h100-node/root"), cpu);
  auto upstream = json::parse(std::ifstream(fixture("h100-node/upstream-style.json")))["psutil"];
  EXPECT_DOUBLE_EQ(m.cpu_percent, upstream["cpu_percent"].get<double>());
  EXPECT_DOUBLE_EQ(m.memory_percent, upstream["virtual_memory"]["percent"].get<double>());
  EXPECT_EQ(m.memory_total_bytes, upstream["virtual_memory"]["total"].get<std::int64_t>());
  EXPECT_EQ(m.memory_used_bytes, (131981020LL - 131479128LL) * 1024);
  EXPECT_FALSE(m.current_avg_temp);  // sensors_temperatures() was {}
  EXPECT_FALSE(m.current_max_temp);

  json body = json::object();
  add_system_metrics(body, m);
  EXPECT_EQ(body.size(), 6u);
  EXPECT_TRUE(body["current_avg_temp"].is_null());
  EXPECT_TRUE(body["current_max_temp"].is_null());
  EXPECT_TRUE(body["cpu_percent"].is_number_float());
  EXPECT_TRUE(body["memory_percent"].is_number_float());
  EXPECT_TRUE(body["memory_used_bytes"].is_number_integer());
  EXPECT_EQ(body["memory_total_bytes"], 135148564480LL);
}

TEST(MonitorSystemMetrics, TemperaturesAndMissingProc) {
  CpuSampler cpu(fixture("monitor-hwmon/root"));
  SystemMetrics m = collect_system_metrics(fixture("monitor-hwmon/root"), cpu);
  EXPECT_DOUBLE_EQ(m.cpu_percent, 0.0);
  EXPECT_EQ(m.memory_total_bytes, 0);
  ASSERT_TRUE(m.current_avg_temp && m.current_max_temp);
  json body;
  add_system_metrics(body, m);
  EXPECT_DOUBLE_EQ(body["current_avg_temp"].get<double>(), 47.0);
  EXPECT_DOUBLE_EQ(body["current_max_temp"].get<double>(), 52.0);
}

TEST(MonitorSystemMetrics, LiveSystem) {
  CpuSampler cpu;
  SystemMetrics m = collect_system_metrics("/", cpu);
  EXPECT_GT(m.memory_total_bytes, 0);
  EXPECT_GE(m.memory_used_bytes, 0);
  EXPECT_LE(m.memory_used_bytes, m.memory_total_bytes);
  EXPECT_GE(m.memory_percent, 0.0);
  EXPECT_LE(m.memory_percent, 100.0);
}
