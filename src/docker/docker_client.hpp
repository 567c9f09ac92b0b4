#pragma once
// Asynchronous Docker Engine API client (HTTP/1.1 over dockerd's UNIX
// socket). The runner never runs the `docker` CLI (decisions.md, "Docker:
// Engine API only"); everything goes through this class.
//
// Threading: one DockerClient belongs to one single-threaded io_context (or
// strand). Call its members, and CancelToken::cancel(), from that thread
// only. Nothing here blocks that thread: sockets are asynchronous and the
// only file I/O (image load uploads) runs on a helper thread.
//
// Deadlines: every call has one. `kDefaultDeadline` (0) means the client's
// default (ClientOptions::default_deadline, 30 s). When it passes, the
// call's socket is closed and DockerError{Kind::Timeout} is thrown. Event
// streams are the one exception: they are meant to stay open, and dockerd
// sends their response header only with the first event, so they end only
// via their CancelToken, cancel_all(), or the daemon closing them.
//
// API version: negotiated on first use from /_ping's API-Version header as
// min(server, kMaxApiVersion), like the docker CLI does, and re-negotiated
// after the daemon was unreachable (it may have been upgraded). Pinning one
// version would break on Docker >= 29, whose minimum API version is 1.44,
// while 20.10 (API 1.41) is still common on nodes.
//
// Coroutine arguments are taken by value on purpose: a coroutine frame must
// not hold references to the caller's temporaries.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/cancel_token.hpp"
#include "docker/docker_error.hpp"

namespace kr::docker {

namespace detail {
class Transport;
}

enum class Method { Get, Head, Post, Put, Delete };
const char* method_name(Method m);

using Deadline = std::chrono::milliseconds;
inline constexpr Deadline kDefaultDeadline{0};  // "use the client default"
// Container create/start: dockerd serialises much of them, so under a burst
// of hundreds of containers on a small node (or a start still in flight from
// before a runner restart) one call can queue for a while; more than the
// client's 30 s default.
inline constexpr Deadline kCreateStartDeadline{std::chrono::seconds(120)};

struct ClientOptions {
  std::string socket_path = "/var/run/docker.sock";
  Deadline default_deadline{30000};
  std::size_t max_idle_connections = 4;  // keep-alive pool bound
  std::string api_version;               // e.g. "1.41"; empty = negotiate
  // Called when a call (buffered or streamed) ends, successful or not, with
  // its unversioned target and duration (the runner's /metrics histogram).
  std::function<void(Method, const std::string& target, double seconds)> on_request;
};

struct ClientStats {
  std::uint64_t connections_opened = 0;  // successful connects so far
  std::size_t idle_connections = 0;      // pooled right now
  std::size_t active_calls = 0;          // in flight right now
};

// POST /containers/{id}/wait conditions. NotRunning returns at once for a
// container that already exited (with its exit code), which is what
// re-attach needs; NextExit must be issued before start.
enum class WaitCondition { NotRunning, NextExit, Removed };

struct WaitResult {
  std::int64_t status_code = 0;
  std::optional<std::string> error;  // Error.Message when dockerd set one
};

class DockerClient {
 public:
  using json = nlohmann::json;
  template <class T>
  using awaitable = boost::asio::awaitable<T>;

  // Highest API version whose request/response shapes this code was
  // written and checked against (bodies follow the v1.41 documentation;
  // nothing used changed up to 1.44).
  static constexpr const char* kMaxApiVersion = "1.44";
  // Used when /_ping carries no API-Version header (pre-1.25 daemons).
  static constexpr const char* kFallbackApiVersion = "1.41";

  explicit DockerClient(boost::asio::any_io_executor ex,
                        std::string socket_path = "/var/run/docker.sock");
  DockerClient(boost::asio::any_io_executor ex, ClientOptions options);
  ~DockerClient();  // aborts in-flight calls (they see Kind::Cancelled)
  DockerClient(const DockerClient&) = delete;
  DockerClient& operator=(const DockerClient&) = delete;

  // Generic call. `target` is unversioned ("/containers/json?all=1"); the
  // version prefix is added. Returns the parsed JSON body, a JSON string
  // for a non-JSON body, null for an empty one. Status >= 400 throws
  // DockerError{Kind::Http} with dockerd's message. GET/HEAD are retried
  // once when a pooled keep-alive connection turns out to be dead.
  awaitable<json> call(Method method, std::string target, std::optional<json> body = std::nullopt,
                       Deadline deadline = kDefaultDeadline);

  // GET /_ping: {"api_version","os_type","experimental","negotiated_version"}.
  awaitable<json> ping(Deadline deadline = kDefaultDeadline);
  awaitable<json> version(Deadline deadline = kDefaultDeadline);
  // The version prefix in use (negotiating first if needed), e.g. "1.41".
  awaitable<std::string> api_version(Deadline deadline = kDefaultDeadline);

