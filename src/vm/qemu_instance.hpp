// One VM's QEMU process on disk and in the process table (vm.md §4 step 7,
// §11.2, §11.3; decisions V2, V5, V10/V11, V12, V13, V26).
//
// Blocking functions (qemu-img, genisoimage, the QEMU launcher, file
// operations): call them off the I/O thread (run_blocking). The QMP-driven
// shutdown is a coroutine. Networking (TAP/bridge), VFIO binding, the task
// store and status reports belong to the caller.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "vm/cloud_init.hpp"
#include "vm/names.hpp"
#include "vm/qemu_argv.hpp"

namespace kr::vm {

// A create/launch failure; what() is the message that goes after
// "VM {id} creation failed: " (upstream's wording, vm.md §4).
class VmLaunchError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Operator settings that shape every VM on this node.
struct QemuSettings {
  std::filesystem::path images_dir;     // VM_IMAGES_DIR
  std::filesystem::path instances_dir;  // VM_INSTANCES_DIR
  std::filesystem::path run_dir;        // VM_RUN_DIR (QMP sockets)
  Accel accel = Accel::Kvm;             // VM_QEMU_ACCEL
  std::string cpu_model;                // VM_QEMU_CPU, resolved
  std::optional<Firmware> firmware;     // VM_FIRMWARE, resolved (nullopt: SeaBIOS)
  std::string path_env;                 // PATH used to find the tools
  std::chrono::milliseconds launch_timeout{30000};
  // Programs that exec QEMU in a different context, put before the argv
  // (not saved in qemu_cmd.json): e.g. `systemd-run --scope` for a cgroup of
  // its own (V26), or `unshare -n` in tests. Empty: QEMU directly.
  std::vector<std::string> launch_prefix;
};

struct LaunchRequest {
  std::int64_t task_id = 0;
  int vcpus = 1;
  int memory_mb = 4096;
  std::string image;                        // base image name (validated here, V13)
  std::optional<std::uint64_t> disk_bytes;  // validated size (V12); nullopt: keep the base size
  std::vector<std::string> vfio_pci;        // devices handed to QEMU
  SeedSpec seed;                            // task_id/network/keys for cloud-init
  std::string tap;
  std::string mac;
  std::filesystem::path shared_data_dir;
  std::filesystem::path local_dir;
};

struct LaunchedVm {
  pid_t pid = 0;
  std::vector<std::string> argv;  // also in qemu_cmd.json
  VmPaths paths;
};

// Steps 7.2–7.9 and qemu_cmd.json: instance dir, overlay disk (refusing a
// shrink), per-VM OVMF VARS copy, seed ISO, launch, pid check. On failure the
// pid file and QMP socket are removed (V5); the instance dir and disk stay,
// as upstream (the instance listing/delete endpoints manage them).
LaunchedVm create_and_launch(const QemuSettings& settings, const LaunchRequest& request);

// Restart: runs a saved argv again (same disk, seed, TAP). Removes a stale
// pid file/socket first. Throws VmLaunchError.
LaunchedVm relaunch(const QemuSettings& settings, std::int64_t task_id, const std::vector<std::string>& argv);

// The argv saved in qemu_cmd.json, if readable.
std::optional<std::vector<std::string>> load_saved_argv(const VmPaths& paths);

// Base images: regular *.qcow2 files (vm.md §3 /api/vm/images).
struct BaseImage {
  std::string name;
  std::string filename;
  std::uint64_t size_bytes = 0;
  double modified_at = 0;
};
std::vector<BaseImage> list_base_images(const std::filesystem::path& images_dir);

// Powers the VM off: QMP system_powerdown, wait up to `grace` for the
// process to go, then SIGKILL (only after re-checking /proc/<pid>/cmdline,
// V10/V11). Removes the pid file and QMP socket. Returns true when the
// process is gone. Never throws for QMP or signal problems (logged).
boost::asio::awaitable<bool> shutdown_qemu(VmPaths paths, pid_t pid, std::chrono::milliseconds grace);

// SIGKILL (again) when the pid is still this instance's QEMU, then wait up
// to `wait` for it to go. A process can hold a pending SIGKILL for as long
// as it pleases (frozen cgroup, uninterruptible sleep in a driver): callers
// retry while this returns false. Removes the pid file and QMP socket once
// the process is gone.
boost::asio::awaitable<bool> kill_qemu(VmPaths paths, pid_t pid, std::chrono::milliseconds wait);

}  // namespace kr::vm
