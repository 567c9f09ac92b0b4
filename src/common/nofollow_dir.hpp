// Directories the runner creates or opens as root where someone else may
// have planted a symlink (issue 16): every component is opened with
// openat(O_NOFOLLOW | O_DIRECTORY) relative to the previous one, so no path
// component is ever resolved through a link, and the directories the
// runner owns get their owner and mode reset through the open descriptor.
// Blocking (file system calls); throws NoFollowError with a message that
// names the path and what was wrong.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace kr {

class NoFollowError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An owned file descriptor (closed on destruction; -1 = none).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Owner and permission bits a runner-owned directory must have.
struct DirOwnership {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0755;
};

// Opens the absolute directory `path`. The operator's spelling is resolved
// once (symlinks in the part that exists, e.g. /var/run -> /run, are
// honoured: the operator chose them); the resolved path is then walked from
// "/" one component at a time with O_NOFOLLOW, and with `create` missing
// components are made (mode 0755, like mkdir -p). Ownership of these
// directories is not checked: system directories such as /tmp (1777) are
// fine above the runner's own.
UniqueFd open_dir_nofollow(const std::filesystem::path& path, bool create);

// Below the open directory `parent`: each of `names` (one path component
// each, no '/', not "." or "..") is created when missing, opened with
// O_NOFOLLOW | O_DIRECTORY relative to the previous one, and its owner and
// mode are reset through the descriptor (fchown/fchmod) when they differ
// from `owner`. A symlink or non-directory at any name is an error (never
// replaced). Returns the descriptor of the last one. `resets`, when given,
// receives one line per directory whose owner or mode was reset.
UniqueFd open_owned_dirs(int parent, const std::vector<std::string>& names, const DirOwnership& owner,
                         std::vector<std::string>* resets = nullptr);

// Copies everything below the directory `from` into the directory `to`
// without following symlinks: directories and regular files are recreated
// with their owner and permission bits (setuid/setgid dropped), symlinks are
// copied as symlinks (their text, never their target); devices, FIFOs and
// sockets are skipped, and so are names that already exist in `to`.
// Directories deeper than 128 levels are skipped. Returns the number of
// entries skipped.
std::size_t copy_tree_nofollow(int from, int to);

// Removes `name` below the open directory `parent` and, when it is a real
// directory, everything below it; symlinks are unlinked, never followed.
// Best effort (entries deeper than 128 levels stay): returns false when
// something could not be removed.
bool remove_tree_nofollow(int parent, const std::string& name);

}  // namespace kr
