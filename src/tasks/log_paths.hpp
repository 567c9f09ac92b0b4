#pragma once
// Host-side log paths of a command task (execution.md §1.5.1, decision
// S-HOSTPATHS). Pure string functions, no I/O.
#include <optional>
#include <string>
#include <string_view>

namespace kr::tasks {

// Where `<SHARED_DIR>/logs` is mounted inside task containers.
inline constexpr std::string_view kContainerLogsDir = "/kohakuriver-logs";

// Python `os.path.join(shared_dir, "logs")`: "logs" when shared_dir is empty,
// no extra '/' when shared_dir already ends with one.
std::string logs_dir(std::string_view shared_dir);

// Upstream's translation: the first occurrence of logs_dir(shared_dir)
// anywhere in `path` replaced by /kohakuriver-logs (Python str.replace(.., 1)).
// A path that does not contain it is returned unchanged.
std::string translate_log_path(std::string_view path, std::string_view shared_dir);

// Lexical normalisation of an absolute path: repeated '/' collapsed, "."
// dropped, ".." removes the previous component (never above "/"), no
// trailing '/'. Unlike Python's normpath a leading "//" is collapsed too.
// Symlinks are not resolved. A relative path is normalised the same way
// but stays relative.
std::string lexically_normal_path(std::string_view path);

// S-HOSTPATHS: nullopt when `path` is absolute, has no NUL byte and, after
// lexical normalisation, lies strictly below logs_dir(shared_dir) (also
// normalised); otherwise a message saying why, naming the path.
std::optional<std::string> check_log_path(std::string_view path, std::string_view shared_dir);

// The path the container writes to, derived from the same normalised path
// check_log_path() checks: a path below the normalised logs directory
// becomes /kohakuriver-logs/<rest>; anything else is returned normalised
// (and has been refused by the check).
std::string container_log_path(std::string_view path, std::string_view shared_dir);

// Creates the parent directories of the (checked) log file `path` below
// logs_dir(shared_dir) without following symlinks: each component is made
// with mkdirat and opened with O_NOFOLLOW|O_DIRECTORY relative to its
// parent, so a symlink a task planted in the shared logs tree cannot send
// the runner's mkdir elsewhere. The logs directory itself is created when
// missing (its own path is the operator's). Returns an error message, or
// nullopt on success. Blocking (filesystem I/O).
std::optional<std::string> make_log_parent_dirs(std::string_view path, std::string_view shared_dir);

}  // namespace kr::tasks
