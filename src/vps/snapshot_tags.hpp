#pragma once
// Snapshot image naming, listing and pruning choices (execution.md §3.6.3,
// R-SNAPSEC). Pure functions, no I/O.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::vps {

struct SnapshotInfo {
  std::string tag;  // full reference "kohakuriver-snapshot/vps-<id>:<timestamp>"
  int64_t task_id = 0;
  int64_t timestamp = 0;
  int64_t size = 0;
  std::string created_at;  // image inspect's Created string

  nlohmann::json to_json() const;
  bool operator==(const SnapshotInfo&) const = default;
};

// "kohakuriver-snapshot/vps-<id>"
std::string snapshot_repository(int64_t task_id);
// "kohakuriver-snapshot/vps-<id>:<timestamp>"
std::string snapshot_reference(int64_t task_id, int64_t timestamp);

// The timestamp of a repo tag of this VPS's snapshots (upstream's test: the
// tag starts with "kohakuriver-snapshot/vps-<id>:" and the rest after
// "kohakuriver-snapshot/vps-" is "<int>:<int>").
std::optional<int64_t> snapshot_timestamp(std::string_view repo_tag, int64_t task_id);

// The snapshots in an Engine API image list (GET /images/json entries with
// RepoTags, Size, Created): one entry per matching tag, newest first (equal
// timestamps by tag). `size` is the entry's Size; `created_at` its
// "CreatedText" string, which the caller adds from image inspect's Created
// (the list itself only has integer seconds).
std::vector<SnapshotInfo> snapshots_from_image_list(const nlohmann::json& images, int64_t task_id);

// The timestamp for a new snapshot: the current second, or one past the
// newest existing one when that is not later (R-SNAPSEC: never reuse a tag,
// and the newest snapshot always has the largest timestamp).
int64_t next_snapshot_timestamp(int64_t now_unix, const std::vector<SnapshotInfo>& existing);

// Tags to remove so that `keep` newest remain (`snapshots` newest first);
// keep <= 0 means unlimited (nothing removed).
std::vector<std::string> tags_to_prune(const std::vector<SnapshotInfo>& snapshots, int64_t keep);

}  // namespace kr::vps
