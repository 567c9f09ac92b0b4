#include "tasks/log_paths.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace kr::tasks {

std::string logs_dir(std::string_view shared_dir) {
  std::string out(shared_dir);
  if (!out.empty() && out.back() != '/') out += '/';
  return out + "logs";
}

std::string translate_log_path(std::string_view path, std::string_view shared_dir) {
  const std::string needle = logs_dir(shared_dir);
  std::string out(path);
  if (auto pos = out.find(needle); pos != std::string::npos) out.replace(pos, needle.size(), kContainerLogsDir);
  return out;
}

std::string lexically_normal_path(std::string_view path) {
  const bool absolute = !path.empty() && path.front() == '/';
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t slash = path.find('/', i);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(i, slash - i);
    i = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..")
        parts.pop_back();
      else if (!absolute)
        parts.push_back(part);  // a relative path may climb; "/.." is "/"
      continue;
    }
    parts.push_back(part);
  }
  std::string out = absolute ? "/" : "";
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (k > 0) out += '/';
    out += parts[k];
  }
  if (out.empty()) out = ".";
  return out;
}

std::optional<std::string> check_log_path(std::string_view path, std::string_view shared_dir) {
  const std::string shown(path);
  if (path.find('\0') != std::string_view::npos) return "Log path contains a NUL byte.";
  if (path.empty() || path.front() != '/') return "Log path '" + shown + "' is not an absolute path.";
  const std::string root = lexically_normal_path(logs_dir(shared_dir));
  if (root.empty() || root.front() != '/')
    return "SHARED_DIR '" + std::string(shared_dir) + "' is not an absolute path; log paths cannot be checked.";
  const std::string norm = lexically_normal_path(path);
  const std::string prefix = root == "/" ? root : root + "/";
  if (norm.size() <= prefix.size() || norm.compare(0, prefix.size(), prefix) != 0)
    return "Log path '" + shown + "' is not under " + root + ".";
  return std::nullopt;
}

std::string container_log_path(std::string_view path, std::string_view shared_dir) {
  const std::string norm = lexically_normal_path(path);
  const std::string root = lexically_normal_path(logs_dir(shared_dir));
  const std::string prefix = root == "/" ? root : root + "/";
  if (norm.size() > prefix.size() && norm.compare(0, prefix.size(), prefix) == 0)
    return std::string(kContainerLogsDir) + "/" + norm.substr(prefix.size());
  return norm;
}

std::optional<std::string> make_log_parent_dirs(std::string_view path, std::string_view shared_dir) {
  if (auto err = check_log_path(path, shared_dir)) return err;
  const std::string root = lexically_normal_path(logs_dir(shared_dir));
  const std::string norm = lexically_normal_path(path);
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  int dir = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return "cannot open log directory " + root + ": " + std::strerror(errno);
  // Components between the root and the file name.
  std::string_view rest = std::string_view(norm).substr(root == "/" ? 1 : root.size() + 1);
  std::string walked = root;
  for (;;) {
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) break;  // the last component is the file
    const std::string comp(rest.substr(0, slash));
    rest.remove_prefix(slash + 1);
    walked += "/" + comp;
    if (::mkdirat(dir, comp.c_str(), 0755) != 0 && errno != EEXIST) {
      std::string why = std::strerror(errno);
      ::close(dir);
      return "cannot create log directory " + walked + ": " + why;
    }
    int next = ::openat(dir, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int err = errno;
    ::close(dir);
    if (next < 0) {
      if (err == ELOOP || err == ENOTDIR)
        return "log directory " + walked + " is a symlink or not a directory; refusing to follow it";
      return "cannot open log directory " + walked + ": " + std::strerror(err);
    }
    dir = next;
  }
  ::close(dir);
  return std::nullopt;
}

}  // namespace kr::tasks
