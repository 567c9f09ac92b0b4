#pragma once
// When the filesystem API may move a whole file through Docker's archive
// API (PUT/GET /containers/{id}/archive, what `docker cp` uses) instead of
// an exec's stdin/stdout. Pure functions.
//
// The archive API works as the daemon (root) on the container's root
// filesystem and volumes as the daemon mounts them, resolving symlinks
// inside the container's root. An exec works as the container's user in
// the container's own mount namespace. The two see the same file with the
// same rights only when all of these hold:
//   * the container runs as root (Config.User empty, "root" or "0", with
//     no group or group root/0);
//   * the path lies in no tmpfs mount (the daemon sees the directory
//     underneath it);
//   * the path is neither a mount destination itself nor one of the files
//     Docker bind-mounts into every container (/etc/hosts, /etc/hostname,
//     /etc/resolv.conf): replacing a mount point is not a write into it.
// Everywhere else the exec path (the reference) is used.
#include <string>
#include <string_view>
#include <vector>

namespace kr::fs {

bool user_is_root(std::string_view user);

// `n` is a normalized path (check_path); mount lists are destinations.
bool archive_matches_exec_view(std::string_view user, const std::vector<std::string>& tmpfs,
                               const std::vector<std::string>& mounts, const std::string& n);

}  // namespace kr::fs
