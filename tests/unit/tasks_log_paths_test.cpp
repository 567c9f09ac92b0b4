// Log path translation (execution.md §1.5.1) and S-HOSTPATHS checks.
#include <gtest/gtest.h>

#include "tasks/log_paths.hpp"

using kr::tasks::check_log_path;
using kr::tasks::lexically_normal_path;
using kr::tasks::logs_dir;
using kr::tasks::translate_log_path;

TEST(TaskLogPaths, LogsDirIsPythonJoin) {
  EXPECT_EQ(logs_dir("/mnt/cluster-share"), "/mnt/cluster-share/logs");
  EXPECT_EQ(logs_dir("/mnt/cluster-share/"), "/mnt/cluster-share/logs");
  EXPECT_EQ(logs_dir(""), "logs");
}

TEST(TaskLogPaths, TranslateReplacesFirstOccurrence) {
  const std::string s = "/mnt/cluster-share";
  EXPECT_EQ(translate_log_path("/mnt/cluster-share/logs/7/stdout.log", s), "/kohakuriver-logs/7/stdout.log");
  EXPECT_EQ(translate_log_path("/mnt/cluster-share/logs/7/stdout.log", s + "/"), "/kohakuriver-logs/7/stdout.log");
  // Anywhere in the string, only once.
  EXPECT_EQ(translate_log_path("/x/mnt/cluster-share/logs/mnt/cluster-share/logs/a", s),
            "/x/kohakuriver-logs/mnt/cluster-share/logs/a");
  // A host with another SHARED_DIR: left untouched (upstream quirk).
  EXPECT_EQ(translate_log_path("/cluster/logs/7/stdout.log", s), "/cluster/logs/7/stdout.log");
  // Plain substring match, as Python's str.replace.
  EXPECT_EQ(translate_log_path("/mnt/cluster-share/logsX/a", s), "/kohakuriver-logsX/a");
}

TEST(TaskLogPaths, LexicalNormalisation) {
  EXPECT_EQ(lexically_normal_path("/a//b/./c/"), "/a/b/c");
  EXPECT_EQ(lexically_normal_path("//etc/passwd"), "/etc/passwd");
  EXPECT_EQ(lexically_normal_path("/a/b/../../../etc"), "/etc");
  EXPECT_EQ(lexically_normal_path("/.."), "/");
  EXPECT_EQ(lexically_normal_path("/"), "/");
  EXPECT_EQ(lexically_normal_path("a/../../b"), "../b");
  EXPECT_EQ(lexically_normal_path(""), ".");
}

TEST(TaskLogPaths, AcceptsPathsUnderLogs) {
  const std::string s = "/mnt/cluster-share";
  EXPECT_EQ(check_log_path("/mnt/cluster-share/logs/7/stdout.log", s), std::nullopt);
  EXPECT_EQ(check_log_path("/mnt/cluster-share//logs//7/./stdout.log", s), std::nullopt);
  EXPECT_EQ(check_log_path("/mnt/cluster-share/logs/7/../8/stderr.log", s), std::nullopt);
  EXPECT_EQ(check_log_path("/mnt/cluster-share/logs/7/stdout.log", "/mnt/cluster-share/"), std::nullopt);
  EXPECT_EQ(check_log_path("/mnt/cluster-share/logs/x", "/mnt//cluster-share"), std::nullopt);
}

TEST(TaskLogPaths, RejectsEscapes) {
  const std::string s = "/mnt/cluster-share";
  auto msg = check_log_path("/mnt/cluster-share/logs/../../../etc/x", s);
  ASSERT_TRUE(msg);
  EXPECT_EQ(*msg, "Log path '/mnt/cluster-share/logs/../../../etc/x' is not under /mnt/cluster-share/logs.");
  EXPECT_TRUE(check_log_path("/mnt/cluster-share/logs/..", s));
  EXPECT_TRUE(check_log_path("/mnt/cluster-share/logs", s));   // the directory itself is no file
  EXPECT_TRUE(check_log_path("/mnt/cluster-share/logs/", s));
  EXPECT_TRUE(check_log_path("/mnt/cluster-share/logsX/a", s));  // prefix, not a parent
  EXPECT_TRUE(check_log_path("/etc/cron.d/x", s));
  EXPECT_TRUE(check_log_path("//etc/x", s));
  auto rel = check_log_path("logs/7/stdout.log", s);
  ASSERT_TRUE(rel);
  EXPECT_EQ(*rel, "Log path 'logs/7/stdout.log' is not an absolute path.");
  EXPECT_TRUE(check_log_path("", s));
  EXPECT_EQ(check_log_path(std::string("/mnt/cluster-share/logs/a\0b", 28), s), "Log path contains a NUL byte.");
  EXPECT_TRUE(check_log_path("/x/logs/a", "relative"));
}
