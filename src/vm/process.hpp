// Running the VM tools (qemu-img, genisoimage, qemu-system-x86_64) and
// checking QEMU pids (decisions V10/V11).
//
// Processes are started with posix_spawnp (the runner is multi-threaded), no
// shell. Spawning these tools is allowed; the runner never spawns docker,
// ip or ssh.
#pragma once

#include <spawn.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vm/names.hpp"

namespace kr::vm {

struct ProcessOptions {
  std::chrono::milliseconds timeout{30000};
  // Set: stdout goes to /dev/null and stderr to this file (QEMU's launcher:
  // its daemon inherits both, so they must not be pipes, vm.md §5). Unset:
  // stdout and stderr are captured together into ProcessResult::output.
  std::optional<std::filesystem::path> stderr_file;
  bool new_session = false;  // setsid() in the child
};

struct ProcessResult {
  int exit_code = -1;      // -1: killed by a signal, timed out or not started
  bool timed_out = false;  // killed after `timeout`
  std::string output;      // captured stdout+stderr (first 64 KiB), or the spawn error
};

// Blocking; run it off the I/O thread. stdin is /dev/null.
ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// Adds to `fa` a close action for every descriptor >= `from` that
// /proc/self/fd lists now. run_process's way of closing the runner's
// descriptors in the child where glibc (< 2.34, the portable release's
// nodes) lacks posix_spawn_file_actions_addclosefrom_np.
void add_close_listed_descriptors(posix_spawn_file_actions_t* fa, int from);

// PATH lookup like the shell's (executable regular files only).
std::optional<std::filesystem::path> find_program(std::string_view name, const std::string& path_env);

// The pid in a QEMU pid file ("1234\n"); nullopt if missing or not a positive integer.
std::optional<pid_t> read_pid_file(const std::filesystem::path& pid_file);

// kill(pid, 0) says it exists (also when we may not signal it) and it is
// not a zombie.
bool pid_exists(pid_t pid);

// argv of a live process from <proc_root>/<pid>/cmdline; nullopt if gone.
std::optional<std::vector<std::string>> read_cmdline(pid_t pid, const std::filesystem::path& proc_root = "/proc");

// Pure: does this argv belong to the QEMU of that instance? Its program name
// starts with "qemu-system" and it carries "-pidfile <instance>/qemu.pid".
bool is_qemu_of_instance(const std::vector<std::string>& cmdline, const VmPaths& paths);

// The pid from the instance's pid file, only if that process is alive and is
// the instance's QEMU (PID reuse after reboots must not make us adopt or kill
// a stranger).
std::optional<pid_t> verified_qemu_pid(const VmPaths& paths, const std::filesystem::path& proc_root = "/proc");

}  // namespace kr::vm
