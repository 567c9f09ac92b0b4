// Real QEMU, no guest OS (vm.md §15.2 layer 2): the generated argv under TCG
// with SeaBIOS starts a daemonized QEMU whose pid file, /proc cmdline and
// QMP socket behave as the runner expects, and `quit` cleans up after it.
// Runs inside a private network namespace (`unshare -n`), so the TAP device
// QEMU creates never appears on this machine's network.
#include <gtest/gtest.h>

#include <algorithm>
#include <signal.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <functional>
#include <thread>

#include "vm/cloud_init.hpp"
#include "vm/process.hpp"
#include "vm/qemu_argv.hpp"
#include "vm/qemu_instance.hpp"
#include "vm/qmp_client.hpp"
#include "vm_test_util.hpp"

using namespace kr::vm;
using kr::vm::testing::read_file;
using kr::vm::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json qmp(const fs::path& socket, const std::string& command) {
  boost::asio::io_context io;
  auto fut = boost::asio::co_spawn(io, qmp_execute(socket, command, nullptr, std::chrono::seconds(10)),
                                   boost::asio::use_future);
  io.run();
  return fut.get();
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

struct SmokeVm {
  TempDir tmp;
  QemuSettings settings;
  LaunchRequest request;

  explicit SmokeVm(std::int64_t id) {
    const char* path_env = std::getenv("PATH");
    settings.path_env = path_env ? path_env : "";
    for (const char* tool : {"qemu-system-x86_64", "qemu-img", "unshare"})
      if (!find_program(tool, settings.path_env))
        ADD_FAILURE() << tool << " is required (scripts/install-deps.sh --test installs it)";
    settings.images_dir = tmp.dir / "images";
    settings.instances_dir = tmp.dir / "instances";
    settings.run_dir = tmp.dir / "run";
    settings.accel = Accel::Tcg;
    settings.cpu_model = resolve_cpu_model(Accel::Tcg, "");
    settings.launch_prefix = {"unshare", "-n"};  // test only: a network namespace of its own
    fs::create_directories(settings.images_dir);
    fs::create_directories(tmp.dir / "shared_data");
    // A blank 64 MiB base image: SeaBIOS finds nothing to boot, which is all
    // this test needs.
    auto r = run_process({"qemu-img", "create", "-q", "-f", "qcow2", (settings.images_dir / "blank.qcow2").string(), "64M"});
    EXPECT_EQ(r.exit_code, 0) << r.output;

    request.task_id = id;
    request.vcpus = 1;
    request.memory_mb = 64;
    request.image = "blank";
    request.tap = tap_name(id);
    request.mac = mac_address(id);
    request.shared_data_dir = tmp.dir / "shared_data";
    request.seed.task_id = id;
    request.seed.runner_url = "http://10.200.0.1:8001";
    request.seed.network = {"10.200.0.10", 24, "10.200.0.1", {"10.200.0.1"}, mac_address(id), std::nullopt};
  }
};

bool shutdown(const VmPaths& paths, pid_t pid, std::chrono::milliseconds grace) {
  boost::asio::io_context io;
  auto fut = boost::asio::co_spawn(io, shutdown_qemu(paths, pid, grace), boost::asio::use_future);
  io.run();
  return fut.get();
}

struct Reaper {
  pid_t pid;
  ~Reaper() {
    if (pid > 0 && pid_exists(pid)) ::kill(pid, SIGKILL);
  }
};

}  // namespace

