// doctor's cgroup check (issue 17 point 6): the controllers a v2 node lists
// in cgroup.controllers, the per-controller mounts of a v1 node, and the
// verdict when one the runner relies on is missing.
#include <gtest/gtest.h>

#include "cli/doctor.hpp"

using namespace kr::cli;

TEST(DoctorCgroup, ParsesV2ControllersFile) {
  // /sys/fs/cgroup/cgroup.controllers of the Debian 12 guest (kernel 6.1).
  auto c = parse_cgroup_controllers("cpuset cpu io memory hugetlb pids rdma misc\n");
  EXPECT_EQ(c, (std::set<std::string>{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}));
  EXPECT_TRUE(parse_cgroup_controllers("").empty());
  EXPECT_TRUE(parse_cgroup_controllers(" \n").empty());
}

TEST(DoctorCgroup, AllNeededControllersIsOk) {
  auto r = cgroup_controllers_result("cgroup v2 (unified hierarchy)",
                                     parse_cgroup_controllers("cpuset cpu io memory pids"), {"cpu", "cpuset", "memory"});
  EXPECT_EQ(r.status, CheckStatus::Ok);
  EXPECT_EQ(r.result, "cgroup v2 (unified hierarchy)");
  EXPECT_TRUE(r.fix.empty());
}

TEST(DoctorCgroup, MissingControllersAreNamedWithTheFix) {
  // e.g. a Raspberry Pi kernel without the memory controller.
  auto r = cgroup_controllers_result("cgroup v2 (unified hierarchy)", parse_cgroup_controllers("cpu io pids"),
                                     {"cpu", "cpuset", "memory"});
  EXPECT_EQ(r.status, CheckStatus::Warn);
  EXPECT_EQ(r.name, "cgroup");
  EXPECT_EQ(r.result, "cgroup v2 (unified hierarchy); controller(s) missing: cpuset, memory");
  EXPECT_NE(r.fix.find("limits"), std::string::npos);
  auto v1 = cgroup_controllers_result("cgroup v1", {"cpu", "cpuset", "memory"}, {"cpu", "cpuset", "freezer", "memory"});
  EXPECT_EQ(v1.status, CheckStatus::Warn);
  EXPECT_EQ(v1.result, "cgroup v1; controller(s) missing: freezer");
}

TEST(DoctorCgroup, ThisMachinesHierarchyIsRecognised) {
  // Whatever this machine runs (v1 here, v2 in scripts/cgroup-v2-guest.sh).
  auto r = check_cgroup("/sys/fs/cgroup");
  EXPECT_NE(r.result.find("cgroup v"), std::string::npos) << r.result;
  auto none = check_cgroup("/proc");
  EXPECT_EQ(none.status, CheckStatus::Warn);
  EXPECT_EQ(none.result, "/proc is not a cgroup mount");
}
