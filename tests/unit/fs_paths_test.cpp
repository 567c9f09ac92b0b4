#include <gtest/gtest.h>

#include "fs/fs_paths.hpp"

using namespace kr::fs;

TEST(FsPaths, NormpathMatchesPython) {
  EXPECT_EQ(python_normpath(""), ".");
  EXPECT_EQ(python_normpath("/"), "/");
  EXPECT_EQ(python_normpath("//"), "//");
  EXPECT_EQ(python_normpath("///"), "/");
  EXPECT_EQ(python_normpath("//proc"), "//proc");
  EXPECT_EQ(python_normpath("///proc/1"), "/proc/1");
  EXPECT_EQ(python_normpath("/a/./b/../c/"), "/a/c");
  EXPECT_EQ(python_normpath("/../.."), "/");
  EXPECT_EQ(python_normpath("/a//b"), "/a/b");
  EXPECT_EQ(python_normpath("a/../../b"), "../b");
  EXPECT_EQ(python_normpath("/tmp/x y|z/ü"), "/tmp/x y|z/ü");
}

TEST(FsPaths, Dirname) {
  EXPECT_EQ(python_dirname("/a"), "/");
  EXPECT_EQ(python_dirname("/a/b"), "/a");
  EXPECT_EQ(python_dirname("/"), "/");
  EXPECT_EQ(python_dirname("//x"), "//");
  EXPECT_EQ(python_dirname("x"), "");
}

TEST(FsPaths, CheckPathUpstreamRules) {
  std::string n;
  EXPECT_EQ(check_path("", n).value(), "Path cannot be empty");
  EXPECT_EQ(check_path("tmp", n).value(), "Path must be absolute (start with /)");
  EXPECT_EQ(check_path("/proc", n).value(), "Access to /proc is forbidden");
  EXPECT_EQ(check_path("/sys/kernel", n).value(), "Access to /sys is forbidden");
  EXPECT_EQ(check_path("/dev/", n).value(), "Access to /dev is forbidden");
  EXPECT_FALSE(check_path("/procfs", n));
  EXPECT_EQ(n, "/procfs");
  EXPECT_FALSE(check_path("/tmp/../etc/./hosts", n));
  EXPECT_EQ(n, "/etc/hosts");
}

TEST(FsPaths, CheckPathRulingCollapsesSlashesAndDots) {
  std::string n;
  // Upstream let these through (normpath keeps two leading slashes).
  EXPECT_EQ(check_path("//proc/self/environ", n).value(), "Access to /proc is forbidden");
  EXPECT_EQ(check_path("//sys", n).value(), "Access to /sys is forbidden");
  EXPECT_EQ(check_path("///dev/sda", n).value(), "Access to /dev is forbidden");
  EXPECT_EQ(check_path("/tmp/../proc/1", n).value(), "Access to /proc is forbidden");
  EXPECT_EQ(check_path("//tmp/../../proc", n).value(), "Access to /proc is forbidden");
  EXPECT_EQ(check_path("/./dev//null", n).value(), "Access to /dev is forbidden");
  EXPECT_FALSE(check_path("//tmp", n));
  EXPECT_EQ(n, "//tmp");  // operated on as upstream computes it
}

TEST(FsPaths, DeleteTargets) {
  EXPECT_TRUE(check_delete_target("/", {}));
  EXPECT_TRUE(check_delete_target("//", {}));
  EXPECT_TRUE(check_delete_target("/shared", {}));
  EXPECT_TRUE(check_delete_target("/local_temp", {}));
  EXPECT_TRUE(check_delete_target("//shared", {}));
  EXPECT_TRUE(check_delete_target("/data/models", {"/data/models/"}));
  EXPECT_FALSE(check_delete_target("/shared/x", {}));
  EXPECT_FALSE(check_delete_target("/tmp", {"/data"}));
}

TEST(FsPaths, WatchPathSplitting) {
  EXPECT_EQ(split_watch_paths(""), (std::vector<std::string>{"/shared", "/local_temp"}));
  EXPECT_EQ(split_watch_paths(" , ,"), (std::vector<std::string>{"/shared", "/local_temp"}));
  EXPECT_EQ(split_watch_paths(" /a , /b,,"), (std::vector<std::string>{"/a", "/b"}));
}
