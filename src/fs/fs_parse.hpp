#pragma once
// Pure parts of the filesystem API (execution.md §6.2): command lines,
// parsers of ls/stat/find output, error-text classification. No I/O.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::fs {

using json = nlohmann::json;

inline constexpr std::int64_t kMaxReadBytes = 10485760;   // 10 MiB
inline constexpr std::int64_t kMaxWriteBytes = 52428800;  // 50 MiB
inline constexpr std::size_t kMaxListEntries = 1000;

// ---- argv builders ----
std::vector<std::string> ls_argv(const std::string& n, bool show_hidden, bool gnu);
std::vector<std::string> stat_type_size_argv(const std::string& n, bool gnu);
std::vector<std::string> stat_full_argv(const std::string& n, bool gnu);
std::vector<std::string> head_argv(const std::string& n, std::int64_t limit);
// Writes stdin to the file; the path travels as "$1", never through the
// shell's parser, and the content never through argv (D-FSWRITE).
std::vector<std::string> write_argv(const std::string& n);
std::vector<std::string> inotify_argv(const std::vector<std::string>& paths);
std::vector<std::string> find_snapshot_argv(const std::string& path, bool with_mtime);

// ---- parsers ----
// One `ls -l` listing (GNU with --time-style=+%s, or BusyBox). `now_iso`
// is used for BusyBox dates, which are not parsed (upstream).
json parse_ls(std::string_view out, const std::string& n, const std::string& now_iso);
// dirname(N), or null for "/".
json parent_of(const std::string& n);

struct StatInfo {
  std::string type_text;
  std::int64_t size = 0;
  std::int64_t mtime = 0;
  std::string owner, group, mode;
};
// "%F|%s|%Y|%U|%G|%a"; nullopt when fewer than 6 fields. Throws
// std::invalid_argument on a non-numeric size/mtime.
std::optional<StatInfo> parse_stat_full(std::string_view out);
// "%F|%s" -> (type, size)
std::pair<std::string, std::int64_t> parse_stat_type_size(std::string_view out);
std::string stat_kind(const std::string& type_text);   // directory|symlink|file|other
std::string mode_to_rwx(const std::string& octal);     // "755" -> "rwxr-xr-x"; raw text if unparsable
bool is_binary_name(const std::string& n);

// inotifywait line "%e|%w%f|%:e" -> change message, nullopt to ignore.
std::optional<json> parse_inotify_line(std::string_view line);
// find output -> path -> mtime text
std::map<std::string, std::string> parse_find_snapshot(std::string_view out, bool with_mtime);

bool contains(std::string_view haystack, std::string_view needle);
std::string trim(std::string_view s);

}  // namespace kr::fs

namespace kr::fs {

// Fast path for large request bodies (a 50 MB write arrives as ~67 MB of
// JSON; a general JSON parser spends seconds on it). Finds the value of the
// top-level member `key` of a JSON object when it is a plain string (no
// escapes, no control bytes, valid UTF-8 — always true for base64). On
// success returns the value and sets `rest` to the body with that value
// replaced by "" (parsed normally for the other fields and validation).
// nullopt: not found or not plain; parse the whole body normally then.
std::optional<std::string> take_plain_string_member(std::string_view body, std::string_view key, std::string& rest);
// The same without copying the value: a view into `body`.
std::optional<std::string_view> find_plain_string_member(std::string_view body, std::string_view key,
                                                         std::string& rest);

}  // namespace kr::fs
