// The only translation unit under src/docker/ that includes Beast.
//
// Deadlines: every call owns a steady_timer; when it fires (or the call is
// cancelled) the call's socket is closed, which makes whatever Asio/Beast
// operation is pending complete with an error at once. We then report the
// *reason* (timeout / cancel) rather than the resulting EBADF. This works
// for every operation, including Beast's composed reads, without relying on
// per-operation cancellation support.

#include "docker/transport.hpp"

#include "common/blocking.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#ifndef KR_VERSION
#define KR_VERSION "dev"
#endif

namespace kr::docker {

namespace detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using unix_socket = asio::local::stream_protocol::socket;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kTok = asio::as_tuple(asio::use_awaitable);
constexpr std::uint64_t kMaxBufferedBody = 64u << 20;  // list/inspect bodies
constexpr std::size_t kMaxErrorBody = 1u << 20;        // error body of a stream
constexpr std::size_t kUploadChunk = 256u << 10;
constexpr std::size_t kStreamChunk = 64u << 10;
// Pooled connections idle longer than this are dropped rather than reused.
constexpr auto kMaxIdleAge = std::chrono::seconds(60);
// Timers cannot take "forever": clamp absurd deadlines to a year.
constexpr milliseconds kMaxDeadline = std::chrono::hours(24 * 365);

http::verb to_verb(Method m) {
  switch (m) {
    case Method::Get: return http::verb::get;
    case Method::Head: return http::verb::head;
    case Method::Post: return http::verb::post;
    case Method::Put: return http::verb::put;
    case Method::Delete: return http::verb::delete_;
  }
  return http::verb::get;
}

struct Conn {
  explicit Conn(const asio::any_io_executor& ex) : sock(ex) {}
  unix_socket sock;
  beast::flat_buffer buf;
  Clock::time_point idle_since{};
};

// One in-flight call: its watchdog timer and the connection to close when
// the deadline passes or the call is cancelled.
struct Call : std::enable_shared_from_this<Call> {
  enum class Abort { None, Timeout, Cancelled };
  explicit Call(const asio::any_io_executor& ex) : timer(ex) {}

  asio::steady_timer timer;
  std::shared_ptr<Conn> conn;
  Abort aborted = Abort::None;
  bool finished = false;
  milliseconds armed_for{0};  // the deadline, for the error message
  std::uint64_t generation = 0;

  void abort(Abort why) {
    if (finished) return;
    if (aborted == Abort::None) aborted = why;
    if (conn) {
      error_code ignored;
      conn->sock.close(ignored);
    }
  }
  void arm(milliseconds d) {
    d = std::clamp(d, milliseconds(0), kMaxDeadline);
    armed_for = d;
    const auto gen = ++generation;  // a stale expiry must not abort
    timer.expires_after(d);
    timer.async_wait([w = weak_from_this(), gen](error_code ec) {
      if (ec) return;
      if (auto self = w.lock(); self && self->generation == gen) self->abort(Abort::Timeout);
    });
  }
  void disarm() {
    ++generation;
    timer.cancel();
  }
};

enum class Stage { Connect, Write, Read };

// Blocking-free reads of an upload file: each chunk is read on a helper
// thread so that a slow (e.g. NFS) shared directory never stalls the
// io_context; the coroutine resumes on its own executor afterwards.
struct FileReader {
  int fd = -1;
  ~FileReader() {
    if (fd >= 0) ::close(fd);
  }
};

struct OpenedFile {
  int fd = -1;
  std::uint64_t size = 0;
  std::string error;
};

// Runs on a blocking-pool thread (open/stat of a hung NFS path, or of a
// FIFO nobody writes, block as well).
OpenedFile open_for_upload(const std::string& path) {
  OpenedFile f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    f.error = std::strerror(errno);
    return f;
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    f.error = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    f.error = "not a regular file";  // its size is needed for Content-Length
  } else {
    f.size = static_cast<std::uint64_t>(st.st_size);
    return f;
  }
  ::close(f.fd);
  f.fd = -1;
  return f;
}

