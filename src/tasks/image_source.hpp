#pragma once
// Which environment image a command task runs and whether the shared-storage
// tarball must be loaded first (execution.md §1.3.2, protocol.md A.3,
// decisions D-NOTAR and D-TIMESTAMP). Only newest_tarball() touches the
// filesystem (one directory listing).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>

namespace kr::tasks {

struct Tarball {
  std::filesystem::path path;
  int64_t timestamp = 0;  // the digits of `<env>-<digits>.tar` (Unix seconds)

  bool operator==(const Tarball&) const = default;
};

// The timestamp when `filename` is a tarball of `env_name`: upstream's
// `^<re.escape(env_name.lower())>-(\d+)\.tar$` (case-sensitive against the
// lower-cased name; Python's `$` also accepts one trailing "\n"). nullopt for
// anything else, including numbers that do not fit int64.
std::optional<int64_t> tarball_timestamp(std::string_view filename, std::string_view env_name);

// The tarball of `env_name` with the largest timestamp among the entries of
// `dir` (non-recursive; entries are not filtered by type, as upstream).
// Equal timestamps (e.g. "-5" and "-05") resolve to the smaller file name so
// the choice is stable. Missing or unreadable directory → nullopt.
std::optional<Tarball> newest_tarball(const std::filesystem::path& dir, std::string_view env_name);

// Docker's image `Created` (RFC 3339, e.g. "2024-05-01T12:34:56.123456789Z")
// as whole Unix seconds, the way Python 3.11 `int(fromisoformat(...)
// .timestamp())` computes it: fractional seconds of any length are dropped
// (toward zero), `Z` and ±HH:MM / ±HHMM / ±HH offsets are honoured; any
// single character separates date and time, as in Python 3.11. A value without an offset is taken as UTC
// (Docker always sends one). nullopt when unparsable.
std::optional<int64_t> parse_docker_created(std::string_view rfc3339);

enum class SyncAction {
  UpToDate,  // use the local image as is
  Load,      // load `tarball` into Docker, then tag it kohakuriver/<env>:base
  NoSource,  // neither tarball nor local image: provisioning fails (D-NOTAR)
};

struct SyncDecision {
  SyncAction action = SyncAction::UpToDate;
  std::optional<Tarball> tarball;  // set for Load

  bool operator==(const SyncDecision&) const = default;
};

// Upstream's needs_sync with D-NOTAR: a tarball newer than the local image's
// `Created` (strictly greater) or a missing/unparsable `Created` → Load; no
// tarball → UpToDate when the image exists locally, else NoSource (the
// caller reports the normal "Docker image sync failed for container '<env>'"
// instead of letting Docker pull kohakuriver/<env>:base from a registry).
SyncDecision decide_sync(std::optional<int64_t> local_created, const std::optional<Tarball>& newest,
                         bool local_image_exists);

}  // namespace kr::tasks
