// The no-follow directory helper (issue 16): a symlink at any component is
// refused, runner-owned directories get their owner/mode reset, a sticky
// world-writable parent such as /tmp is fine, trees are copied and removed
// without following links.
#include "common/nofollow_dir.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "vm_test_util.hpp"

namespace kr {
namespace {

namespace fs = std::filesystem;
using vm::testing::TempDir;

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

const DirOwnership kOwner{::geteuid(), ::getegid(), 0755};

TEST(NoFollowDir, CreatesMissingComponentsAndOpensThem) {
  TempDir t;
  UniqueFd base = open_dir_nofollow(t.dir / "a" / "b", true);
  ASSERT_GE(base.get(), 0);
  UniqueFd leaf = open_owned_dirs(base.get(), {"42", "share"}, kOwner);
  ASSERT_GE(leaf.get(), 0);
  EXPECT_TRUE(fs::is_directory(t.dir / "a/b/42/share"));
  EXPECT_EQ(mode_of(t.dir / "a/b/42"), 0755u);
  EXPECT_EQ(mode_of(t.dir / "a/b/42/share"), 0755u);
  // The descriptor is the directory: a file made through it lands there.
  const int f = ::openat(leaf.get(), "x", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(f, 0);
  ::close(f);
  EXPECT_TRUE(fs::exists(t.dir / "a/b/42/share/x"));
}

TEST(NoFollowDir, MissingBaseWithoutCreateIsAnError) {
  TempDir t;
  EXPECT_THROW(open_dir_nofollow(t.dir / "nope", false), NoFollowError);
  EXPECT_THROW(open_dir_nofollow("relative/path", true), NoFollowError);
}

TEST(NoFollowDir, SymlinkAtEachOwnedComponentIsRefused) {
  TempDir t;
  fs::create_directories(t.dir / "victim");
  fs::create_directories(t.dir / "base");
  UniqueFd base = open_dir_nofollow(t.dir / "base", false);
  // At the first owned component.
  fs::create_directory_symlink(t.dir / "victim", t.dir / "base/42");
  try {
    open_owned_dirs(base.get(), {"42", "share"}, kOwner);
    FAIL() << "a symlink was followed";
  } catch (const NoFollowError& e) {
    EXPECT_NE(std::string(e.what()).find("symlink"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(t.dir / "victim/share"));
  // At the last one.
  fs::remove(t.dir / "base/42");
  fs::create_directories(t.dir / "base/42");
  fs::create_directory_symlink(t.dir / "victim", t.dir / "base/42/share");
  EXPECT_THROW(open_owned_dirs(base.get(), {"42", "share"}, kOwner), NoFollowError);
  // A dangling symlink is not "missing" either (mkdirat must not create its target).
  fs::remove(t.dir / "base/42/share");
  fs::create_symlink(t.dir / "victim/new", t.dir / "base/42/share");
  EXPECT_THROW(open_owned_dirs(base.get(), {"42", "share"}, kOwner), NoFollowError);
  EXPECT_FALSE(fs::exists(t.dir / "victim/new"));
  // A regular file where a directory belongs.
  fs::remove(t.dir / "base/42/share");
  t.write("base/42/share", "x");
  EXPECT_THROW(open_owned_dirs(base.get(), {"42", "share"}, kOwner), NoFollowError);
  EXPECT_THROW(open_owned_dirs(base.get(), {".."}, kOwner), NoFollowError);
  EXPECT_THROW(open_owned_dirs(base.get(), {"a/b"}, kOwner), NoFollowError);
}

TEST(NoFollowDir, SymlinkInTheBaseWalkIsNotFollowedAfterResolution) {
  TempDir t;
  // The operator's own symlink (resolved once) is honoured ...
  fs::create_directories(t.dir / "real");
  fs::create_directory_symlink(t.dir / "real", t.dir / "alias");
  UniqueFd ok = open_dir_nofollow(t.dir / "alias" / "inst", true);
  EXPECT_TRUE(fs::is_directory(t.dir / "real/inst"));
  // ... and a component that is a dangling link is refused, not created through.
  fs::create_symlink(t.dir / "elsewhere", t.dir / "real/dangling");
  EXPECT_THROW(open_dir_nofollow(t.dir / "real/dangling/x", true), NoFollowError);
  EXPECT_FALSE(fs::exists(t.dir / "elsewhere"));
}

TEST(NoFollowDir, WrongModeAndOwnerAreResetThroughTheDescriptor) {
  TempDir t;
  fs::create_directories(t.dir / "base/42/share");
  ASSERT_EQ(::chmod((t.dir / "base/42").c_str(), 0777), 0);
  ASSERT_EQ(::chmod((t.dir / "base/42/share").c_str(), 04777), 0);
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown((t.dir / "base/42/share").c_str(), 1234, 1234), 0);
  }
  UniqueFd base = open_dir_nofollow(t.dir / "base", false);
  std::vector<std::string> resets;
  UniqueFd leaf = open_owned_dirs(base.get(), {"42", "share"}, kOwner, &resets);
  EXPECT_EQ(mode_of(t.dir / "base/42"), 0755u);
  EXPECT_EQ(mode_of(t.dir / "base/42/share"), 0755u);
  struct stat st {};
  ASSERT_EQ(::stat((t.dir / "base/42/share").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_gid, ::getegid());
  ASSERT_GE(resets.size(), 2u);
  EXPECT_NE(resets[0].find("42: mode 0777 -> 0755"), std::string::npos) << resets[0];
  // Nothing to reset the second time.
  resets.clear();
  open_owned_dirs(base.get(), {"42", "share"}, kOwner, &resets);
  EXPECT_TRUE(resets.empty());
}

TEST(NoFollowDir, StickyWorldWritableParentIsAccepted) {
  TempDir t;
  fs::create_directories(t.dir / "tmp");
  ASSERT_EQ(::chmod((t.dir / "tmp").c_str(), 01777), 0);
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown((t.dir / "tmp").c_str(), 4321, 4321), 0);  // not ours, not root's
  }
  UniqueFd base = open_dir_nofollow(t.dir / "tmp" / "kohakuriver" / "vm-instances", true);
  UniqueFd leaf = open_owned_dirs(base.get(), {"7", "share"}, kOwner);
  EXPECT_EQ(mode_of(t.dir / "tmp"), 01777u);  // untouched
  EXPECT_TRUE(fs::is_directory(t.dir / "tmp/kohakuriver/vm-instances/7/share"));
}

TEST(NoFollowDir, CopyTreeKeepsLinksAsLinksAndSkipsSpecialFiles) {
  TempDir t;
  t.write("from/a.txt", "hello");
  t.write("from/sub/deep/b.txt", "world");
  ASSERT_EQ(::chmod((t.dir / "from/a.txt").c_str(), 04750), 0);
  t.write("secret/s.txt", "secret");
  fs::create_directory_symlink(t.dir / "secret", t.dir / "from/link-dir");
  fs::create_symlink(t.dir / "secret/s.txt", t.dir / "from/link-file");
  ASSERT_EQ(::mkfifo((t.dir / "from/fifo").c_str(), 0600), 0);
  fs::create_directories(t.dir / "to");
  t.write("to/a.txt", "kept");  // an existing name is not overwritten
  UniqueFd from(::open((t.dir / "from").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd to(::open((t.dir / "to").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const std::size_t skipped = copy_tree_nofollow(from.get(), to.get());
  EXPECT_EQ(skipped, 2u);  // the FIFO and the existing a.txt
  EXPECT_EQ(vm::testing::read_file(t.dir / "to/a.txt"), "kept");
  EXPECT_EQ(vm::testing::read_file(t.dir / "to/sub/deep/b.txt"), "world");
  EXPECT_TRUE(fs::is_symlink(t.dir / "to/link-dir"));
  EXPECT_EQ(fs::read_symlink(t.dir / "to/link-dir"), t.dir / "secret");
  EXPECT_TRUE(fs::is_symlink(t.dir / "to/link-file"));
  EXPECT_FALSE(fs::exists(t.dir / "to/fifo"));
  EXPECT_EQ(vm::testing::read_file(t.dir / "secret/s.txt"), "secret");

  // setuid is dropped on copy.
  fs::remove(t.dir / "to/a.txt");
  copy_tree_nofollow(from.get(), to.get());
  EXPECT_EQ(mode_of(t.dir / "to/a.txt"), 0750u);
}

TEST(NoFollowDir, RemoveTreeNeverFollowsLinks) {
  TempDir t;
  t.write("victim/keep.txt", "keep");
  t.write("old/x/y.txt", "gone");
  fs::create_directory_symlink(t.dir / "victim", t.dir / "old/link");
  fs::create_directory_symlink(t.dir / "victim", t.dir / "old/x/link");
  UniqueFd parent(::open(t.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_TRUE(remove_tree_nofollow(parent.get(), "old"));
  EXPECT_FALSE(fs::exists(t.dir / "old"));
  EXPECT_EQ(vm::testing::read_file(t.dir / "victim/keep.txt"), "keep");
  // A symlink as the named entry itself: only the link goes.
  fs::create_directory_symlink(t.dir / "victim", t.dir / "lnk");
  EXPECT_TRUE(remove_tree_nofollow(parent.get(), "lnk"));
  EXPECT_FALSE(fs::is_symlink(t.dir / "lnk"));
  EXPECT_TRUE(fs::exists(t.dir / "victim/keep.txt"));
  EXPECT_TRUE(remove_tree_nofollow(parent.get(), "missing"));
  EXPECT_FALSE(remove_tree_nofollow(parent.get(), ".."));
}

}  // namespace
}  // namespace kr