// Runs on a blocking-pool thread.
ssize_t read_chunk(int fd, char* data, std::size_t want) {
  ssize_t r;
  do {
    r = ::read(fd, data, want);
  } while (r < 0 && errno == EINTR);
  if (r < 0) r = -errno;  // errno is per-thread: carry it back in the result
  return r;
}

// Upload files (image tarballs) live on shared storage that may hang: a few
// stuck reads at most, each bounded by the call's deadline.
BlockingLane& upload_lane() {
  static auto* lane = new BlockingLane("image tarball read", 4);
  return *lane;
}

milliseconds left_until(Clock::time_point until) {
  return std::max(std::chrono::duration_cast<milliseconds>(until - Clock::now()), milliseconds(1));
}

}  // namespace

struct Transport::Impl : std::enable_shared_from_this<Transport::Impl> {
  asio::any_io_executor ex;
  std::string path;
  std::size_t max_idle;
  std::vector<std::shared_ptr<Conn>> idle;
  std::map<std::uint64_t, std::weak_ptr<Call>> active;
  std::uint64_t next_call_id = 1;
  std::uint64_t connections_opened = 0;

  Impl(asio::any_io_executor e, std::string p, std::size_t m)
      : ex(std::move(e)), path(std::move(p)), max_idle(m) {}

