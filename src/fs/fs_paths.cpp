#include "fs/fs_paths.hpp"

namespace kr::fs {

std::string python_normpath(std::string_view path) {
  if (path.empty()) return ".";
  int initial = 0;
  if (path[0] == '/') {
    initial = 1;
    if (path.size() >= 2 && path[1] == '/' && (path.size() < 3 || path[2] != '/')) initial = 2;
  }
  std::vector<std::string_view> comps;
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view c = path.substr(i, j - i);
    i = j + 1;
    if (c.empty() || c == ".") continue;
    if (c != ".." || (initial == 0 && comps.empty()) || (!comps.empty() && comps.back() == "..")) {
      comps.push_back(c);
    } else if (!comps.empty()) {
      comps.pop_back();
    }
  }
  std::string out(static_cast<std::size_t>(initial), '/');
  for (std::size_t k = 0; k < comps.size(); ++k) {
    if (k) out.push_back('/');
    out.append(comps[k]);
  }
  return out.empty() ? "." : out;
}

std::string python_dirname(std::string_view p) {
  auto i = p.rfind('/');
  std::string head(i == std::string_view::npos ? std::string_view() : p.substr(0, i + 1));
  // Strip trailing slashes unless head is all slashes.
  if (!head.empty() && head.find_first_not_of('/') != std::string::npos)
    while (!head.empty() && head.back() == '/') head.pop_back();
  return head;
}

std::string collapse_leading_slashes(std::string_view n) {
  std::size_t k = 0;
  while (k < n.size() && n[k] == '/') ++k;
  if (k <= 1) return std::string(n);
  return "/" + std::string(n.substr(k));
}

namespace {
constexpr std::string_view kForbidden[] = {"/proc", "/sys", "/dev"};

std::optional<std::string> forbidden_prefix(std::string_view n) {
  for (auto f : kForbidden)
    if (n == f || (n.size() > f.size() && n.substr(0, f.size()) == f && n[f.size()] == '/'))
      return std::string(f);
  return std::nullopt;
}
}  // namespace

std::optional<std::string> check_path(std::string_view path, std::string& normalized) {
  if (path.empty()) return std::string("Path cannot be empty");
  if (path[0] != '/') return std::string("Path must be absolute (start with /)");
  normalized = python_normpath(path);
  if (auto f = forbidden_prefix(normalized)) return "Access to " + *f + " is forbidden";
  if (auto f = forbidden_prefix(collapse_leading_slashes(normalized))) return "Access to " + *f + " is forbidden";
  return std::nullopt;
}

std::optional<std::string> check_delete_target(const std::string& normalized,
                                               const std::vector<std::string>& mounts) {
  const std::string c = collapse_leading_slashes(normalized);
  if (c == "/") return "Refusing to delete the root directory: " + normalized;
  std::vector<std::string> roots = {"/shared", "/local_temp", "/kohakuriver-logs"};
  for (const auto& m : mounts) roots.push_back(collapse_leading_slashes(python_normpath(m)));
  for (const auto& r : roots)
    if (c == r) return "Refusing to delete a mount point: " + normalized;
  return std::nullopt;
}

std::vector<std::string> split_watch_paths(std::string_view q) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i <= q.size()) {
    std::size_t j = q.find(',', i);
    if (j == std::string_view::npos) j = q.size();
    std::string_view item = q.substr(i, j - i);
    i = j + 1;
    const auto b = item.find_first_not_of(" \t\r\n\f\v");
    if (b == std::string_view::npos) continue;
    const auto e = item.find_last_not_of(" \t\r\n\f\v");
    out.emplace_back(item.substr(b, e - b + 1));
  }
  if (out.empty()) out = {"/shared", "/local_temp"};
  return out;
}

}  // namespace kr::fs
