// Exec with hijacked streams over dockerd's UNIX socket (plain Asio).
#include "docker/exec.hpp"

#include <signal.h>
#include <sys/types.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "docker/names.hpp"
#include "docker/wire.hpp"

#ifndef KR_VERSION
#define KR_VERSION "dev"
#endif

namespace kr::docker {

namespace asio = boost::asio;
using unix_socket = asio::local::stream_protocol::socket;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
constexpr auto kTok = asio::as_tuple(asio::use_awaitable);

namespace {
constexpr std::size_t kMaxHeader = 64u << 10;
constexpr std::size_t kWriteChunk = 256u << 10;

bool valid_exec_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  return true;
}

Deadline left_of(Clock::time_point end) {
  auto d = std::chrono::duration_cast<Deadline>(end - Clock::now());
  return std::max(d, Deadline(1));
}
}  // namespace

struct ExecStream::Impl {
  explicit Impl(const asio::any_io_executor& ex) : sock(std::make_shared<unix_socket>(ex)) {}
  std::shared_ptr<unix_socket> sock;
  std::string id;
  bool tty = false;
  std::string pending;  // stream bytes that arrived with the response header
};

ExecStream::ExecStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ExecStream::~ExecStream() { close(); }
const std::string& ExecStream::exec_id() const { return impl_->id; }
bool ExecStream::tty() const { return impl_->tty; }
bool ExecStream::is_open() const { return impl_->sock->is_open(); }

void ExecStream::close() {
  error_code ignored;
  impl_->sock->close(ignored);
}

void ExecStream::shutdown_write() {
  error_code ignored;
  impl_->sock->shutdown(asio::socket_base::shutdown_send, ignored);
}

asio::awaitable<std::string> ExecStream::read_some(std::size_t max) {
  if (!impl_->pending.empty()) {
    std::string out;
    if (impl_->pending.size() <= max) {
      out.swap(impl_->pending);
    } else {
      out = impl_->pending.substr(0, max);
      impl_->pending.erase(0, max);
    }
    co_return out;
  }
  auto sock = impl_->sock;  // survives close() while suspended
  if (!sock->is_open()) co_return std::string();
  std::string buf(max, '\0');
  auto [ec, n] = co_await sock->async_read_some(asio::buffer(buf), kTok);
  if (ec) co_return std::string();
  buf.resize(n);
  co_return buf;
}

asio::awaitable<void> ExecStream::write(std::string_view data) {
  auto sock = impl_->sock;
  while (!data.empty()) {
    const auto n = std::min(data.size(), kWriteChunk);
    auto [ec, w] = co_await asio::async_write(*sock, asio::buffer(data.data(), n), kTok);
    if (ec) throw DockerError(DockerError::Kind::Transport, 0, "exec stdin: " + ec.message());
    data.remove_prefix(n);
  }
}

asio::awaitable<std::string> create_exec(DockerClient& docker, std::string container, ExecSpec spec,
                                         Deadline deadline) {
  if (!is_valid_container_name(container))
    throw DockerError(DockerError::Kind::InvalidArgument, 0, "invalid container name '" + container + "'");
  auto body = exec_create_body(spec);
  json r = co_await docker.call(Method::Post, "/containers/" + container + "/exec", std::move(body), deadline);
  if (!r.is_object() || !r.contains("Id") || !r["Id"].is_string())
    throw DockerError(DockerError::Kind::Protocol, 0, "exec create: no Id in the answer");
  co_return r["Id"].get<std::string>();
}

namespace {

// Parses "HTTP/1.1 101 UPGRADED\r\n...". Returns the status (0 if
// malformed) and the Content-Length (-1 if absent).
std::pair<int, long long> parse_head(std::string_view head) {
  int status = 0;
  long long length = -1;
  auto sp = head.find(' ');
  if (sp != std::string_view::npos && head.size() >= sp + 4)
    std::from_chars(head.data() + sp + 1, head.data() + sp + 4, status);
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    auto end = head.find("\r\n", pos + 2);
    auto line = head.substr(pos + 2, (end == std::string_view::npos ? head.size() : end) - pos - 2);
    auto colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string name(line.substr(0, colon));
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (name == "content-length") std::from_chars(value.data(), value.data() + value.size(), length);
    }
    pos = end;
  }
  return {status, length};
}

}  // namespace

