// CPU temperature discovery (decision D-TEMP: all CPU sensors).
#include "source_dir.hpp"
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "monitor_test_util.hpp"
#include "monitor/temperature.hpp"

namespace fs = std::filesystem;
using namespace kr::monitor;

namespace {

fs::path fixture(const std::string& name) { return fs::path(kr_source_dir()) / "tests/fixtures" / name / "root"; }

using kr::monitor::testing::TempTree;

}  // namespace

TEST(MonitorTemperature, AllCoretempSensorsOfBothSockets) {
  auto t = read_cpu_temperatures(fixture("monitor-hwmon"));
  EXPECT_EQ(t.sensor_count, 7u);  // acpitz, nvme, pch excluded; empty reading skipped
  ASSERT_TRUE(t.average && t.max);
  EXPECT_DOUBLE_EQ(*t.average, 47.0);
  EXPECT_DOUBLE_EQ(*t.max, 52.0);
}

TEST(MonitorTemperature, ThermalZonesOnlyWithoutHwmon) {
  auto t = read_cpu_temperatures(fixture("monitor-thermal"));
  EXPECT_EQ(t.sensor_count, 2u);
  ASSERT_TRUE(t.average && t.max);
  EXPECT_DOUBLE_EQ(*t.average, 50.0);
  EXPECT_DOUBLE_EQ(*t.max, 51.0);
}

TEST(MonitorTemperature, RecordedNodeHasNoSensors) {
  auto t = read_cpu_temperatures(fixture("h100-node"));
  EXPECT_EQ(t.sensor_count, 0u);
  EXPECT_FALSE(t.average);
  EXPECT_FALSE(t.max);
}

TEST(MonitorTemperature, FallsBackToZonesWhenHwmonHasNoCpuChip) {
  TempTree t;
  t.write("sys/class/hwmon/hwmon0/name", "nvme\n");
  t.write("sys/class/hwmon/hwmon0/temp1_input", "40000\n");
  t.write("sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
  t.write("sys/class/thermal/thermal_zone0/temp", "61500\n");
  auto r = read_cpu_temperatures(t.dir);
  ASSERT_TRUE(r.average);
  EXPECT_DOUBLE_EQ(*r.average, 61.5);
  EXPECT_DOUBLE_EQ(*r.max, 61.5);
}

TEST(MonitorTemperature, OlderDeviceLayoutAndUnlinkedPlatformCoretemp) {
  TempTree t;
  // hwmon0: attributes under device/ (older kernels, psutil handles it too).
  t.write("sys/class/hwmon/hwmon0/device/name", "k10temp\n");
  t.write("sys/class/hwmon/hwmon0/device/temp1_input", "60000\n");
  t.write("sys/class/hwmon/hwmon0/device/temp1_label", "Tctl\n");
  // coretemp chip only reachable through the platform device.
  t.write("sys/devices/platform/coretemp.0/hwmon/hwmon5/name", "coretemp\n");
  t.write("sys/devices/platform/coretemp.0/hwmon/hwmon5/temp1_input", "40000\n");
  auto r = read_cpu_temperatures(t.dir);
  EXPECT_EQ(r.sensor_count, 2u);
  EXPECT_DOUBLE_EQ(*r.average, 50.0);
  EXPECT_DOUBLE_EQ(*r.max, 60.0);

  // The same chip linked from the class directory is counted once.
  t.write("sys/class/hwmon/hwmon5/name", "coretemp\n");
  t.write("sys/class/hwmon/hwmon5/temp1_input", "40000\n");
  EXPECT_EQ(read_cpu_temperatures(t.dir).sensor_count, 2u);
}

TEST(MonitorTemperature, SensorNameClassification) {
  for (const char* n : {"coretemp", "k10temp", "k8temp", "zenpower", "via_cputemp", "cpu_thermal",
                        "cpu-thermal", "cpu0_thermal", "soc_thermal", "CoreTemp\n"})
    EXPECT_TRUE(is_cpu_hwmon_name(n)) << n;
  for (const char* n : {"acpitz", "nvme", "drivetemp", "amdgpu", "nouveau", "pch_cannonlake",
                        "iwlwifi_1", "nct6798", ""})
    EXPECT_FALSE(is_cpu_hwmon_name(n)) << n;
  for (const char* z : {"x86_pkg_temp", "cpu-thermal", "cpu0-thermal", "soc-thermal"})
    EXPECT_TRUE(is_cpu_thermal_zone_type(z)) << z;
  for (const char* z : {"acpitz", "iwlwifi_1", "INT3400 Thermal", "pch_skylake"})
    EXPECT_FALSE(is_cpu_thermal_zone_type(z)) << z;
}

TEST(MonitorTemperature, LiveSystemDoesNotThrow) {
  auto t = read_cpu_temperatures("/");
  EXPECT_EQ(t.average.has_value(), t.sensor_count > 0);
}