  // A pooled connection is usable if the peer has neither closed it nor
  // sent unsolicited bytes. MSG_PEEK|MSG_DONTWAIT never blocks.
  static bool still_open(Conn& c) {
    if (!c.sock.is_open() || c.buf.size() != 0) return false;
    char byte;
    ssize_t n = ::recv(c.sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  std::shared_ptr<Conn> take_idle() {
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (Clock::now() - c->idle_since < kMaxIdleAge && still_open(*c)) return c;
      error_code ignored;
      c->sock.close(ignored);
    }
    return nullptr;
  }

  void give_back(std::shared_ptr<Conn> c) {
    if (idle.size() >= max_idle || c->buf.size() != 0 || !c->sock.is_open()) {
      error_code ignored;
      c->sock.close(ignored);
      return;
    }
    c->idle_since = Clock::now();
    idle.push_back(std::move(c));
  }

  [[noreturn]] void fail(const Call& call, Stage stage, const error_code& ec,
                         const HttpRequest& req) const {
    const std::string what = std::string(method_name(req.method)) + " " + req.target;
    if (call.aborted == Call::Abort::Timeout)
      throw DockerError(DockerError::Kind::Timeout, 0,
                        "Docker API call timed out after " + std::to_string(call.armed_for.count()) +
                            "ms (" + what + ")");
    if (call.aborted == Call::Abort::Cancelled)
      throw DockerError(DockerError::Kind::Cancelled, 0, "Docker API call cancelled (" + what + ")");
    if (stage == Stage::Connect)
      throw DockerError(DockerError::Kind::Unreachable, 0,
                        "Docker daemon not reachable at " + path + ": " + ec.message());
    throw DockerError(DockerError::Kind::Transport, 0,
                      "Docker connection error (" + what + "): " + ec.message());
  }

  // RAII registration of a call: cancel_all() and the CancelToken reach it
  // while registered; on scope exit it can no longer close anything.
  struct Scope {
    std::shared_ptr<Impl> impl;
    std::shared_ptr<Call> call;
    std::uint64_t id;
    CancelToken token;
    std::uint64_t token_sub;
    ~Scope() {
      call->finished = true;
      call->disarm();
      impl->active.erase(id);
      token.unsubscribe(token_sub);
    }
  };

  std::unique_ptr<Scope> begin(const HttpRequest& req) {
    if (req.cancel.cancelled())
      throw DockerError(DockerError::Kind::Cancelled, 0,
                        std::string("Docker API call cancelled (") + method_name(req.method) + " " +
                            req.target + ")");
    auto call = std::make_shared<Call>(ex);
    const auto id = next_call_id++;
    active.emplace(id, call);
    auto sub = req.cancel.subscribe([w = std::weak_ptr<Call>(call)] {
      if (auto c = w.lock()) c->abort(Call::Abort::Cancelled);
    });
    // Built in place: a copied temporary's destructor would unregister it.
    return std::unique_ptr<Scope>(new Scope{shared_from_this(), call, id, req.cancel, sub});
  }

  asio::awaitable<error_code> connect(Call& call) {
    auto conn = std::make_shared<Conn>(ex);
    call.conn = conn;
    error_code ec;
    asio::local::stream_protocol::endpoint ep;
    try {
      ep = asio::local::stream_protocol::endpoint(path);
    } catch (const boost::system::system_error& e) {  // path too long for sun_path
      co_return e.code();
    }
    std::tie(ec) = co_await conn->sock.async_connect(ep, kTok);
    if (!ec && !conn->sock.is_open()) ec = asio::error::operation_aborted;
    if (!ec) ++connections_opened;
    co_return ec;
  }

  static void fill_headers(http::fields& f, const HttpRequest& req) {
    f.set(http::field::host, "docker");
    f.set(http::field::user_agent, "kohakuriver-runner/" KR_VERSION);
    for (const auto& [k, v] : req.headers) f.set(k, v);
  }

  static void copy_headers(const http::fields& f, HttpResponse& out) {
    for (const auto& field : f)
      out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }

  asio::awaitable<error_code> write_request(Conn& conn, const HttpRequest& req) {
    http::request<http::string_body> r{to_verb(req.method), req.target, 11};
    fill_headers(r, req);
    if (!req.body.empty()) {
      r.set(http::field::content_type, req.content_type);
      r.body() = req.body;
    }
    r.prepare_payload();
    auto [ec, n] = co_await http::async_write(conn.sock, r, kTok);
    co_return ec;
  }

  // The header of a request whose body the caller then writes itself.
  asio::awaitable<error_code> write_body_header(Conn& conn, const HttpRequest& req, std::uint64_t length) {
    http::request<http::empty_body> r{to_verb(req.method), req.target, 11};
    fill_headers(r, req);
    r.set(http::field::content_type, req.content_type);
    r.content_length(length);
    http::request_serializer<http::empty_body> sr{r};
    auto [ec, n] = co_await http::async_write_header(conn.sock, sr, kTok);
    co_return ec;
  }

  // Sends the header, then the pieces `upload_next` makes, one at a time.
  asio::awaitable<error_code> write_pieces(Conn& conn, const HttpRequest& req) {
    if (auto ec = co_await write_body_header(conn, req, req.upload_size)) co_return ec;
    std::uint64_t remaining = req.upload_size;
    while (remaining > 0) {
      const std::string_view piece = req.upload_next();
      if (piece.empty() || piece.size() > remaining)
        throw DockerError(DockerError::Kind::InvalidArgument, 0,
                          "request body does not match its announced length (" + req.target + ")");
      auto [wec, wn] = co_await asio::async_write(conn.sock, asio::buffer(piece.data(), piece.size()), kTok);
      if (wec) co_return wec;
      remaining -= piece.size();
    }
    co_return error_code{};
  }

  // Sends the header, then the file in chunks; the file is never held in
  // memory as a whole (tarballs can be several GB).
  // A read that hangs past `until` throws DockerError{Timeout}; the stuck
  // thread is abandoned (its file descriptor stays open until it returns).
  asio::awaitable<error_code> write_upload(Conn& conn, const HttpRequest& req, Clock::time_point until) {
    const std::string path = req.upload_file->string();
    auto open_file = [path] { return open_for_upload(path); };
    OpenedFile opened;
    try {
      opened = co_await run_blocking_for(upload_lane(), left_until(until), open_file, req.cancel);
    } catch (const BlockingTimeout&) {
      opened.error = "timed out opening it (storage hung?)";
    } catch (const BlockingCancelled&) {
      opened.error = "cancelled";
    } catch (const BlockingBusy& e) {
      opened.error = e.what();
    }
    if (opened.fd < 0 && opened.error == "cancelled")
      throw DockerError(DockerError::Kind::Cancelled, 0, "upload of " + path + " cancelled");
    if (opened.fd < 0 && opened.error.rfind("timed out", 0) == 0)
      throw DockerError(DockerError::Kind::Timeout, 0, "cannot read " + path + ": " + opened.error);
    FileReader file{opened.fd};
    if (opened.fd < 0)
      throw DockerError(DockerError::Kind::InvalidArgument, 0,
                        "cannot read " + req.upload_file->string() + ": " + opened.error);
    if (auto ec = co_await write_body_header(conn, req, opened.size)) co_return ec;

    // Shared with the reading thread, which may outlive this call when a
    // read hangs: it owns the descriptor from then on.
    auto chunk = std::make_shared<std::vector<char>>(kUploadChunk);
    auto owned_fd = std::make_shared<FileReader>();
    owned_fd->fd = file.fd;
    file.fd = -1;
    std::uint64_t remaining = opened.size;
    while (remaining > 0) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, kUploadChunk));
      auto read_next = [owned_fd, chunk, want] { return read_chunk(owned_fd->fd, chunk->data(), want); };
      ssize_t got = 0;
      bool hung = false, cancelled = false;
      try {
        got = co_await run_blocking_for(upload_lane(), left_until(until), read_next, req.cancel);
      } catch (const BlockingTimeout&) {
        hung = true;
      } catch (const BlockingCancelled&) {
        cancelled = true;
      }
      if (cancelled)
        throw DockerError(DockerError::Kind::Cancelled, 0, "upload of " + req.upload_file->string() + " cancelled");
      if (hung)
        throw DockerError(DockerError::Kind::Timeout, 0,
                          "reading " + req.upload_file->string() + " timed out (storage hung?)");
      if (got <= 0)
        throw DockerError(DockerError::Kind::InvalidArgument, 0,
                          "reading " + req.upload_file->string() + " failed: " +
                              (got == 0 ? std::string("file shrank while uploading")
                                        : std::string(std::strerror(static_cast<int>(-got)))));
      auto [wec, wn] = co_await asio::async_write(
          conn.sock, asio::buffer(chunk->data(), static_cast<std::size_t>(got)), kTok);
      if (wec) co_return wec;
      remaining -= static_cast<std::uint64_t>(got);
    }
    co_return error_code{};
  }
};

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, name)) return v;
  return {};
}