asio::awaitable<std::unique_ptr<ExecStream>> start_exec(DockerClient& docker, std::string exec_id, bool tty,
                                                        Deadline deadline) {
  if (!valid_exec_id(exec_id)) throw DockerError(DockerError::Kind::InvalidArgument, 0, "invalid exec id");
  if (deadline.count() <= 0) deadline = Deadline(30000);
  const auto end = Clock::now() + deadline;
  const std::string version = co_await docker.api_version(deadline);
  auto ex = co_await asio::this_coro::executor;
  auto impl = std::make_unique<ExecStream::Impl>(ex);
  impl->id = exec_id;
  impl->tty = tty;
  auto sock = impl->sock;

  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer timer(ex);
  timer.expires_at(end);
  std::weak_ptr<unix_socket> weak = sock;
  timer.async_wait([weak, timed_out](error_code ec) {
    if (ec) return;
    *timed_out = true;
    if (auto s = weak.lock()) {
      error_code ignored;
      s->close(ignored);
    }
  });
  auto fail = [&](const std::string& what) -> DockerError {
    if (*timed_out)
      return DockerError(DockerError::Kind::Timeout, 0,
                         "Docker API call timed out after " + std::to_string(deadline.count()) +
                             "ms (POST /exec/" + exec_id + "/start)");
    return DockerError(DockerError::Kind::Transport, 0, "exec start: " + what);
  };

  auto [cec] = co_await sock->async_connect(asio::local::stream_protocol::endpoint(docker.socket_path()), kTok);
  if (cec) {
    if (*timed_out) throw fail("");
    throw DockerError(DockerError::Kind::Unreachable, 0,
                      "Docker daemon not reachable at " + docker.socket_path() + ": " + cec.message());
  }
  std::string body = tty ? R"({"Detach":false,"Tty":true})" : R"({"Detach":false,"Tty":false})";
  std::string req = "POST /v" + version + "/exec/" + exec_id +
                    "/start HTTP/1.1\r\nHost: docker\r\nUser-Agent: kohakuriver-runner/" KR_VERSION
                    "\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                    "Content-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(req), kTok);
  if (wec) throw fail(wec.message());

  std::string got;
  std::size_t head_end = std::string::npos;
  char buf[4096];
  while (head_end == std::string::npos) {
    auto [rec, n] = co_await sock->async_read_some(asio::buffer(buf), kTok);
    if (rec) throw fail(rec.message());
    got.append(buf, n);
    head_end = got.find("\r\n\r\n");
    if (head_end == std::string::npos && got.size() > kMaxHeader) throw fail("response header too large");
  }
  auto [status, length] = parse_head(std::string_view(got).substr(0, head_end));
  std::string rest = got.substr(head_end + 4);
  if (status >= 400 || status == 0) {
    // Error answers are small JSON bodies with a Content-Length.
    while ((length < 0 || rest.size() < static_cast<std::size_t>(length)) && rest.size() < kMaxHeader) {
      auto [rec, n] = co_await sock->async_read_some(asio::buffer(buf), kTok);
      if (rec) break;
      rest.append(buf, n);
    }
    timer.cancel();
    if (status == 0) throw DockerError(DockerError::Kind::Protocol, 0, "exec start: malformed answer");
    throw DockerError(DockerError::Kind::Http, status, wire::error_message_from_body(rest, status));
  }
  timer.cancel();
  if (*timed_out) throw fail("");
  impl->pending = std::move(rest);
  co_return std::make_unique<ExecStream>(std::move(impl));
}

asio::awaitable<void> resize_exec(DockerClient& docker, std::string exec_id, int rows, int cols,
                                  Deadline deadline) {
  if (!valid_exec_id(exec_id)) throw DockerError(DockerError::Kind::InvalidArgument, 0, "invalid exec id");
  wire::Query q;
  q.add("h", rows).add("w", cols);
  co_await docker.call(Method::Post, "/exec/" + exec_id + "/resize" + q.str(), std::nullopt, deadline);
}

