// The VM's 9p share (issue 16, point 1): its place in the instance
// directory, the argv rewrite for VMs saved by older runners, the move of a
// legacy share without following symlinks, and the startup overlap check.
#include "vm/vm_share.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/nofollow_dir.hpp"
#include "vm/qemu_argv.hpp"
#include "vm_test_util.hpp"

namespace kr::vm {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::vector<std::string> upstream_argv(const std::string& local) {
  return {"qemu-system-x86_64", "-fsdev", "local,id=fs_shared,path=/mnt/share/shared_data,security_model=passthrough",
          "-device", "virtio-9p-pci,fsdev=fs_shared,mount_tag=kohaku_shared", "-fsdev",
          "local,id=fs_local,path=" + local + ",security_model=passthrough", "-device",
          "virtio-9p-pci,fsdev=fs_local,mount_tag=kohaku_local"};
}

TEST(VmShare, FindsAndRewritesTheLocalFsdevPath) {
  auto argv = upstream_argv("/tmp/kohakuriver/42");
  EXPECT_EQ(local_share_path(argv), "/tmp/kohakuriver/42");
  auto moved = with_local_share_path(argv, "/var/lib/kohakuriver/vm-instances/42/local_temp");
  EXPECT_EQ(moved[6], "local,id=fs_local,path=/var/lib/kohakuriver/vm-instances/42/local_temp,security_model=passthrough");
  EXPECT_EQ(moved[2], argv[2]);  // the shared_data share is not touched
  moved[6] = "local,id=fs_local,path=/x";  // path last
  EXPECT_EQ(local_share_path(moved), "/x");
  EXPECT_EQ(with_local_share_path(moved, "/y")[6], "local,id=fs_local,path=/y");
  const std::vector<std::string> none = {"qemu-system-x86_64", "-m", "64M"};
  EXPECT_EQ(local_share_path(none), std::nullopt);
  EXPECT_EQ(with_local_share_path(none, "/y"), none);
}

TEST(VmShare, OurArgvPutsTheShareInTheInstanceDirectory) {
  // What create_and_launch hands qemu_argv round-trips through the parser.
  QemuArgvSpec spec;
  spec.paths = vm_paths("/var/lib/kohakuriver/vm-instances", "/run/kohakuriver/vm", 42);
  spec.tap = "tap-1";
  spec.mac = "52:54:00:00:00:01";
  spec.shared_data_dir = "/mnt/share/shared_data";
  spec.local_dir = spec.paths.instance_dir / kLocalShareName;
  EXPECT_EQ(local_share_path(qemu_argv(spec)), "/var/lib/kohakuriver/vm-instances/42/local_temp");
}

TEST(VmShare, OverlapWithContainerMountsIsRefused) {
  const std::vector<NamedPath> reach = {{"LOCAL_TEMP_DIR", "/tmp/kohakuriver"},
                                        {"ADDITIONAL_MOUNTS entry '/data:/data'", "/data"}};
  EXPECT_EQ(overlap_error({"VM_INSTANCES_DIR", "/var/lib/kohakuriver/vm-instances"}, reach), std::nullopt);
  // Below, equal, above (a mount source inside the instances dir).
  auto below = overlap_error({"VM_INSTANCES_DIR", "/tmp/kohakuriver/vms"}, reach);
  ASSERT_TRUE(below);
  EXPECT_NE(below->find("VM_INSTANCES_DIR (/tmp/kohakuriver/vms) overlaps LOCAL_TEMP_DIR (/tmp/kohakuriver)"),
            std::string::npos) << *below;
  EXPECT_TRUE(overlap_error({"VM_INSTANCES_DIR", "/data/"}, reach));
  EXPECT_TRUE(overlap_error({"VM_INSTANCES_DIR", "/"}, reach));
  // A sibling with a common name prefix is not "below".
  EXPECT_EQ(overlap_error({"VM_INSTANCES_DIR", "/tmp/kohakuriver-vms"}, reach), std::nullopt);
  EXPECT_EQ(overlap_error({"VM_INSTANCES_DIR", "/database"}, reach), std::nullopt);
}

TEST(VmShare, ConfigCheckNamesTheSettings) {
  config::RunnerConfig cfg;
  cfg.local_temp_dir = "/tmp/kr-share-test-local";
  cfg.shared_dir = "/mnt/kr-share-test";
  cfg.vm_instances_dir = "/var/lib/kohakuriver/vm-instances";
  cfg.vm_images_dir = "/mnt/kr-share-test/vm-images";  // on the cluster share: fine
  cfg.vm_run_dir = "/run/kohakuriver/vm";
  EXPECT_EQ(vm_dirs_reach_error(cfg), "");
  cfg.vm_instances_dir = "/tmp/kr-share-test-local/vm";
  cfg.vm_images_dir = "/mnt/kr-share-test/shared_data/images";
  cfg.additional_mounts = {"/run/kohakuriver:/x:ro"};
  const std::string e = vm_dirs_reach_error(cfg);
  EXPECT_NE(e.find("VM_INSTANCES_DIR"), std::string::npos) << e;
  EXPECT_NE(e.find("VM_IMAGES_DIR"), std::string::npos) << e;
  EXPECT_NE(e.find("VM_RUN_DIR (/run/kohakuriver/vm) overlaps ADDITIONAL_MOUNTS entry '/run/kohakuriver:/x:ro'"),
            std::string::npos) << e;
  EXPECT_EQ(e.find("SHARED_DIR ("), std::string::npos) << e;
  // A mount that shows containers SHARED_DIR itself: they could swap shared_data.
  cfg = config::RunnerConfig{};
  cfg.local_temp_dir = "/tmp/kr-share-test-local";
  cfg.shared_dir = "/mnt/kr-share-test";
  cfg.additional_mounts = {"/mnt/kr-share-test/datasets:/datasets", "/mnt:/mnt"};
  const std::string e2 = vm_dirs_reach_error(cfg);
  EXPECT_NE(e2.find("SHARED_DIR (/mnt/kr-share-test) lies within ADDITIONAL_MOUNTS entry '/mnt:/mnt'"),
            std::string::npos) << e2;
  EXPECT_EQ(e2.find("datasets"), std::string::npos) << e2;
}

TEST(VmShare, PrepareMakesTheShareAndRefusesASymlink) {
  TempDir t;
  const fs::path share = prepare_vm_share(t.dir / "inst", 42);
  EXPECT_EQ(share, t.dir / "inst/42/local_temp");
  EXPECT_TRUE(fs::is_directory(share));
  // A guest chmod of its share root is undone at the next launch.
  ASSERT_EQ(::chmod(share.c_str(), 0777), 0);
  prepare_vm_share(t.dir / "inst", 42);
  struct stat st {};
  ASSERT_EQ(::stat(share.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  fs::remove(share);
  fs::create_directories(t.dir / "victim");
  fs::create_directory_symlink(t.dir / "victim", share);
  EXPECT_THROW(prepare_vm_share(t.dir / "inst", 42), NoFollowError);
}

TEST(VmShare, RelaunchMovesALegacyShareAndRewritesTheArgv) {
  TempDir t;
  t.write("local/42/data.txt", "mine");
  t.write("secret/s.txt", "secret");
  fs::create_directory_symlink(t.dir / "secret", t.dir / "local/42/escape");
  auto argv = upstream_argv((t.dir / "local/42").string());
  ASSERT_TRUE(move_share_for_relaunch(t.dir / "inst", t.dir / "local", 42, argv));
  const fs::path share = t.dir / "inst/42/local_temp";
  EXPECT_EQ(local_share_path(argv), share.string());
  EXPECT_EQ(testing::read_file(share / "data.txt"), "mine");
  EXPECT_TRUE(fs::is_symlink(share / "escape"));
  EXPECT_FALSE(fs::exists(t.dir / "local/42"));
  EXPECT_EQ(testing::read_file(t.dir / "secret/s.txt"), "secret");  // not removed through the link
  // Already in place: nothing to do.
  EXPECT_FALSE(move_share_for_relaunch(t.dir / "inst", t.dir / "local", 42, argv));
}

TEST(VmShare, RelaunchLeavesALegacySymlinkAlone) {
  TempDir t;
  t.write("victim/etc.txt", "host file");
  fs::create_directories(t.dir / "local");
  fs::create_directory_symlink(t.dir / "victim", t.dir / "local/42");
  auto argv = upstream_argv((t.dir / "local/42").string());
  ASSERT_TRUE(move_share_for_relaunch(t.dir / "inst", t.dir / "local", 42, argv));
  EXPECT_EQ(local_share_path(argv), (t.dir / "inst/42/local_temp").string());
  EXPECT_FALSE(fs::exists(t.dir / "inst/42/local_temp/etc.txt"));  // nothing copied from the target
  EXPECT_EQ(testing::read_file(t.dir / "victim/etc.txt"), "host file");
  EXPECT_TRUE(fs::is_symlink(t.dir / "local/42"));
  // Some other place (not the legacy one) is only rewritten, never touched.
  t.write("other/42/x", "x");
  argv = upstream_argv((t.dir / "other/42").string());
  ASSERT_TRUE(move_share_for_relaunch(t.dir / "inst", t.dir / "local", 43, argv));
  EXPECT_EQ(local_share_path(argv), (t.dir / "inst/43/local_temp").string());
  EXPECT_TRUE(fs::exists(t.dir / "other/42/x"));
}

}  // namespace
}  // namespace kr::vm
