#include "common/nofollow_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kr {

namespace fs = std::filesystem;

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
constexpr int kMaxCopyDepth = 128;

std::string errno_text(int err) { return std::strerror(err); }

// Opens `name` below `parent` as a directory, never through a symlink;
// creates it first (with `mode`) when `create`.
UniqueFd open_component(int parent, const std::string& name, bool create, mode_t mode, const std::string& shown) {
  if (create && ::mkdirat(parent, name.c_str(), mode) != 0 && errno != EEXIST)
    throw NoFollowError("cannot create " + shown + ": " + errno_text(errno));
  const int fd = ::openat(parent, name.c_str(), kDirFlags);
  if (fd >= 0) return UniqueFd(fd);
  const int err = errno;
  if (err == ELOOP || err == ENOTDIR)
    throw NoFollowError(shown + " is a symlink or not a directory; refusing to follow it");
  throw NoFollowError("cannot open " + shown + ": " + errno_text(err));
}

bool valid_name(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos && n.find('\0') == std::string::npos;
}

}  // namespace

UniqueFd open_dir_nofollow(const fs::path& path, bool create) {
  if (!path.is_absolute()) throw NoFollowError(path.string() + " is not an absolute path");
  std::error_code ec;
  const fs::path resolved = fs::weakly_canonical(path, ec);
  if (ec) throw NoFollowError("cannot resolve " + path.string() + ": " + ec.message());
  UniqueFd dir(::open("/", kDirFlags));
  if (dir.get() < 0) throw NoFollowError("cannot open /: " + errno_text(errno));
  fs::path walked = "/";
  for (const fs::path& part : resolved.relative_path()) {
    const std::string name = part.string();
    if (name.empty() || name == ".") continue;
    walked /= part;
    dir = open_component(dir.get(), name, create, 0755, walked.string());
  }
  return dir;
}

UniqueFd open_owned_dirs(int parent, const std::vector<std::string>& names, const DirOwnership& owner,
                         std::vector<std::string>* resets) {
  UniqueFd current;
  int at = parent;
  std::string shown;
  for (const std::string& name : names) {
    if (!valid_name(name)) throw NoFollowError("invalid directory name '" + name + "'");
    shown += (shown.empty() ? "" : "/") + name;
    current = open_component(at, name, true, owner.mode, shown);
    at = current.get();
    struct stat st {};
    if (::fstat(at, &st) != 0) throw NoFollowError("cannot stat " + shown + ": " + errno_text(errno));
    if (st.st_uid != owner.uid || st.st_gid != owner.gid) {
      if (::fchown(at, owner.uid, owner.gid) != 0)
        throw NoFollowError("cannot reset the owner of " + shown + ": " + errno_text(errno));
      if (resets)
        resets->push_back(shown + ": owner " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) + " -> " +
                          std::to_string(owner.uid) + ":" + std::to_string(owner.gid));
    }
    // fchown may clear setgid; compare the bits as they are now.
    if (::fstat(at, &st) != 0) throw NoFollowError("cannot stat " + shown + ": " + errno_text(errno));
    if ((st.st_mode & 07777) != owner.mode) {
      if (::fchmod(at, owner.mode) != 0)
        throw NoFollowError("cannot reset the mode of " + shown + ": " + errno_text(errno));
      if (resets) {
        char buf[48];
        std::snprintf(buf, sizeof buf, ": mode %04o -> %04o", static_cast<unsigned>(st.st_mode & 07777),
                      static_cast<unsigned>(owner.mode));
        resets->push_back(shown + buf);
      }
    }
  }
  if (current.get() < 0) throw NoFollowError("no directory names given");
  return current;
}

namespace {

// Entry names of an open directory (the fd stays usable: dup'ed for fdopendir).
std::vector<std::string> list_names(int dir_fd) {
  std::vector<std::string> out;
  const int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return out;
  DIR* d = ::fdopendir(dup_fd);
  if (!d) {
    ::close(dup_fd);
    return out;
  }
  ::rewinddir(d);
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

bool copy_file_data(int in, int out) {
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(in, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out, buf + done, static_cast<std::size_t>(n - done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      done += w;
    }
  }
}

std::size_t copy_entries(int from, int to, int depth);

std::size_t copy_entry(int from, int to, const std::string& name, int depth) {
  struct stat st {};
  if (::fstatat(from, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return 1;
  const mode_t bits = st.st_mode & 01777;  // setuid/setgid dropped
  if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 0) + 1, '\0');
    const ssize_t n = ::readlinkat(from, name.c_str(), target.data(), target.size());
    if (n < 0 || static_cast<std::size_t>(n) >= target.size()) return 1;
    target.resize(static_cast<std::size_t>(n));
    if (::symlinkat(target.c_str(), to, name.c_str()) != 0) return 1;
    (void)::fchownat(to, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
    return 0;
  }
  if (S_ISDIR(st.st_mode)) {
    if (depth >= kMaxCopyDepth) return 1;
    UniqueFd src(::openat(from, name.c_str(), kDirFlags));
    if (src.get() < 0) return 1;
    if (::mkdirat(to, name.c_str(), 0700) != 0) return 1;
    UniqueFd dst(::openat(to, name.c_str(), kDirFlags));
    if (dst.get() < 0) return 1;
    const std::size_t skipped = copy_entries(src.get(), dst.get(), depth + 1);
    (void)::fchown(dst.get(), st.st_uid, st.st_gid);
    (void)::fchmod(dst.get(), bits);
    return skipped;
  }
  if (!S_ISREG(st.st_mode)) return 1;
  // O_NONBLOCK: a FIFO swapped in after the fstatat must not block the open.
  UniqueFd src(::openat(from, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (src.get() < 0) return 1;
  struct stat opened {};
  if (::fstat(src.get(), &opened) != 0 || !S_ISREG(opened.st_mode)) return 1;
  UniqueFd dst(::openat(to, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (dst.get() < 0) return 1;
  if (!copy_file_data(src.get(), dst.get())) return 1;
  (void)::fchown(dst.get(), opened.st_uid, opened.st_gid);
  (void)::fchmod(dst.get(), opened.st_mode & 01777);
  return 0;
}

std::size_t copy_entries(int from, int to, int depth) {
  std::size_t skipped = 0;
  for (const std::string& name : list_names(from)) skipped += copy_entry(from, to, name, depth);
  return skipped;
}

bool remove_entry(int parent, const std::string& name, int depth) {
  if (::unlinkat(parent, name.c_str(), 0) == 0) return true;  // anything but a directory
  if (errno == ENOENT) return true;
  if ((errno != EISDIR && errno != EPERM) || depth >= kMaxCopyDepth) return false;
  bool ok = true;
  {
    UniqueFd dir(::openat(parent, name.c_str(), kDirFlags));
    if (dir.get() < 0) return false;
    for (const std::string& child : list_names(dir.get())) ok = remove_entry(dir.get(), child, depth + 1) && ok;
  }
  return ::unlinkat(parent, name.c_str(), AT_REMOVEDIR) == 0 && ok;
}

}  // namespace

std::size_t copy_tree_nofollow(int from, int to) { return copy_entries(from, to, 0); }

bool remove_tree_nofollow(int parent, const std::string& name) {
  return valid_name(name) && remove_entry(parent, name, 0);
}

}  // namespace kr
