// Where a VM's 9p `kohaku_local` share (the guest's /local_temp) lives, and
// how it is made safe before every QEMU launch (issue 16, point 1).
//
// Upstream shares {LOCAL_TEMP_DIR}/{id}, which every task and VPS container
// mounts read-write: a container could swap it for a symlink and QEMU
// (root, security_model=passthrough) would share the symlink's target. The
// share now lives in the VM's instance directory, {VM_INSTANCES_DIR}/{id}/
// local_temp, where no container mount reaches (checked at startup), and
// both directories are opened without following symlinks and reset to
// root:root 0755 through their descriptors before each launch.
//
// QEMU gets the share's path, not a descriptor: the path's components are
// writable only by root once VM_INSTANCES_DIR is out of every container
// mount, so what was verified is what QEMU opens (a guest can write inside
// its share but cannot rename the share's root; QEMU's 9p backend never
// follows symlinks inside it). A /proc/self/fd path would have to be
// inherited through QEMU's daemonizing launcher and would make qemu_cmd.json
// meaningless for restarts and recovery.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace kr::vm {

// The share's name inside the instance directory.
inline constexpr const char* kLocalShareName = "local_temp";

// The `path=` of the `-fsdev local,id=fs_local,...` option in a QEMU argv
// (ours or upstream's); nullopt when there is none. Pure.
std::optional<std::string> local_share_path(const std::vector<std::string>& argv);
// `argv` with that path replaced by `path` (unchanged when there is no
// fs_local option). Pure.
std::vector<std::string> with_local_share_path(std::vector<std::string> argv, const std::string& path);

// A directory that must stay out of every container's reach, and the
// container-reachable directories it must not overlap (neither equal to,
// below, nor above one of them). Paths are compared lexically; the caller
// resolves them. nullopt when they do not overlap, else a message naming
// both settings. Pure.
struct NamedPath {
  std::string setting;  // "LOCAL_TEMP_DIR", "ADDITIONAL_MOUNTS entry '/a:/b'", ...
  std::filesystem::path path;
};
std::optional<std::string> overlap_error(const NamedPath& dir, const std::vector<NamedPath>& reachable);

// VM_INSTANCES_DIR and VM_RUN_DIR must not overlap LOCAL_TEMP_DIR,
// SHARED_DIR or any ADDITIONAL_MOUNTS source; VM_IMAGES_DIR must not overlap
// what containers mount (LOCAL_TEMP_DIR, SHARED_DIR/shared_data,
// SHARED_DIR/logs, ADDITIONAL_MOUNTS sources: images on the cluster share
// are fine); SHARED_DIR must not lie within LOCAL_TEMP_DIR or an
// ADDITIONAL_MOUNTS source (shared_data is every VM's /shared). Paths resolved with weakly_canonical (blocking). Empty when all
// is well, else the messages joined with "; ".
std::string vm_dirs_reach_error(const config::RunnerConfig& cfg);

// Creates/opens {instances_dir}/{id} and its share without following a
// symlink anywhere, resets both to the runner's uid/gid and 0755 (logged
// when something was reset), and returns the share's path. Blocking;
// throws kr::NoFollowError.
std::filesystem::path prepare_vm_share(const std::filesystem::path& instances_dir, std::int64_t task_id);

// Before a relaunch from a saved argv: prepares the share and, when the
// argv's share is anywhere else, points it at the prepared one. A share at
// the legacy place ({legacy_root}/{id}: an older runner or the Python
// runner) has its contents moved over without following symlinks (a
// symlink there is left alone and nothing is copied). Returns true when the
// argv changed (the caller saves it). Blocking; throws kr::NoFollowError.
bool move_share_for_relaunch(const std::filesystem::path& instances_dir, const std::filesystem::path& legacy_root,
                             std::int64_t task_id, std::vector<std::string>& argv);

}  // namespace kr::vm
