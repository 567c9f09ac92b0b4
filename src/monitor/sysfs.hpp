// Small helpers shared by the monitor readers: root-prefixed paths, small
// procfs/sysfs file reads, recorded-symlink stand-ins, number parsing.
//
// Every reader takes a filesystem root ("/" for the live system) so tests can
// point it at a recorded tree. Recorded trees cannot always keep sysfs
// symlinks, so a symlink `name` may be stored as a plain text file holding the
// link target, called `_name_link` (the convention of the recorded GPU node)
// or `name_link`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kr::monitor::detail {

// `abs` is an absolute system path ("/proc/stat"); the result lies under root.
std::filesystem::path under(const std::filesystem::path& root, std::string_view abs);

// Reads at most `max_bytes` of a (pseudo) file with plain POSIX calls; procfs
// and sysfs report size 0, so this reads until EOF. nullopt if unreadable.
std::optional<std::string> read_small_file(const std::filesystem::path& path,
                                           std::size_t max_bytes = 64 * 1024);

std::string_view trim(std::string_view s);

// read_small_file + trim.
std::optional<std::string> read_trimmed(const std::filesystem::path& path);

// Target of the symlink dir/name, or of its recorded stand-in file.
std::optional<std::filesystem::path> read_link(const std::filesystem::path& dir,
                                               std::string_view name);

// Entry names of dir, sorted; recorded link stand-ins are reported under the
// name of the link they replace. Empty if dir is missing.
std::vector<std::string> list_entries(const std::filesystem::path& dir);

// Whole-string decimal integer (surrounding whitespace allowed).
std::optional<std::int64_t> parse_int(std::string_view s);

// Python's round(x, 1): correctly rounded, ties to even on the exact binary
// value (what psutil applies to cpu_percent and memory percent).
double round_1dp(double x);

}  // namespace kr::monitor::detail
