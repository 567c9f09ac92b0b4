#pragma once
// Path rules of the container filesystem API (execution.md §6.1, S-PATHVAL,
// S-FSDELETE, S-WATCH). Pure functions.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kr::fs {

// Python's posixpath.normpath, exactly (keeps two leading slashes).
std::string python_normpath(std::string_view path);
// Python's posixpath.dirname.
std::string python_dirname(std::string_view path);

// Validates a client path. On success returns nullopt and sets
// `normalized` (the N the endpoint operates on); otherwise returns the
// detail text of the 400. Upstream's checks, plus the ruling: the
// forbidden prefixes also apply once leading slashes are collapsed
// ("//proc" is "/proc").
std::optional<std::string> check_path(std::string_view path, std::string& normalized);

// The canonical form of N with leading slashes collapsed ("//x" -> "/x").
std::string collapse_leading_slashes(std::string_view normalized);

// S-FSDELETE: deleting "/" or a mount root (the container's mount
// destinations plus /shared, /local_temp, /kohakuriver-logs) is refused.
// Returns the 400 detail text, or nullopt when the target is allowed.
std::optional<std::string> check_delete_target(const std::string& normalized,
                                               const std::vector<std::string>& mount_destinations);

// Watch query: split on ',', trimmed, empties dropped; default /shared and
// /local_temp. (Validation per path with check_path.)
std::vector<std::string> split_watch_paths(std::string_view query_value);

}  // namespace kr::fs
