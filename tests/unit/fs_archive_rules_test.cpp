#include <gtest/gtest.h>

#include "fs/archive_rules.hpp"

using namespace kr::fs;

TEST(ArchiveRules, OnlyRootContainersUseTheArchiveApi) {
  for (const char* u : {"", "root", "0", "0:0", "root:root", "root:0", "0:"}) EXPECT_TRUE(user_is_root(u)) << u;
  for (const char* u : {"1000", "nobody", "root:users", "0:100", "app:0", "rootx"}) EXPECT_FALSE(user_is_root(u)) << u;
  EXPECT_FALSE(archive_matches_exec_view("1000", {}, {}, "/tmp/a"));
  EXPECT_TRUE(archive_matches_exec_view("", {}, {}, "/tmp/a"));
}

TEST(ArchiveRules, TmpfsMountsAndMountPointsUseTheExec) {
  const std::vector<std::string> tmpfs = {"/scratch", "/run/"};
  const std::vector<std::string> mounts = {"/shared", "/data/file.txt"};
  EXPECT_FALSE(archive_matches_exec_view("", tmpfs, mounts, "/scratch"));
  EXPECT_FALSE(archive_matches_exec_view("", tmpfs, mounts, "/scratch/a/b"));
  EXPECT_FALSE(archive_matches_exec_view("", tmpfs, mounts, "//scratch/a"));
  EXPECT_FALSE(archive_matches_exec_view("", tmpfs, mounts, "/run/x"));
  EXPECT_TRUE(archive_matches_exec_view("", tmpfs, mounts, "/scratchpad/a"));
  // a bind-mounted file or directory itself; files inside a bind mount are fine
  EXPECT_FALSE(archive_matches_exec_view("", tmpfs, mounts, "/data/file.txt"));
  EXPECT_FALSE(archive_matches_exec_view("", tmpfs, mounts, "/shared"));
  EXPECT_TRUE(archive_matches_exec_view("", tmpfs, mounts, "/shared/out.bin"));
  for (const char* f : {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "//etc/hosts"})
    EXPECT_FALSE(archive_matches_exec_view("", {}, {}, f)) << f;
  EXPECT_TRUE(archive_matches_exec_view("", {}, {}, "/etc/hosts.allow"));
  EXPECT_FALSE(archive_matches_exec_view("", {}, {}, "/"));
  EXPECT_FALSE(archive_matches_exec_view("", {"/"}, {}, "/tmp/a"));
}
