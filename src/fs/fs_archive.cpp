#include "fs/fs_archive.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>

#include <spdlog/spdlog.h>

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
                                      std::chrono::milliseconds deadline) {
  Download d;
  d.reader = std::make_shared<TarFirstEntryReader>(max_content);
  auto reader = d.reader;
  std::function<void(std::string_view)> sink = [reader](std::string_view bytes) {
    reader->feed(bytes);
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

}  // namespace

asio::awaitable<ArchiveWrite> write_via_archive(docker::DockerClient& docker, const ContainerTarget& t,
                                                const std::string& n, const std::string& bytes,
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
  e.size = bytes.size();
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
  std::string tar = docker::tar_file_header(e);
  tar.reserve(tar.size() + bytes.size() + docker::kTarBlock * 3);
  tar += bytes;
  tar.append(docker::tar_padding(bytes.size()), '\0');
  tar += docker::tar_end();

  std::optional<DockerError> error;
  try {
    co_await docker.put_archive(t.container, dir, std::move(tar), left(end));
  } catch (const DockerError& err) {
    error = err;
  }
  if (!error) co_return ArchiveWrite::Written;
  if (error->timed_out()) throw *error;
  spdlog::debug("fs archive write {}: {}", path, error->message);
  if (error->kind == DockerError::Kind::Http && error->status == 404) co_return ArchiveWrite::ParentMissing;
  co_return ArchiveWrite::UseExec;
}

asio::awaitable<ArchiveRead> read_via_archive(docker::DockerClient& docker, const ContainerTarget& t,
                                              const std::string& n, std::int64_t limit,
                                              std::chrono::milliseconds deadline) {
  ArchiveRead out;
  if (limit < 0 || !archive_matches_exec_view(t.user, t.tmpfs, t.mounts, n)) co_return out;
  auto got = co_await first_entry(docker, t.container, collapse_leading_slashes(n),
                                  static_cast<std::uint64_t>(limit), deadline);
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
