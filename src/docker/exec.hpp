#pragma once
// Engine API exec with hijacked streams (terminal, filesystem API, watch).
//
//   auto id = co_await create_exec(docker, "kohakuriver-task-1", spec);
//   auto s  = co_await start_exec(docker, id, spec.tty);   // raw connection
//   co_await s->write("ls\n");  auto bytes = co_await s->read_some();
//   co_await resize_exec(docker, id, rows, cols);
//   co_await kill_exec(docker, id);                         // D-EXECKILL
//
// or, for a command that runs to completion (stdin streamed, stdout/stderr
// demultiplexed, exit code read, one deadline for everything):
//
//   auto r = co_await run_exec(docker, container, {"cat", "/etc/hostname"}, {});
//
// Like DockerClient, these belong to the client's single-threaded
// io_context. The hijacked connection is a separate UNIX-socket connection
// to dockerd; plain Asio (no Beast): the HTTP part is one request and one
// response header.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "docker/docker_client.hpp"
#include "docker/exec_frames.hpp"

namespace kr::docker {

// A started exec's connection: raw bytes for a TTY exec, the multiplexed
// stdout/stderr frames (StreamDemuxer) otherwise.
class ExecStream {
 public:
  struct Impl;
  explicit ExecStream(std::unique_ptr<Impl> impl);
  ~ExecStream();  // closes the connection
  ExecStream(const ExecStream&) = delete;
  ExecStream& operator=(const ExecStream&) = delete;

  const std::string& exec_id() const;
  bool tty() const;
  // Up to `max` bytes as they arrive; an empty string at EOF, after close()
  // or on a broken connection (the process's end: ask inspect_exec why).
  boost::asio::awaitable<std::string> read_some(std::size_t max = 64u << 10);
  // Writes all of `data` to the process's stdin. `data` must stay valid
  // until the write completes. Throws DockerError{Kind::Transport} when the
  // connection is gone (the process exited or close() was called).
  boost::asio::awaitable<void> write(std::string_view data);
  // Half-close: the process sees EOF on stdin; output still arrives.
  void shutdown_write();
  // Closes the connection now; pending reads/writes complete at once.
  void close();
  bool is_open() const;

 private:
  std::unique_ptr<Impl> impl_;
};

// POST /containers/{name}/exec; returns the exec id.
boost::asio::awaitable<std::string> create_exec(DockerClient& docker, std::string container, ExecSpec spec,
                                                Deadline deadline = kDefaultDeadline);
// POST /exec/{id}/start with the connection upgraded (hijacked). The
// deadline covers connecting and the response header only.
boost::asio::awaitable<std::unique_ptr<ExecStream>> start_exec(DockerClient& docker, std::string exec_id,
                                                               bool tty, Deadline deadline = kDefaultDeadline);
boost::asio::awaitable<void> resize_exec(DockerClient& docker, std::string exec_id, int rows, int cols,
                                         Deadline deadline = kDefaultDeadline);

struct ExecState {
  bool running = false;
  std::optional<std::int64_t> exit_code;
  std::int64_t pid = 0;  // host pid namespace (dockerd's view)
};
boost::asio::awaitable<ExecState> inspect_exec(DockerClient& docker, std::string exec_id,
                                               Deadline deadline = kDefaultDeadline);

// Ends an exec's process and everything in its session or process group
// (D-EXECKILL): SIGHUP, then SIGKILL after `grace`, only while the exec
// still runs. Signals host pids from the runner (which shares dockerd's pid
// namespace); failures are logged, never thrown.
boost::asio::awaitable<void> kill_exec(DockerClient& docker, std::string exec_id,
                                       std::chrono::milliseconds grace = std::chrono::milliseconds(100));

struct RunOptions {
  Deadline deadline{30000};           // everything: create, start, I/O, exit code
  std::optional<std::string> stdin_data;  // streamed, then stdin is closed
  std::size_t max_stdout = 64u << 20;  // beyond: dropped, stdout_truncated set
  std::size_t max_stderr = 1u << 20;
};

struct ExecResult {
  std::int64_t exit_code = -1;
  std::string out;
  std::string err;
  bool stdout_truncated = false;
};

// Runs `cmd` (no TTY) to completion. On the deadline the process is killed
// and DockerError{Kind::Timeout} is thrown.
boost::asio::awaitable<ExecResult> run_exec(DockerClient& docker, std::string container,
                                            std::vector<std::string> cmd, RunOptions options = {});

}  // namespace kr::docker