asio::awaitable<ExecState> inspect_exec(DockerClient& docker, std::string exec_id, Deadline deadline) {
  if (!valid_exec_id(exec_id)) throw DockerError(DockerError::Kind::InvalidArgument, 0, "invalid exec id");
  json r = co_await docker.call(Method::Get, "/exec/" + exec_id + "/json", std::nullopt, deadline);
  ExecState s;
  if (r.is_object()) {
    s.running = r.value("Running", false);
    if (auto it = r.find("ExitCode"); it != r.end() && it->is_number_integer()) s.exit_code = it->get<std::int64_t>();
    if (auto it = r.find("Pid"); it != r.end() && it->is_number_integer()) s.pid = it->get<std::int64_t>();
  }
  co_return s;
}

namespace {

// The pid plus every process whose session or process group it leads
// (the shell's jobs). From /proc (the runner shares dockerd's pid view).
std::vector<pid_t> session_members(pid_t leader) {
  std::vector<pid_t> out{leader};
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    pid_t pid = 0;
    auto [p, perr] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (perr != std::errc() || p != name.data() + name.size() || pid == leader) continue;
    std::ifstream f(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    // After ") ": state ppid pgrp session
    char state = 0;
    long ppid = 0, pgrp = 0, session = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %ld %ld %ld", &state, &ppid, &pgrp, &session) != 4) continue;
    if (pgrp == leader || session == leader) out.push_back(pid);
  }
  return out;
}

int signal_all(const std::vector<pid_t>& pids, int sig) {
  int delivered = 0;
  for (pid_t p : pids) {
    if (::kill(p, sig) == 0) {
      ++delivered;
    } else if (errno != ESRCH) {
      spdlog::warn("exec: kill({}, {}) failed: {}", p, sig, std::strerror(errno));
    }
  }
  return delivered;
}

}  // namespace

