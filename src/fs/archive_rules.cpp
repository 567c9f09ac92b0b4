#include "fs/archive_rules.hpp"

#include "fs/fs_paths.hpp"

namespace kr::fs {

namespace {
bool is_root_id(std::string_view s) { return s == "root" || s == "0"; }

bool same_or_under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

std::string canonical(std::string_view p) { return collapse_leading_slashes(python_normpath(p)); }
}  // namespace

bool user_is_root(std::string_view user) {
  if (user.empty()) return true;
  const auto colon = user.find(':');
  if (colon == std::string_view::npos) return is_root_id(user);
  const auto group = user.substr(colon + 1);
  return is_root_id(user.substr(0, colon)) && (group.empty() || is_root_id(group));
}

bool archive_matches_exec_view(std::string_view user, const std::vector<std::string>& tmpfs,
                               const std::vector<std::string>& mounts, const std::string& n) {
  if (!user_is_root(user)) return false;
  if (n.empty() || n.front() != '/') return false;
  const std::string p = canonical(n);
  if (p == "/") return false;
  for (const auto& t : tmpfs)
    if (!t.empty() && same_or_under(p, canonical(t))) return false;
  for (const auto& m : mounts)
    if (!m.empty() && p == canonical(m)) return false;
  for (const char* f : {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"})
    if (p == f) return false;
  return true;
}

}  // namespace kr::fs
