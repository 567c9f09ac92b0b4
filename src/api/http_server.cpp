#include "api/http_server.hpp"

#include <array>
#include <cctype>
#include <list>
#include <set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "api/body_budget.hpp"
#include "api/limits.hpp"
#include "api/ws_upgrade.hpp"

namespace kr::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {
// After an early answer (413) the client may still be sending: read and
// drop for this long so the answer is not lost to a reset.
constexpr auto kLingerTimeout = std::chrono::seconds(2);

// Connections need file descriptors: raise the soft RLIMIT_NOFILE to the
// hard one (as Go's runtime does) and keep the connection limits within
// three quarters of it, leaving the rest to Docker, SQLite and logs.
ConnectionLimits fit_to_fd_limit(ConnectionLimits want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return want;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = std::min<rlim_t>(rl.rlim_max, 1 << 20);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  const auto usable = static_cast<std::size_t>(rl.rlim_cur == RLIM_INFINITY ? want.max_total : rl.rlim_cur / 4 * 3);
  if (usable < want.max_total) {
    spdlog::warn("File descriptor limit {} allows {} connections (not {})", rl.rlim_cur, usable, want.max_total);
    want.reserved = std::min(want.reserved, usable / 4);
    want.max_total = usable;
  }
  return want;
}

bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// An address as the policy and the logs see it: no "%scope" suffix (the
// scope travels separately), IPv4-mapped IPv6 as IPv4.
std::string address_text(asio::ip::address a) {
  if (a.is_v6()) {
    auto v6 = a.to_v6();
    v6.scope_id(0);
    return normalize_address(v6.to_string());
  }
  return a.to_string();
}

struct Peer {
  std::string remote;
  std::uint32_t scope_id = 0;
  std::string local;
};

Peer peer_of(tcp::socket& sock) {
  Peer p;
  boost::system::error_code ec;
  auto ep = sock.remote_endpoint(ec);
  if (!ec) {
    p.remote = address_text(ep.address());
    if (ep.address().is_v6()) p.scope_id = static_cast<std::uint32_t>(ep.address().to_v6().scope_id());
  }
  auto local = sock.local_endpoint(ec);
  if (!ec) p.local = address_text(local.address());
  return p;
}

// Errors that mean "the client went away or was too slow", not "the client
// sent something malformed".
bool is_disconnect(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_reset || ec == asio::error::eof || ec == asio::error::broken_pipe;
}
}  // namespace

struct HttpServer::Impl {
  asio::io_context& io;
  const Router& router;
  HttpServerOptions options;
  tcp::acceptor acceptor;
  std::list<beast::tcp_stream*> open;  // for stop()
  HttpServer::Gate gate;
  bool stopping = false;
  ConnectionLimiter limiter;
  BodyBudget body_budget;
  std::set<std::string> privileged;  // normalised IP literals
  std::size_t refused_since_log = 0;
  std::chrono::steady_clock::time_point last_refusal_log{};

  Impl(asio::io_context& io_, const Router& r, HttpServerOptions o)
      : io(io_), router(r), options(std::move(o)), acceptor(io_), limiter(fit_to_fd_limit(options.connections)),
        body_budget(options.max_buffered_body_bytes) {}

  bool is_privileged(const std::string& address) const {
    return is_loopback_address(address) || privileged.count(address) > 0;
  }

  // Privileged sources given by name are resolved once, in the background
  // (until then only their literal forms and loopback are privileged).
  void add_privileged_sources() {
    for (const auto& s : options.privileged_sources) {
      boost::system::error_code ec;
      auto addr = asio::ip::make_address(s, ec);
      if (!ec) {
        privileged.insert(normalize_address(addr.to_string()));
        continue;
      }
      asio::co_spawn(io, resolve_privileged(s), asio::detached);
    }
  }