asio::awaitable<void> kill_exec(DockerClient& docker, std::string exec_id, std::chrono::milliseconds grace) {
  try {
    if (!valid_exec_id(exec_id)) co_return;
    json info = co_await docker.call(Method::Get, "/exec/" + exec_id + "/json", std::nullopt, Deadline(5000));
    if (!info.is_object() || !info.value("Running", false)) co_return;
    const auto pid = info.value("Pid", std::int64_t{0});
    const std::string container_id = info.value("ContainerID", std::string());
    if (pid <= 0 || container_id.size() < 12) co_return;
    const auto leader = static_cast<pid_t>(pid);
    // The pid is dockerd's view. Signal it only if that process really sits
    // in the container's cgroup (guards against a runner in another pid
    // namespace, where the number would name an unrelated process).
    std::function<bool()> verify = [leader, container_id] {
      std::ifstream f("/proc/" + std::to_string(leader) + "/cgroup");
      std::string cg((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      return cg.find(container_id) != std::string::npos;
    };
    if (!co_await run_blocking(verify)) {
      spdlog::warn("exec {}: pid {} is not in container {}'s cgroup; not signalled", exec_id.substr(0, 12), pid,
                   container_id.substr(0, 12));
      co_return;
    }
    std::function<std::vector<pid_t>()> scan = [leader] { return session_members(leader); };
    auto pids = co_await run_blocking(scan);
    if (grace.count() > 0) {
      signal_all(pids, SIGHUP);
      asio::steady_timer t(co_await asio::this_coro::executor);
      t.expires_after(grace);
      co_await t.async_wait(kTok);
      pids = co_await run_blocking(scan);  // members may have forked meanwhile
    }
    if (signal_all(pids, SIGKILL) > 0) spdlog::debug("exec {}: killed {} process(es)", exec_id.substr(0, 12), pids.size());
  } catch (const std::exception& e) {
    spdlog::warn("exec {}: could not end its process: {}", exec_id.substr(0, 12), e.what());
  }
}

namespace {

struct WriterState {
  bool done = false;
  std::string error;
};

// Feeds stdin, then half-closes. A plain coroutine function (arguments
// copied into its frame), see docs/decisions.md on GCC 12.
asio::awaitable<void> feed_stdin(std::shared_ptr<ExecStream> stream, std::shared_ptr<std::string> data,
                                 std::shared_ptr<WriterState> state) {
  try {
    co_await stream->write(*data);
    stream->shutdown_write();
  } catch (const std::exception& e) {
    state->error = e.what();
  }
  state->done = true;
}

}  // namespace

asio::awaitable<ExecResult> run_exec(DockerClient& docker, std::string container, std::vector<std::string> cmd,
                                     RunOptions options) {
  const auto deadline = options.deadline.count() > 0 ? options.deadline : Deadline(30000);
  const auto end = Clock::now() + deadline;
  ExecSpec spec;
  spec.cmd = std::move(cmd);
  spec.attach_stdin = options.stdin_data.has_value();
  const std::string id = co_await create_exec(docker, container, spec, deadline);
  std::shared_ptr<ExecStream> stream = co_await start_exec(docker, id, false, left_of(end));
  auto ex = co_await asio::this_coro::executor;

  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer timer(ex);
  timer.expires_at(end);
  std::weak_ptr<ExecStream> weak = stream;
  timer.async_wait([weak, timed_out](error_code ec) {
    if (ec) return;
    *timed_out = true;
    if (auto s = weak.lock()) s->close();
  });

  auto writer = std::make_shared<WriterState>();
  if (options.stdin_data) {
    auto data = std::make_shared<std::string>(std::move(*options.stdin_data));
    asio::co_spawn(ex, feed_stdin(stream, data, writer), asio::detached);
  } else {
    writer->done = true;
  }

  ExecResult result;
  StreamDemuxer demux;
  StreamDemuxer::Sink sink = [&](StdStream s, std::string_view payload) {
    if (s == StdStream::Stderr) {
      if (result.err.size() < options.max_stderr)
        result.err.append(payload.substr(0, options.max_stderr - result.err.size()));
    } else if (result.out.size() + payload.size() <= options.max_stdout) {
      result.out.append(payload);
    } else {
      result.out.append(payload.substr(0, options.max_stdout - result.out.size()));
      result.stdout_truncated = true;
    }
  };
  bool protocol_error = false;
  for (;;) {
    std::string chunk = co_await stream->read_some(256u << 10);
    if (chunk.empty()) break;
    try {
      demux.feed(chunk, sink);
    } catch (const std::exception&) {
      protocol_error = true;
      break;
    }
  }
  // The process has ended (or we timed out): the writer finishes at once.
  while (!writer->done && !*timed_out) {
    asio::steady_timer t(ex);
    t.expires_after(std::chrono::milliseconds(2));
    co_await t.async_wait(kTok);
  }
  stream->close();
  if (*timed_out) {
    co_await kill_exec(docker, id, std::chrono::milliseconds(0));
    throw DockerError(DockerError::Kind::Timeout, 0,
                      "operation timed out after " + std::to_string(deadline.count() / 1000) + " s");
  }
  timer.cancel();
  if (protocol_error) throw DockerError(DockerError::Kind::Protocol, 0, "exec: malformed output stream");
  // dockerd may close the stream an instant before it records the exit code.
  for (int attempt = 0;; ++attempt) {
    ExecState st = co_await inspect_exec(docker, id, left_of(end));
    if (!st.running && st.exit_code) {
      result.exit_code = *st.exit_code;
      break;
    }
    if (Clock::now() >= end) {
      co_await kill_exec(docker, id, std::chrono::milliseconds(0));
      throw DockerError(DockerError::Kind::Timeout, 0,
                        "operation timed out after " + std::to_string(deadline.count() / 1000) + " s");
    }
    asio::steady_timer t(ex);
    t.expires_after(std::chrono::milliseconds(attempt < 10 ? 2 : 20));
    co_await t.async_wait(kTok);
  }
  co_return result;
}

}  // namespace kr::docker
