#pragma once
// Whole-file read and write through Docker's archive API (the transport
// `docker cp` uses), for the paths where it sees exactly what an exec would
// (fs/archive_rules.hpp). Much cheaper than piping the bytes through an
// exec's stdin/stdout: no process in the container, one copy in dockerd.
// The exec path stays the reference: whenever this one cannot answer with
// certainty (a symlink, a missing file, any Docker error but a timeout) the
// caller falls back to it, which also produces upstream's error texts.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "workload/target.hpp"

namespace kr::docker {
class DockerClient;
}

namespace kr::fs {

enum class ArchiveWrite {
  Written,
  ParentMissing,  // the directory does not exist (mkdir -p, then try again)
  UseExec,
};

// A file's new content: bytes as they are, or base64 text in the canonical
// form (base64_canonical_size accepted it, so it cannot fail to decode)
// decoded piece by piece while the tar is being sent.
struct WriteContent {
  std::string_view text;
  bool base64 = false;
  std::uint64_t size = 0;  // of the bytes (decoded)
  static WriteContent raw(std::string_view bytes) { return {bytes, false, bytes.size()}; }
};

// Replaces or creates regular file `n` with `content` (its text must stay
// valid until this returns). An existing regular
// file keeps its permission bits and owner (read from its tar header);
// a new one is root's 0644, as `cat >` under umask 022 makes it. Anything
// else at `n` (symlink, directory, device) -> UseExec. Throws
// DockerError{Kind::Timeout} when `deadline` passes.
boost::asio::awaitable<ArchiveWrite> write_via_archive(docker::DockerClient& docker, const workload::ContainerTarget& t,
                                                       const std::string& n, const WriteContent& content,
                                                       std::chrono::milliseconds deadline);

struct ArchiveRead {
  enum Kind { UseExec, Directory, File } kind = UseExec;
  std::string content;     // File: the first `limit` bytes
  bool truncated = false;  // File: its size is over `limit`
};

// Sees a regular file's bytes while they arrive (to encode them for the
// answer meanwhile): begin() once its header is in, then data() pieces.
// What it made is of use only when the read ends with kind File.
class ReadSink {
 public:
  virtual ~ReadSink() = default;
  virtual void begin(std::uint64_t bytes, bool truncated) = 0;
  virtual void data(std::string_view piece) = 0;
};

// Reads up to `limit` (>= 0) bytes of regular file `n`; stops the download
// there. Throws DockerError{Kind::Timeout} when `deadline` passes.
boost::asio::awaitable<ArchiveRead> read_via_archive(docker::DockerClient& docker, const workload::ContainerTarget& t,
                                                     const std::string& n, std::int64_t limit,
                                                     std::chrono::milliseconds deadline, ReadSink* sink = nullptr);

}  // namespace kr::fs
