#include "vm/vm_share.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/nofollow_dir.hpp"
#include "tasks/container_spec.hpp"

namespace kr::vm {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kLocalFsdevPrefix = "local,id=fs_local,";

// Index of the fs_local -fsdev value in argv, if any.
std::optional<std::size_t> local_fsdev_index(const std::vector<std::string>& argv) {
  for (std::size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == "-fsdev" && argv[i + 1].starts_with(kLocalFsdevPrefix)) return i + 1;
  return std::nullopt;
}

// Whether `inner` is `outer` or below it (both lexically normal).
bool within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing '/'
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

fs::path resolved(const std::string& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(p, ec);
  return (ec ? fs::path(p) : r).lexically_normal();
}

}  // namespace

std::optional<std::string> local_share_path(const std::vector<std::string>& argv) {
  const auto i = local_fsdev_index(argv);
  if (!i) return std::nullopt;
  const std::string& v = argv[*i];
  const auto start = v.find(",path=");
  if (start == std::string::npos) return std::nullopt;
  const auto from = start + 6;
  const auto end = v.find(',', from);
  return v.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

std::vector<std::string> with_local_share_path(std::vector<std::string> argv, const std::string& path) {
  const auto i = local_fsdev_index(argv);
  if (!i) return argv;
  std::string& v = argv[*i];
  const auto start = v.find(",path=");
  if (start == std::string::npos) {
    v += ",path=" + path;
    return argv;
  }
  const auto from = start + 6;
  const auto end = v.find(',', from);
  v.replace(from, end == std::string::npos ? std::string::npos : end - from, path);
  return argv;
}

std::optional<std::string> overlap_error(const NamedPath& dir, const std::vector<NamedPath>& reachable) {
  const fs::path d = dir.path.lexically_normal();
  for (const NamedPath& r : reachable) {
    const fs::path p = r.path.lexically_normal();
    if (p.empty() || !p.is_absolute()) continue;
    if (within(d, p) || within(p, d))
      return dir.setting + " (" + dir.path.string() + ") overlaps " + r.setting + " (" + r.path.string() +
             "), which containers can write; VMs are refused until it is moved";
  }
  return std::nullopt;
}

std::string vm_dirs_reach_error(const config::RunnerConfig& cfg) {
  std::vector<NamedPath> mounted = {
      {"LOCAL_TEMP_DIR", resolved(cfg.local_temp_dir)},
      {"SHARED_DIR/shared_data", resolved(cfg.shared_dir + "/shared_data")},
      {"SHARED_DIR/logs", resolved(cfg.shared_dir + "/logs")},
  };
  for (const std::string& spec : cfg.additional_mounts) {
    std::optional<nlohmann::json> m;
    try {
      m = tasks::parse_additional_mount(spec, nullptr);
    } catch (const std::exception&) {
      continue;  // refused for containers too
    }
    if (m) mounted.push_back({"ADDITIONAL_MOUNTS entry '" + spec + "'", resolved(m->at("Source").get<std::string>())});
  }
  std::vector<NamedPath> shared = mounted;
  shared.push_back({"SHARED_DIR", resolved(cfg.shared_dir)});
  std::string out;
  auto add = [&out](const std::optional<std::string>& e) {
    if (e) out += (out.empty() ? "" : "; ") + *e;
  };
  add(overlap_error({"VM_INSTANCES_DIR", resolved(cfg.vm_instances_dir)}, shared));
  add(overlap_error({"VM_RUN_DIR", resolved(cfg.vm_run_dir)}, shared));
  add(overlap_error({"VM_IMAGES_DIR", resolved(cfg.vm_images_dir)}, mounted));
  // Every VM's kohaku_shared is SHARED_DIR/shared_data: a mount that shows
  // containers SHARED_DIR itself (or a directory above it) would let them
  // swap shared_data for a symlink. Mounts below SHARED_DIR are fine.
  const fs::path shared_dir = resolved(cfg.shared_dir);
  for (const NamedPath& m : mounted)
    if (m.setting != "SHARED_DIR/shared_data" && m.setting != "SHARED_DIR/logs" && within(shared_dir, m.path))
      add("SHARED_DIR (" + cfg.shared_dir + ") lies within " + m.setting + " (" + m.path.string() +
          "), which containers can write: they could replace shared_data, every VM's /shared; VMs are refused "
          "until it is moved");
  return out;
}

namespace {

// Opens {instances_dir}/{id}/local_temp (made, checked, reset); the fds of
// the share and of the instance directory.
UniqueFd open_share(const fs::path& instances_dir, std::int64_t task_id) {
  UniqueFd base = open_dir_nofollow(instances_dir, true);
  std::vector<std::string> resets;
  const DirOwnership owner{::geteuid(), ::getegid(), 0755};
  UniqueFd share = open_owned_dirs(base.get(), {std::to_string(task_id), kLocalShareName}, owner, &resets);
  for (const auto& r : resets) spdlog::warn("VM {}: reset {}/{}", task_id, instances_dir.string(), r);
  return share;
}

}  // namespace

fs::path prepare_vm_share(const fs::path& instances_dir, std::int64_t task_id) {
  open_share(instances_dir, task_id);
  return instances_dir / std::to_string(task_id) / kLocalShareName;
}

bool move_share_for_relaunch(const fs::path& instances_dir, const fs::path& legacy_root, std::int64_t task_id,
                             std::vector<std::string>& argv) {
  UniqueFd share = open_share(instances_dir, task_id);
  const fs::path safe = instances_dir / std::to_string(task_id) / kLocalShareName;
  const auto old = local_share_path(argv);
  if (!old || fs::path(*old).lexically_normal() == safe.lexically_normal()) return false;
  argv = with_local_share_path(std::move(argv), safe.string());
  const std::string id = std::to_string(task_id);
  if (legacy_root.empty() || fs::path(*old).lexically_normal() != (legacy_root / id).lexically_normal()) {
    spdlog::warn("VM {}: its saved 9p share {} is replaced by {}", task_id, *old, safe.string());
    return true;
  }
  // The legacy place is in every container's /local_temp: whatever is there
  // now may have been put there by a tenant. Only a real directory is
  // copied, entry by entry, never through a symlink.
  UniqueFd root;
  try {
    root = open_dir_nofollow(legacy_root, false);
  } catch (const NoFollowError& e) {
    spdlog::warn("VM {}: 9p share moved to {}; the old one was not copied: {}", task_id, safe.string(), e.what());
    return true;
  }
  struct stat st {};
  if (::fstatat(root.get(), id.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    spdlog::info("VM {}: 9p share moved to {} ({} is gone)", task_id, safe.string(), *old);
    return true;
  }
  UniqueFd from(S_ISDIR(st.st_mode) ? ::openat(root.get(), id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                                     : -1);
  if (from.get() < 0) {
    spdlog::warn("VM {}: {} is not a directory (a symlink?); left alone, the VM gets an empty share at {}", task_id,
                 *old, safe.string());
    return true;
  }
  const std::size_t skipped = copy_tree_nofollow(from.get(), share.get());
  from = UniqueFd();
  if (!remove_tree_nofollow(root.get(), id)) spdlog::warn("VM {}: could not remove all of {}", task_id, *old);
  spdlog::info("VM {}: 9p share moved from {} to {}{}", task_id, *old, safe.string(),
               skipped ? " (" + std::to_string(skipped) + " entries skipped: not files, dirs or links, or too deep)"
                       : std::string());
  return true;
}

}  // namespace kr::vm