Transport::Transport(asio::any_io_executor ex, std::string socket_path, std::size_t max_idle)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(socket_path), max_idle)) {}

Transport::~Transport() { cancel_all(); }

const std::string& Transport::socket_path() const { return impl_->path; }

ClientStats Transport::stats() const {
  return {impl_->connections_opened, impl_->idle.size(), impl_->active.size()};
}

void Transport::cancel_all() {
  // Copy first: abort() only closes sockets, but keep iteration independent.
  std::vector<std::shared_ptr<Call>> calls;
  for (auto& [id, w] : impl_->active)
    if (auto c = w.lock()) calls.push_back(std::move(c));
  for (auto& c : calls) c->abort(Call::Abort::Cancelled);
  for (auto& c : impl_->idle) {
    error_code ignored;
    c->sock.close(ignored);
  }
  impl_->idle.clear();
}

asio::awaitable<HttpResponse> Transport::request(HttpRequest req) {
  auto self = impl_;  // keeps pool and registry alive while suspended
  const auto started = Clock::now();
  const milliseconds deadline = req.deadline.value_or(kMaxDeadline);
  for (int attempt = 0;; ++attempt) {
    auto scope = self->begin(req);
    Call& call = *scope->call;
    // A retry gets what is left of the caller's deadline, not a new one.
    const auto spent = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
    call.arm(std::max(deadline - spent, milliseconds(1)));
    call.armed_for = deadline;

    std::shared_ptr<Conn> conn = self->take_idle();
    const bool reused = conn != nullptr;
    if (reused) {
      call.conn = conn;
    } else {
      if (auto ec = co_await self->connect(call)) self->fail(call, Stage::Connect, ec, req);
      conn = call.conn;
    }

    if (auto ec = co_await self->write_request(*conn, req)) {
      // The peer had closed before reading the request: nothing was done,
      // so any method may be resent once on a fresh connection.
      if (reused && attempt == 0 && call.aborted == Call::Abort::None) continue;
      self->fail(call, Stage::Write, ec, req);
    }

    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxBufferedBody);
    if (req.method == Method::Head) parser.skip(true);
    auto [ec, n] = co_await http::async_read(conn->sock, conn->buf, parser, kTok);
    if (ec) {
      // No byte of a response on a reused connection: the daemon dropped it
      // (e.g. restarted). Retry once, but only when resending is harmless.
      const bool nothing_read = ec == http::error::end_of_stream ||
                                ec == asio::error::connection_reset || ec == asio::error::eof;
      if (reused && attempt == 0 && req.idempotent && nothing_read &&
          call.aborted == Call::Abort::None)
        continue;
      self->fail(call, Stage::Read, ec, req);
    }

    auto msg = parser.release();
    HttpResponse out;
    out.status = static_cast<int>(msg.result_int());
    Impl::copy_headers(msg, out);
    out.body = std::move(msg.body());
    call.finished = true;  // from here on the watchdog must not touch conn
    call.disarm();
    call.conn.reset();
    if (!msg.need_eof()) {
      self->give_back(std::move(conn));
    } else {
      error_code ignored;
      conn->sock.close(ignored);
    }
    co_return out;
  }
}

