#include "vps/snapshot_tags.hpp"

#include <algorithm>
#include <charconv>

namespace kr::vps {

using nlohmann::json;

namespace {

std::optional<int64_t> parse_int(std::string_view s) {
  // Python int(): optional sign, digits (no spaces inside a Docker tag).
  if (s.empty()) return std::nullopt;
  std::string_view digits = s;
  if (digits.front() == '-' || digits.front() == '+') digits.remove_prefix(1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  int64_t v = 0;
  const char* b = s.data() + (s.front() == '+' ? 1 : 0);
  auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

json SnapshotInfo::to_json() const {
  return json{{"tag", tag}, {"task_id", task_id}, {"timestamp", timestamp}, {"size", size}, {"created_at", created_at}};
}

std::string snapshot_repository(int64_t task_id) { return "kohakuriver-snapshot/vps-" + std::to_string(task_id); }

std::string snapshot_reference(int64_t task_id, int64_t timestamp) {
  return snapshot_repository(task_id) + ":" + std::to_string(timestamp);
}

std::optional<int64_t> snapshot_timestamp(std::string_view repo_tag, int64_t task_id) {
  const std::string prefix = snapshot_repository(task_id) + ":";
  if (repo_tag.substr(0, prefix.size()) != prefix) return std::nullopt;
  constexpr std::string_view kRepoPrefix = "kohakuriver-snapshot/vps-";
  std::string_view rest = repo_tag.substr(kRepoPrefix.size());
  auto colon = rest.find(':');
  if (colon == std::string_view::npos || rest.find(':', colon + 1) != std::string_view::npos) return std::nullopt;
  if (!parse_int(rest.substr(0, colon))) return std::nullopt;
  return parse_int(rest.substr(colon + 1));
}

std::vector<SnapshotInfo> snapshots_from_image_list(const json& images, int64_t task_id) {
  std::vector<SnapshotInfo> out;
  if (!images.is_array()) return out;
  for (const auto& img : images) {
    if (!img.is_object() || !img.contains("RepoTags") || !img["RepoTags"].is_array()) continue;
    for (const auto& t : img["RepoTags"]) {
      if (!t.is_string()) continue;
      auto ts = snapshot_timestamp(t.get_ref<const std::string&>(), task_id);
      if (!ts) continue;
      SnapshotInfo s;
      s.tag = t.get<std::string>();
      s.task_id = task_id;
      s.timestamp = *ts;
      if (img.contains("Size") && img["Size"].is_number_integer()) s.size = img["Size"].get<int64_t>();
      if (img.contains("CreatedText") && img["CreatedText"].is_string())
        s.created_at = img["CreatedText"].get<std::string>();
      out.push_back(std::move(s));
    }
  }
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.timestamp != b.timestamp ? a.timestamp > b.timestamp : a.tag < b.tag;
  });
  return out;
}

int64_t next_snapshot_timestamp(int64_t now_unix, const std::vector<SnapshotInfo>& existing) {
  int64_t t = now_unix;
  for (const auto& s : existing)
    if (s.timestamp >= t) t = s.timestamp + 1;
  return t;
}

std::vector<std::string> tags_to_prune(const std::vector<SnapshotInfo>& snapshots, int64_t keep) {
  std::vector<std::string> out;
  if (keep <= 0) return out;
  for (std::size_t i = static_cast<std::size_t>(keep); i < snapshots.size(); ++i) out.push_back(snapshots[i].tag);
  return out;
}

}  // namespace kr::vps