TEST(QemuSmoke, TcgLaunchPidQmpAndQuit) {
  SmokeVm vm(4242);
  vm.request.disk_bytes = 128ULL << 20;  // grown from 64 MiB
  const LaunchedVm launched = create_and_launch(vm.settings, vm.request);
  Reaper reaper{launched.pid};
  const VmPaths& paths = launched.paths;

  EXPECT_EQ(verified_qemu_pid(paths), launched.pid);
  // Another instance's paths do not match this QEMU (V10/V11).
  EXPECT_FALSE(verified_qemu_pid(vm_paths(vm.settings.instances_dir, vm.settings.run_dir, 4243)));
  EXPECT_EQ(load_saved_argv(paths), launched.argv);
  EXPECT_EQ(launched.argv.front(), "qemu-system-x86_64");
  EXPECT_TRUE(fs::exists(paths.seed_iso));
  // The /local_temp share is made in the instance directory (issue 16).
  EXPECT_TRUE(fs::is_directory(paths.instance_dir / "local_temp"));
  EXPECT_NE(std::find(launched.argv.begin(), launched.argv.end(),
                      "local,id=fs_local,path=" + (paths.instance_dir / "local_temp").string() +
                          ",security_model=passthrough"),
            launched.argv.end());
  auto info = run_process({"qemu-img", "info", "-U", "--output=json", paths.root_disk.string()});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_EQ(json::parse(info.output)["virtual-size"], 128ULL << 20);

  ASSERT_TRUE(fs::exists(paths.qmp_socket));
  const json status = qmp(paths.qmp_socket, "query-status");
  EXPECT_EQ(status.value("status", ""), "running") << status.dump();
  EXPECT_THROW(qmp(paths.qmp_socket, "no-such-command"), QmpError);

  // A second launch for the same instance is refused while it runs.
  EXPECT_THROW(relaunch(vm.settings, 4242, launched.argv), VmLaunchError);

  EXPECT_EQ(qmp(paths.qmp_socket, "quit"), json::object());
  EXPECT_TRUE(wait_until([&] { return !pid_exists(launched.pid); }, std::chrono::seconds(20)));
  EXPECT_FALSE(fs::exists(paths.pid_file));  // a clean exit removes it

  // Restart path: the saved argv runs again with a new pid.
  const LaunchedVm again = relaunch(vm.settings, 4242, *load_saved_argv(paths));
  Reaper reaper2{again.pid};
  EXPECT_NE(again.pid, launched.pid);
  EXPECT_EQ(verified_qemu_pid(paths), again.pid);
  // No guest OS answers the ACPI button: shutdown falls back to SIGKILL and
  // cleans the pid file and socket it leaves behind.
  EXPECT_TRUE(shutdown(paths, again.pid, std::chrono::milliseconds(500)));
  EXPECT_FALSE(pid_exists(again.pid));
  EXPECT_FALSE(fs::exists(paths.pid_file));
  EXPECT_FALSE(fs::exists(paths.qmp_socket));
  EXPECT_TRUE(fs::exists(paths.root_disk));  // the disk stays
}

TEST(QemuSmoke, FailedLaunchLeavesNoPidOrSocket) {
  SmokeVm vm(4244);
  vm.request.tap = "tap-bad,name";  // refused before QEMU runs
  EXPECT_THROW(create_and_launch(vm.settings, vm.request), VmLaunchError);
  vm.request.tap = tap_name(4244);
  vm.settings.cpu_model = "no-such-cpu-model";  // QEMU itself fails
  try {
    create_and_launch(vm.settings, vm.request);
    FAIL() << "QEMU started with a bogus CPU model";
  } catch (const VmLaunchError& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("QEMU failed to start: ")) << e.what();
    EXPECT_NE(std::string(e.what()).find("no-such-cpu-model"), std::string::npos) << e.what();
  }
  const VmPaths paths = vm_paths(vm.settings.instances_dir, vm.settings.run_dir, 4244);
  EXPECT_FALSE(fs::exists(paths.pid_file));
  EXPECT_FALSE(fs::exists(paths.qmp_socket));
  EXPECT_TRUE(fs::exists(paths.start_err));
}

TEST(QemuSmoke, ValidationFailures) {
  SmokeVm vm(4245);
  vm.request.image = "../images/blank";  // V13
  EXPECT_THROW(create_and_launch(vm.settings, vm.request), VmLaunchError);
  vm.request.image = "missing";
  try {
    create_and_launch(vm.settings, vm.request);
    FAIL();
  } catch (const VmLaunchError& e) {
    EXPECT_EQ(std::string(e.what()), "Base image not found: " + (vm.settings.images_dir / "missing.qcow2").string());
  }
  vm.request.image = "blank";
  vm.request.disk_bytes = 32ULL << 20;  // V12: no shrink
  try {
    create_and_launch(vm.settings, vm.request);
    FAIL();
  } catch (const VmLaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("is smaller than the base image"), std::string::npos) << e.what();
  }
}

TEST(QemuImages, ListsQcow2FilesByName) {
  TempDir tmp;
  tmp.write("b.qcow2", "12345");
  tmp.write("a.qcow2", "1");
  tmp.write("notes.txt", "x");
  tmp.write(".qcow2", "x");
  fs::create_directories(tmp.dir / "dir.qcow2");
  const auto images = list_base_images(tmp.dir);
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[0].name, "a");
  EXPECT_EQ(images[0].filename, "a.qcow2");
  EXPECT_EQ(images[1].name, "b");
  EXPECT_EQ(images[1].size_bytes, 5u);
  EXPECT_GT(images[1].modified_at, 1.6e9);
  EXPECT_TRUE(list_base_images(tmp.dir / "missing").empty());
}
