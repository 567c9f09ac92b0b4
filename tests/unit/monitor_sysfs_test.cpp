// Monitor helpers: Python-compatible rounding, recorded-symlink stand-ins.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "monitor/sysfs.hpp"

namespace fs = std::filesystem;
using namespace kr::monitor::detail;

TEST(MonitorSysfs, RoundsLikePython) {
  // Expected values from CPython's round(x, 1).
  const std::pair<double, double> cases[] = {
      {0.05, 0.1}, {0.15, 0.1}, {0.25, 0.2}, {0.35, 0.3}, {0.45, 0.5}, {12.25, 12.2},
      {99.95, 100.0}, {0.4052, 0.4}, {33.333333, 33.3}, {1e-9, 0.0}, {2.675, 2.7}};
  for (auto [x, r] : cases) EXPECT_DOUBLE_EQ(round_1dp(x), r) << x;
}

TEST(MonitorSysfs, UnderRootAndParseInt) {
  EXPECT_EQ(under("/", "/proc/stat"), fs::path("/proc/stat"));
  EXPECT_EQ(under("/tmp/x", "/proc/stat"), fs::path("/tmp/x/proc/stat"));
  EXPECT_EQ(parse_int(" 42\n"), 42);
  EXPECT_EQ(parse_int("-1"), -1);
  EXPECT_FALSE(parse_int(""));
  EXPECT_FALSE(parse_int("12a"));
}

TEST(MonitorSysfs, LinksAndStandIns) {
  std::string tmpl = (fs::temp_directory_path() / "kr-monitor-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  fs::create_directories(dir / "dev");
  fs::create_symlink("../../../kernel/iommu_groups/7", dir / "dev/iommu_group");
  std::ofstream(dir / "dev/_driver_link") << "../../../bus/pci/drivers/nvidia\n";
  std::ofstream(dir / "dev/subsystem_link") << "../../../bus/pci\n";
  std::ofstream(dir / "dev/class") << "0x030200\n";

  EXPECT_EQ(read_link(dir / "dev", "iommu_group"), fs::path("../../../kernel/iommu_groups/7"));
  EXPECT_EQ(read_link(dir / "dev", "driver"), fs::path("../../../bus/pci/drivers/nvidia"));
  EXPECT_EQ(read_link(dir / "dev", "subsystem"), fs::path("../../../bus/pci"));
  EXPECT_FALSE(read_link(dir / "dev", "class"));
  EXPECT_FALSE(read_link(dir / "dev", "missing"));

  const std::vector<std::string> expected = {"class", "driver", "iommu_group", "subsystem"};
  EXPECT_EQ(list_entries(dir / "dev"), expected);
  EXPECT_TRUE(list_entries(dir / "nope").empty());
  fs::remove_all(dir);
}

TEST(MonitorSysfs, ReadsProcFilesCompletely) {
  auto self = read_small_file("/proc/self/status");
  ASSERT_TRUE(self);
  EXPECT_NE(self->find("VmRSS"), std::string::npos);
  auto capped = read_small_file("/proc/self/status", 10);
  ASSERT_TRUE(capped);
  EXPECT_EQ(capped->size(), 10u);
  EXPECT_FALSE(read_small_file("/nonexistent/file"));
}
