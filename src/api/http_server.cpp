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
  std::set<std::string> privileged;  // normalised IP literals
  std::size_t refused_since_log = 0;
  std::chrono::steady_clock::time_point last_refusal_log{};

  Impl(asio::io_context& io_, const Router& r, HttpServerOptions o)
      : io(io_), router(r), options(std::move(o)), acceptor(io_), limiter(fit_to_fd_limit(options.connections)) {}

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
      std::string remote;
      boost::system::error_code rec;
      auto ep = sock.remote_endpoint(rec);
      if (!rec) remote = normalize_address(ep.address().to_string());
      auto slot = limiter.try_acquire(remote, is_privileged(remote));
      if (!slot) {
        refuse(sock, remote);
        continue;
      }
      asio::co_spawn(io, session(std::move(sock), std::move(slot), remote), asio::detached);
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

  // Takes the body over (a file write's body is tens of MB: no copy).
  static HttpRequest to_request(http::request<http::string_body>& req, const std::string& remote) {
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
    r.body = std::move(req.body());
    r.remote_ip = remote;
    return r;
  }

  static std::uint64_t route_body_limit(const Router& router, const http::request<http::string_body>& req) {
    std::string target(req.target());
    return router.body_limit(std::string(req.method_string()), percent_decode(target.substr(0, target.find('?')), false));
  }

  static HttpResponse too_large(std::uint64_t limit) {
    return HttpResponse::detail(413, "Request body too large: this route accepts at most " + std::to_string(limit) +
                                         " bytes");
  }

  // `slot` is held for the connection's life (see ConnectionLimiter).
  asio::awaitable<void> session(tcp::socket sock, ConnectionLimiter::Slot slot, std::string remote) {
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
      const std::uint64_t limit = route_body_limit(router, parser.get());
      if (auto len = parser.content_length(); len && *len > limit) {
        co_await write_response(stream, too_large(limit), parser.get().version(), false);
        co_await linger(stream);
        break;
      }
      parser.body_limit(limit);
      if (!parser.is_done()) {
        if (ascii_iequals(parser.get()[http::field::expect], "100-continue") && parser.get().version() >= 11) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          stream.expires_after(limits::kWriteTimeout);
          auto [cec, cn] = co_await asio::async_write(stream, asio::buffer(kContinue), use_nothrow);
          if (cec) break;
        }
        const auto expected = parser.content_length().value_or(limit);
        stream.expires_after(limits::kBodyTimeoutBase +
                             std::chrono::seconds(expected / limits::kMinBodyBytesPerSecond));
        auto [bec, bn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        if (bec == http::error::body_limit) {
          co_await write_response(stream, too_large(limit), parser.get().version(), false);
          co_await linger(stream);
          break;
        }
        if (bec) {
          if (!is_disconnect(bec)) co_await write_simple(stream, 400, "Invalid HTTP request received.");
          break;
        }
      }
      stream.expires_never();
      auto& req = parser.get();
      HttpRequest hreq = to_request(req, remote);
      // The source-address policy first: a refused WebSocket upgrade gets
      // the plain 403 (the client sees a rejected handshake).
      std::optional<HttpResponse> refused;
      if (gate) refused = gate(hreq);
      if (!refused && beast::websocket::is_upgrade(req)) {
        // WebSocket routes (api/websocket.hpp) take the connection over.
        if (const WsRoute* ws = router.match_websocket(hreq.path, hreq.path_params)) {
          co_await detail::serve_websocket(std::move(stream), parser.release(), std::move(hreq), *ws, *it);
          open.erase(it);
          co_return;
        }
      }
      HttpResponse hres;
      if (refused)
        hres = std::move(*refused);
      else
        hres = co_await router.dispatch(hreq);
      bool keep = req.keep_alive() && !stopping;
      spdlog::debug("{} {} {} -> {}", remote, hreq.method, hreq.target, hres.status);
      const bool written = co_await write_response(stream, std::move(hres), req.version(), keep);
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
