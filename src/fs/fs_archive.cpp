#include "fs/fs_archive.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "common/base64.hpp"
#include "docker/docker_client.hpp"
#include "docker/docker_error.hpp"
#include "docker/tar_codec.hpp"
#include "fs/archive_rules.hpp"
#include "fs/fs_paths.hpp"

namespace kr::fs {

namespace asio = boost::asio;
using docker::DockerError;
using docker::TarEntry;
using docker::TarFirstEntryReader;
using Clock = std::chrono::steady_clock;

namespace {

struct StopReading {};

bool is_regular(char type) { return type == '0' || type == '7'; }

std::string base_name(const std::string& p) { return p.substr(p.rfind('/') + 1); }

std::chrono::milliseconds left(Clock::time_point end) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
  if (d.count() <= 0) throw DockerError(DockerError::Kind::Timeout, 0, "filesystem operation deadline passed");
  return d;
}

struct Download {
  enum { Missing, Failed, Got } status = Failed;
  std::shared_ptr<TarFirstEntryReader> reader;
};

// GET the archive of `path` until the first entry's header and up to
// `max_content` bytes of it are in, then hang up.
asio::awaitable<Download> first_entry(docker::DockerClient& docker, const std::string& container,
                                      const std::string& path, std::uint64_t max_content,
                                      std::chrono::milliseconds deadline, ReadSink* content_sink = nullptr) {
  Download d;
  d.reader = std::make_shared<TarFirstEntryReader>(max_content);
  auto reader = d.reader;
  // The sink sees a regular file's content as it grows in the reader.
  auto seen = std::make_shared<std::size_t>(0);
  auto begun = std::make_shared<bool>(false);
  std::function<void(std::string_view)> sink = [reader, content_sink, seen, begun,
                                                max_content](std::string_view bytes) {
    reader->feed(bytes);
    if (content_sink && reader->has_entry() && is_regular(reader->entry().type)) {
      if (!*begun) {
        *begun = true;
        const auto size = reader->entry().size;
        content_sink->begin(std::min(size, max_content), size > max_content);
      }
      const std::string& c = reader->content();
      if (c.size() > *seen) {
        content_sink->data(std::string_view(c).substr(*seen));
        *seen = c.size();
      }
    }
    if (reader->done()) throw StopReading{};
  };
  std::optional<DockerError> error;
  bool malformed = false;
  try {
    co_await docker.get_archive(container, path, sink, deadline);
  } catch (const StopReading&) {
  } catch (const DockerError& e) {
    error = e;
  } catch (const std::runtime_error& e) {  // a tar stream we do not understand
    spdlog::debug("fs archive read {}: {}", path, e.what());
    malformed = true;
  }
  if (error) {
    if (error->timed_out()) throw *error;
    if (error->kind == DockerError::Kind::Http && error->status == 404) {
      d.status = Download::Missing;
    } else {
      spdlog::debug("fs archive read {}: {}", path, error->message);
    }
    co_return d;
  }
  if (malformed || !d.reader->done()) co_return d;  // stream ended early
  d.status = Download::Got;
  co_return d;
}

// The one-file tar of a write, made piece by piece as the upload goes:
// header, the content (decoded from base64 a piece at a time, or as it
// is), padding and end blocks. Nothing of the file is copied into a tar.
struct TarPieces {
  std::string header;
  WriteContent content;
  std::string tail;
  std::string decoded;  // the current decoded piece
  std::size_t pos = 0;  // in content.text
  int stage = 0;

  // Base64 characters per piece: a multiple of 4, 252 KiB decoded.
  static constexpr std::size_t kBase64Piece = 86016 * 4;

  std::string_view next() {
    switch (stage) {
      case 0:
        stage = 1;
        return header;
      case 1:
        if (pos < content.text.size()) {
          if (!content.base64) {
            pos = content.text.size();
            return content.text;
          }
          const std::string_view in = content.text.substr(pos, kBase64Piece);
          pos += in.size();
          if (decoded.size() < kBase64Piece / 4 * 3) decoded.resize(kBase64Piece / 4 * 3);
          return {decoded.data(), base64_decode_canonical_chunk(in, decoded.data())};
        }
        stage = 2;
        [[fallthrough]];
      case 2:
        stage = 3;
        return tail;
      default:
        return {};
    }
  }
};

}  // namespace

asio::awaitable<ArchiveWrite> write_via_archive(docker::DockerClient& docker, const workload::ContainerTarget& t,
                                                const std::string& n, const WriteContent& content,
                                                std::chrono::milliseconds deadline) {
  if (!archive_matches_exec_view(t.user, t.tmpfs, t.mounts, n)) co_return ArchiveWrite::UseExec;
  const auto end = Clock::now() + deadline;
  const std::string path = collapse_leading_slashes(n);
  const std::string dir = python_dirname(path);
  const std::string name = base_name(path);
  if (dir.empty() || name.empty()) co_return ArchiveWrite::UseExec;

  // What is there now decides the new file's mode and owner.
  TarEntry e;
  e.name = name;
  e.size = content.size;
  e.mtime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
  auto probe = co_await first_entry(docker, t.container, path, 0, left(end));
  if (probe.status == Download::Failed) co_return ArchiveWrite::UseExec;
  if (probe.status == Download::Got) {
    const TarEntry& old = probe.reader->entry();
    if (!is_regular(old.type)) co_return ArchiveWrite::UseExec;  // symlink: the exec follows it
    e.mode = old.mode;
    e.uid = old.uid;
    e.gid = old.gid;
  }
  auto pieces = std::make_shared<TarPieces>();
  pieces->header = docker::tar_file_header(e);
  pieces->content = content;
  pieces->tail.assign(docker::tar_padding(content.size), '\0');
  pieces->tail += docker::tar_end();
  const std::uint64_t tar_size = pieces->header.size() + content.size + pieces->tail.size();
  std::function<std::string_view()> next = [pieces] { return pieces->next(); };

  std::optional<DockerError> error;
  try {
    co_await docker.put_archive(t.container, dir, tar_size, std::move(next), left(end));
  } catch (const DockerError& err) {
    error = err;
  }
  if (!error) co_return ArchiveWrite::Written;
  if (error->timed_out()) throw *error;
  spdlog::debug("fs archive write {}: {}", path, error->message);
  if (error->kind == DockerError::Kind::Http && error->status == 404) co_return ArchiveWrite::ParentMissing;
  co_return ArchiveWrite::UseExec;
}

asio::awaitable<ArchiveRead> read_via_archive(docker::DockerClient& docker, const workload::ContainerTarget& t,
                                              const std::string& n, std::int64_t limit,
                                              std::chrono::milliseconds deadline, ReadSink* sink) {
  ArchiveRead out;
  if (limit < 0 || !archive_matches_exec_view(t.user, t.tmpfs, t.mounts, n)) co_return out;
  auto got = co_await first_entry(docker, t.container, collapse_leading_slashes(n),
                                  static_cast<std::uint64_t>(limit), deadline, sink);
  if (got.status != Download::Got) co_return out;
  const TarEntry& e = got.reader->entry();
  if (e.type == '5') {
    out.kind = ArchiveRead::Directory;
  } else if (is_regular(e.type)) {
    out.kind = ArchiveRead::File;
    out.content = std::move(got.reader->content());
    out.truncated = e.size > static_cast<std::uint64_t>(limit);
  }
  co_return out;
}

}  // namespace kr::fs