asio::awaitable<HttpResponse> Transport::stream(HttpRequest req,
                                                std::function<void(std::string_view)> on_data) {
  auto self = impl_;
  auto scope = self->begin(req);
  Call& call = *scope->call;
  if (req.deadline) call.arm(*req.deadline);  // none: ends only by cancel/EOF

  if (auto ec = co_await self->connect(call)) self->fail(call, Stage::Connect, ec, req);
  auto conn = call.conn;
  error_code wec;
  if (req.upload_next) {
    wec = co_await self->write_pieces(*conn, req);
  } else if (req.upload_file) {
    const auto until = req.deadline ? Clock::now() + *req.deadline : Clock::now() + kMaxDeadline;
    wec = co_await self->write_upload(*conn, req, until);
  } else {
    wec = co_await self->write_request(*conn, req);
  }

  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  auto [hec, hn] = co_await http::async_read_header(conn->sock, conn->buf, parser, kTok);
  // A daemon may refuse an upload early and close: its answer still counts.
  if (hec) self->fail(call, wec ? Stage::Write : Stage::Read, wec ? wec : hec, req);

  HttpResponse out;
  out.status = static_cast<int>(parser.get().result_int());
  Impl::copy_headers(parser.get(), out);
  const bool is_error = out.status >= 400;

  std::vector<char> chunk(kStreamChunk);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    // read_some, not read: read would wait until the 64 KiB buffer is full,
    // holding back events that have already arrived.
    auto [ec, n] = co_await http::async_read_some(conn->sock, conn->buf, parser, kTok);
    if (ec == http::error::need_buffer) ec = {};
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got > 0) {
      std::string_view data(chunk.data(), got);
      if (is_error) {
        if (out.body.size() < kMaxErrorBody)
          out.body.append(data.substr(0, kMaxErrorBody - out.body.size()));
      } else {
        on_data(data);
      }
    }
    if (ec) {
      // The error body is best effort: report the status we already have.
      if (is_error && call.aborted == Call::Abort::None) break;
      self->fail(call, Stage::Read, ec, req);
    }
  }
  error_code ignored;
  call.finished = true;
  conn->sock.close(ignored);
  co_return out;
}

}  // namespace detail
}  // namespace kr::docker