  // ---- containers (names/ids are validated: is_valid_container_name) ----
  // POST /containers/create?name=; returns the new id.
  awaitable<std::string> create_container(std::string name, json body,
                                          Deadline deadline = kDefaultDeadline);
  awaitable<void> start_container(std::string name, Deadline deadline = kDefaultDeadline);  // 304 ok
  awaitable<void> kill_container(std::string name, std::string signal = "KILL",
                                 Deadline deadline = kDefaultDeadline);
  awaitable<void> pause_container(std::string name, Deadline deadline = kDefaultDeadline);
  awaitable<void> unpause_container(std::string name, Deadline deadline = kDefaultDeadline);
  // dockerd waits up to timeout_s before SIGKILL, so the default deadline
  // is timeout_s plus the client default. 304 (already stopped) is success.
  awaitable<void> stop_container(std::string name, int timeout_s = 10,
                                 Deadline deadline = kDefaultDeadline);
  awaitable<void> remove_container(std::string name, bool force = false,
                                   bool remove_volumes = false,
                                   Deadline deadline = kDefaultDeadline);
  awaitable<json> inspect_container(std::string name, Deadline deadline = kDefaultDeadline);
  // GET /containers/json; filters like {"label":["k=v"],"name":["^kohakuriver-"]}.
  awaitable<json> list_containers(bool all = false, json filters = json::object(),
                                  Deadline deadline = kDefaultDeadline);
  // Long poll on its own connection; `deadline` may be hours (there is no
  // "forever": loop on Kind::Timeout if you need one).
  awaitable<WaitResult> wait_container(std::string name, Deadline deadline,
                                       WaitCondition condition = WaitCondition::NotRunning,
                                       CancelToken cancel = {});
  // POST /commit; returns the new image id.
  awaitable<std::string> commit_container(std::string name, std::string repo, std::string tag,
                                          Deadline deadline = kDefaultDeadline);

  // ---- container archive (what `docker cp` uses; docker/tar_codec.hpp) ----
  // PUT /containers/{name}/archive?path=dir&noOverwriteDirNonDir=1: `tar`
  // is extracted into `dir` (which must exist: 404 otherwise).
  awaitable<void> put_archive(std::string name, std::string dir, std::string tar,
                              Deadline deadline = kDefaultDeadline);
  // The same with the tar streamed: `size` bytes (Content-Length) made by
  // `next` piece after piece, each sent before the next call, so a large
  // file is never held as one tar in memory. An exception from `next`
  // abandons the upload mid-body (dockerd may then have written part of
  // the file: produce only bytes known to be good).
  awaitable<void> put_archive(std::string name, std::string dir, std::uint64_t size,
                              std::function<std::string_view()> next, Deadline deadline = kDefaultDeadline);
  // GET /containers/{name}/archive?path=: the tar stream's bytes go to
  // `on_data` as they arrive. An exception thrown by on_data closes the
  // connection and propagates (how a caller stops reading early).
  awaitable<void> get_archive(std::string name, std::string path,
                              std::function<void(std::string_view)> on_data,
                              Deadline deadline = kDefaultDeadline);

  // ---- images (references validated: is_valid_image_reference) ----
  awaitable<std::optional<json>> inspect_image(std::string ref,
                                               Deadline deadline = kDefaultDeadline);  // nullopt on 404
  awaitable<json> list_images(Deadline deadline = kDefaultDeadline);
  // POST /images/create; no tag means ":latest" (the API alone would pull
  // every tag). `registry_auth` is the X-Registry-Auth value (base64url
  // JSON), empty for anonymous pulls. An {"error":…} line in the progress
  // stream throws DockerError{Kind::Stream}.
  awaitable<void> pull_image(std::string ref, Deadline deadline, CancelToken cancel = {},
                             std::string registry_auth = {});
  // POST /images/load?quiet=1 with the tarball streamed from disk in
  // 256 KiB chunks. Returns what dockerd announced, in order: references
  // from "Loaded image: X" and ids from "Loaded image ID: sha256:…" (empty
  // when it announced nothing; the caller decides whether that is a
  // failure). Error lines throw DockerError{Kind::Stream}; an unreadable
  // file throws Kind::InvalidArgument.
  awaitable<std::vector<std::string>> load_image(std::filesystem::path tarball, Deadline deadline,
                                                 CancelToken cancel = {});
  awaitable<void> tag_image(std::string source, std::string repo, std::string tag,
                            Deadline deadline = kDefaultDeadline);
  awaitable<void> remove_image(std::string ref, bool force = false,
                               Deadline deadline = kDefaultDeadline);

  // ---- networks ----
  awaitable<std::optional<json>> inspect_network(std::string name,
                                                 Deadline deadline = kDefaultDeadline);  // nullopt on 404
  awaitable<std::string> create_network(json body, Deadline deadline = kDefaultDeadline);  // id
  awaitable<void> remove_network(std::string name, Deadline deadline = kDefaultDeadline);

  // ---- events ----
  // GET /events: calls on_event for each event until `stop` is cancelled
  // (returns normally), the daemon ends the stream (returns normally) or
  // the connection fails (throws). Reconnect with `since_unix` = the last
  // event's "time" and drop duplicates (the resolution is one second). An
  // exception thrown by on_event ends the stream and propagates.
  awaitable<void> stream_events(json filters, std::function<void(const json&)> on_event,
                                std::optional<long long> since_unix = std::nullopt,
                                CancelToken stop = {});

  // Shutdown: closes every in-flight call's socket now (they throw
  // Kind::Cancelled) and drops pooled connections. Calls made afterwards
  // work normally.
  void cancel_all();
  ClientStats stats() const;
  const std::string& socket_path() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with in-flight coroutines
};

}  // namespace kr::docker
