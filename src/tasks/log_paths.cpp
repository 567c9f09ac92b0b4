#include "tasks/log_paths.hpp"

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

}  // namespace kr::tasks