  asio::awaitable<void> resolve_privileged(std::string name) {
    tcp::resolver resolver(io);
    auto [ec, results] = co_await resolver.async_resolve(name, "", use_nothrow);
    if (ec) {
      spdlog::warn("Cannot resolve {} (its connections get no reserved slots): {}", name, ec.message());
      co_return;
    }
    for (const auto& r : results) privileged.insert(normalize_address(r.endpoint().address().to_string()));
  }

  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      auto [ec, sock] = co_await acceptor.async_accept(use_nothrow);
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      Peer peer = peer_of(sock);
      auto slot = limiter.try_acquire(peer.remote, is_privileged(peer.remote));
      if (!slot) {
        refuse(sock, peer.remote);
        continue;
      }
      asio::co_spawn(io, session(std::move(sock), std::move(slot), std::move(peer)), asio::detached);
    }
  }

  // Over the connection limits: one non-blocking write of a 503 (never
  // waits on the client), then close.
  void refuse(tcp::socket& sock, const std::string& remote) {
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
        "content-length: 51\r\n\r\n{\"detail\":\"Too many connections from this address\"}";
    static_assert(kBusy.size() - kBusy.find("\r\n\r\n") - 4 == 51);
    boost::system::error_code ec;
    sock.non_blocking(true, ec);
    sock.write_some(asio::buffer(kBusy), ec);
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    ++refused_since_log;
    auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log >= std::chrono::seconds(10)) {
      spdlog::warn("Refused {} connection(s) over the limits (latest from {}; {} open, {} from it)",
                   refused_since_log, remote, limiter.total(), limiter.count(remote));
      refused_since_log = 0;
      last_refusal_log = now;
    }
  }

  // From the header alone (the body is moved in once it is read: a file
  // write's body is tens of MB, no copy).
  static HttpRequest to_request(const http::request<http::string_body>& req, const Peer& peer) {
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    auto q = r.target.find('?');
    std::string raw_path = r.target.substr(0, q);
    r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
    r.path = percent_decode(raw_path, false);
    r.query_params = parse_query(r.query);
    r.host_header = std::string(req[http::field::host]);
    r.content_type = std::string(req[http::field::content_type]);
    r.remote_ip = peer.remote;
    r.remote_scope_id = peer.scope_id;
    r.local_ip = peer.local;
    return r;
  }

  HttpResponse no_room_for_body() const {
    return HttpResponse::detail(503, "Service Unavailable: the runner already holds its limit of " +
                                         std::to_string(body_budget.capacity()) +
                                         " bytes of request bodies (MAX_BUFFERED_REQUEST_BYTES); try again later");
  }

  // An early answer that ends the connection: the body (if any) is never
  // read, only drained and dropped for a short while.
  asio::awaitable<void> answer_and_close(beast::tcp_stream& stream, HttpResponse res, unsigned version,
                                         bool body_pending) {
    const bool written = co_await write_response(stream, std::move(res), version, false);
    if (written && body_pending) co_await linger(stream);
  }

  // `slot` is held for the connection's life (see ConnectionLimiter).
  asio::awaitable<void> session(tcp::socket sock, ConnectionLimiter::Slot slot, Peer peer) {
    beast::tcp_stream stream(std::move(sock));
    auto it = open.insert(open.end(), &stream);
    beast::flat_buffer buffer;
    for (;;) {
      // Idle (new or kept-alive connection): wait for a request to begin.
      if (buffer.size() == 0) {
        stream.expires_after(limits::kIdleTimeout);
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
        if (ec) break;
        buffer.commit(n);
      }
      http::request_parser<http::string_body> parser;
      parser.body_limit(boost::none);  // the route's limit is applied once the header is in
      stream.expires_after(limits::kHeaderTimeout);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
      if (hec) {
        if (!is_disconnect(hec)) co_await write_simple(stream, 400, "Invalid HTTP request received.");
        break;
      }
      const unsigned version = parser.get().version();
      HttpRequest hreq = to_request(parser.get(), peer);
      // The source-address policy first, from the header alone: a refused
      // caller's body is never read (issue 16 item 2), and a refused
      // WebSocket upgrade gets the plain 403 (a rejected handshake).
      if (gate) {
        if (auto refused = gate(hreq)) {
          co_await answer_and_close(stream, std::move(*refused), version, !parser.is_done());
          break;
        }
      }
      const Router::BodyRule rule = router.body_rule(hreq.method, hreq.path);
      const auto announced = parser.content_length();
      if (announced && *announced > rule.limit) {
        co_await answer_and_close(stream, HttpResponse::detail(413, rule.too_large_detail), version, true);
        break;
      }
      parser.body_limit(rule.limit);
      BodyBudget::Lease body_lease;
      if (!parser.is_done()) {
        // Room for the whole body before any of it is read (a chunked body
        // counts as its route's limit).
        body_lease = co_await body_budget.acquire(announced.value_or(rule.limit), limits::kBufferedBodyWait);
        if (!body_lease) {
          spdlog::warn("{} {} from {}: no room for its {} byte body ({} of {} bytes held); answered 503",
                       hreq.method, hreq.path, peer.remote, announced.value_or(rule.limit), body_budget.in_use(),
                       body_budget.capacity());
          co_await answer_and_close(stream, no_room_for_body(), version, true);
          break;
        }
        if (ascii_iequals(parser.get()[http::field::expect], "100-continue") && version >= 11) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          stream.expires_after(limits::kWriteTimeout);
          auto [cec, cn] = co_await asio::async_write(stream, asio::buffer(kContinue), use_nothrow);
          if (cec) break;
        }
        const auto expected = announced.value_or(rule.limit);
        stream.expires_after(limits::kBodyTimeoutBase +
                             std::chrono::seconds(expected / limits::kMinBodyBytesPerSecond));
        auto [bec, bn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        if (bec == http::error::body_limit) {
          co_await answer_and_close(stream, HttpResponse::detail(413, rule.too_large_detail), version, true);
          break;
        }
        if (bec) {
          if (!is_disconnect(bec)) co_await write_simple(stream, 400, "Invalid HTTP request received.");
          break;
        }
      }
      stream.expires_never();
      auto& req = parser.get();
      hreq.body = std::move(req.body());
      if (beast::websocket::is_upgrade(req)) {
        // WebSocket routes (api/websocket.hpp) take the connection over.
        if (const WsRoute* ws = router.match_websocket(hreq.path, hreq.path_params)) {
          body_lease.reset();
          co_await detail::serve_websocket(std::move(stream), parser.release(), std::move(hreq), *ws, *it);
          open.erase(it);
          co_return;
        }
      }
      HttpResponse hres = co_await router.dispatch(hreq);
      bool keep = req.keep_alive() && !stopping;
      spdlog::debug("{} {} {} -> {}", peer.remote, hreq.method, hreq.target, hres.status);
      hreq.body = {};
      body_lease.reset();
      const bool written = co_await write_response(stream, std::move(hres), version, keep);
      if (!written || !keep) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    open.erase(it);
  }

  static asio::awaitable<bool> write_response(beast::tcp_stream& stream, HttpResponse hres, unsigned version,
                                              bool keep) {
    http::response<http::string_body> res{static_cast<http::status>(hres.status), version};
    res.set(http::field::server, "kohakuriver-runner");
    if (!hres.content_type.empty()) res.set(http::field::content_type, hres.content_type);
    for (auto& [k, v] : hres.headers) res.set(k, v);
    res.body() = std::move(hres.body);
    res.keep_alive(keep);
    res.prepare_payload();
    stream.expires_after(limits::kWriteTimeout);
    auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
    co_return !wec;
  }

  // Half-closes, then reads and drops what the client still sends for a
  // short while, so it reads our early answer instead of a reset.
  static asio::awaitable<void> linger(beast::tcp_stream& stream) {
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(kLingerTimeout);
    std::array<char, 16384> sink;
    for (;;) {
      auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), use_nothrow);
      if (rec) break;
    }
  }

  static asio::awaitable<void> write_simple(beast::tcp_stream& stream, int status, const char* text) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = text;
    res.keep_alive(false);
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(10));
    co_await http::async_write(stream, res, use_nothrow);
  }
};

HttpServer::HttpServer(asio::io_context& io, const Router& router, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(io, router, std::move(options))) {}
HttpServer::~HttpServer() = default;

void HttpServer::listen(const std::string& address, uint16_t port) {
  tcp::endpoint ep(asio::ip::make_address(address), port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(ep);
  a.listen(asio::socket_base::max_listen_connections);
  impl_->add_privileged_sources();
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
}

void HttpServer::set_gate(Gate gate) { impl_->gate = std::move(gate); }

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::stop() {
  impl_->stopping = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  for (auto* s : impl_->open) s->socket().close(ec);
}

}  // namespace kr::api
