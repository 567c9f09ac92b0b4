// Tarball choice, image `Created` parsing and the sync decision
// (execution.md §1.3.2, protocol.md A.3, D-NOTAR, D-TIMESTAMP).
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "tasks/image_source.hpp"

namespace fs = std::filesystem;
using kr::tasks::decide_sync;
using kr::tasks::newest_tarball;
using kr::tasks::parse_docker_created;
using kr::tasks::SyncAction;
using kr::tasks::SyncDecision;
using kr::tasks::Tarball;
using kr::tasks::tarball_timestamp;

namespace {

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("kr-tasks-tar-" + std::to_string(std::random_device{}()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void touch(const std::string& name) const { std::ofstream(path_ / name) << "x"; }

 private:
  fs::path path_;
};

}  // namespace

TEST(TaskImageSource, TarballNamePattern) {
  EXPECT_EQ(tarball_timestamp("env-1700000000.tar", "env"), 1700000000);
  EXPECT_EQ(tarball_timestamp("env-0007.tar", "env"), 7);
  EXPECT_EQ(tarball_timestamp("myenv-5.tar", "MyEnv"), 5);    // name lower-cased
  EXPECT_EQ(tarball_timestamp("my.env-5.tar", "my.env"), 5);  // '.' is literal (re.escape)
  EXPECT_EQ(tarball_timestamp("myxenv-5.tar", "my.env"), std::nullopt);
  EXPECT_EQ(tarball_timestamp("env-5.tar\n", "env"), 5);  // Python's `$`
  for (const char* decoy : {"Env-1.tar", "env-1.tar.gz", "env-x.tar", "envy-5.tar", "env-.tar", "env-1.TAR",
                            "env-1.tar\n\n", "xenv-1.tar", "env-1-2.tar", "env-+1.tar", "env--1.tar", "env-1",
                            "env-99999999999999999999.tar"})
    EXPECT_EQ(tarball_timestamp(decoy, "env"), std::nullopt) << decoy;
}

TEST(TaskImageSource, NewestTarballInDirectory) {
  TempDir d;
  for (const char* name : {"env-100.tar", "env-300.tar", "env-200.tar", "Env-999.tar", "env-999.tar.gz", "env-x.tar",
                           "envy-5000.tar", "other-4000.tar"})
    d.touch(name);
  fs::create_directories(d.path() / "sub");
  d.touch("sub/env-9000.tar");  // not recursive
  auto t = newest_tarball(d.path(), "env");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Tarball{d.path() / "env-300.tar", 300}));

  EXPECT_EQ(newest_tarball(d.path(), "ENV")->timestamp, 300);
  EXPECT_EQ(newest_tarball(d.path(), "envy")->timestamp, 5000);
  EXPECT_EQ(newest_tarball(d.path(), "missing"), std::nullopt);
  EXPECT_EQ(newest_tarball(d.path() / "nope", "env"), std::nullopt);
  EXPECT_EQ(newest_tarball(d.path() / "env-100.tar", "env"), std::nullopt);  // a file, not a directory

  // Equal timestamps: the smaller name wins, whatever the listing order.
  d.touch("env-0300.tar");
  EXPECT_EQ(newest_tarball(d.path(), "env")->path, d.path() / "env-0300.tar");
}

TEST(TaskImageSource, DockerCreatedTimestamps) {
  // Values checked against int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()).
  EXPECT_EQ(parse_docker_created("2024-05-01T12:34:56.123456789Z"), 1714566896);
  EXPECT_EQ(parse_docker_created("2024-05-01T12:34:56Z"), 1714566896);
  EXPECT_EQ(parse_docker_created("2024-05-01T12:34:56.999999999Z"), 1714566896);  // truncated, not rounded
  EXPECT_EQ(parse_docker_created("2024-05-01T14:34:56+02:00"), 1714566896);
  EXPECT_EQ(parse_docker_created("2024-05-01T10:34:56.5-0200"), 1714566896);
  EXPECT_EQ(parse_docker_created("2024-02-29T00:00:00-01:30"), 1709170200);
  EXPECT_EQ(parse_docker_created("2024-05-01 12:34:56.1+00:00"), 1714566896);
  EXPECT_EQ(parse_docker_created("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_docker_created("1969-12-31T23:59:59.5Z"), 0);  // int() truncates toward zero
  EXPECT_EQ(parse_docker_created("1969-12-31T23:59:59Z"), -1);
  EXPECT_EQ(parse_docker_created("0001-01-01T00:00:00Z"), -62135596800);  // images built with a zero date
  EXPECT_EQ(parse_docker_created("2024-05-01"), 1714521600);
  EXPECT_EQ(parse_docker_created("2024-05-01T12"), 1714564800);
  EXPECT_EQ(parse_docker_created("2024-05-01X12:34:56,5Z"), 1714566896);
  EXPECT_EQ(parse_docker_created("2024-05-01T12:34:56.Z"), 1714566896);
  for (const char* bad : {"", "garbage", "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-05-01T24:00:00Z",
                          "2024-05-01T12:34:56Zjunk", "2024-05-01T12:34:56+2", "2024-05-01T1",
                          "0000-01-01T00:00:00Z"})
    EXPECT_EQ(parse_docker_created(bad), std::nullopt) << bad;
}

TEST(TaskImageSource, SyncDecision) {
  const Tarball t{"/tars/env-200.tar", 200};
  EXPECT_EQ(decide_sync(std::nullopt, std::nullopt, false), (SyncDecision{SyncAction::NoSource, std::nullopt}));
  EXPECT_EQ(decide_sync(100, std::nullopt, true), (SyncDecision{SyncAction::UpToDate, std::nullopt}));
  EXPECT_EQ(decide_sync(std::nullopt, std::nullopt, true), (SyncDecision{SyncAction::UpToDate, std::nullopt}));
  EXPECT_EQ(decide_sync(std::nullopt, t, false), (SyncDecision{SyncAction::Load, t}));
  EXPECT_EQ(decide_sync(std::nullopt, t, true), (SyncDecision{SyncAction::Load, t}));  // Created unparsable
  EXPECT_EQ(decide_sync(199, t, true), (SyncDecision{SyncAction::Load, t}));
  EXPECT_EQ(decide_sync(200, t, true), (SyncDecision{SyncAction::UpToDate, std::nullopt}));  // strictly newer only
  EXPECT_EQ(decide_sync(201, t, true), (SyncDecision{SyncAction::UpToDate, std::nullopt}));
}
