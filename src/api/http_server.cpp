#include "api/http_server.hpp"

#include <list>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include "api/ws_upgrade.hpp"

namespace kr::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

namespace {
// Generous: filesystem writes of up to 50 MB arrive base64/JSON encoded.
constexpr std::uint64_t kBodyLimit = 96ull * 1024 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(75);
}  // namespace

struct HttpServer::Impl {
  asio::io_context& io;
  const Router& router;
  tcp::acceptor acceptor;
  std::list<beast::tcp_stream*> open;  // for stop()
  bool stopping = false;

  Impl(asio::io_context& io_, const Router& r) : io(io_), router(r), acceptor(io_) {}

  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      auto [ec, sock] = co_await acceptor.async_accept(use_nothrow);
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      asio::co_spawn(io, session(std::move(sock)), asio::detached);
    }
  }

  static HttpRequest to_request(const http::request<http::string_body>& req, const std::string& remote) {
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
    r.body = req.body();
    r.remote_ip = remote;
    return r;
  }

  asio::awaitable<void> session(tcp::socket sock) {
    beast::tcp_stream stream(std::move(sock));
    auto it = open.insert(open.end(), &stream);
    std::string remote;
    {
      boost::system::error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) remote = ep.address().to_string();
    }
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kBodyLimit);
      stream.expires_after(kIdleTimeout);
      auto [rec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
      if (rec) {
        if (rec == http::error::body_limit) {
          co_await write_simple(stream, 413, "Request Entity Too Large", false);
        } else if (rec != http::error::end_of_stream && rec != beast::error::timeout &&
                   rec != asio::error::operation_aborted && rec != asio::error::connection_reset &&
                   n > 0) {
          co_await write_simple(stream, 400, "Invalid HTTP request received.", false);
        }
        break;
      }
      stream.expires_never();
      auto& req = parser.get();
      HttpRequest hreq = to_request(req, remote);
      if (beast::websocket::is_upgrade(req)) {
        // WebSocket routes (api/websocket.hpp) take the connection over.
        if (const WsRoute* ws = router.match_websocket(hreq.path, hreq.path_params)) {
          co_await detail::serve_websocket(std::move(stream), parser.release(), std::move(hreq), *ws, *it);
          open.erase(it);
          co_return;
        }
      }
      HttpResponse hres = co_await router.dispatch(hreq);
      bool keep = req.keep_alive() && !stopping;
      http::response<http::string_body> res{static_cast<http::status>(hres.status), req.version()};
      res.set(http::field::server, "kohakuriver-runner");
      if (!hres.content_type.empty()) res.set(http::field::content_type, hres.content_type);
      for (auto& [k, v] : hres.headers) res.set(k, v);
      res.body() = std::move(hres.body);
      res.keep_alive(keep);
      res.prepare_payload();
      spdlog::debug("{} {} {} -> {}", remote, hreq.method, hreq.target, hres.status);
      stream.expires_after(std::chrono::seconds(60));
      auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
      if (wec || !keep) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    open.erase(it);
  }

  static asio::awaitable<void> write_simple(beast::tcp_stream& stream, int status, const char* text, bool keep) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = text;
    res.keep_alive(keep);
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(10));
    co_await http::async_write(stream, res, use_nothrow);
  }
};

HttpServer::HttpServer(asio::io_context& io, const Router& router) : impl_(std::make_unique<Impl>(io, router)) {}
HttpServer::~HttpServer() = default;

void HttpServer::listen(const std::string& address, uint16_t port) {
  tcp::endpoint ep(asio::ip::make_address(address), port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(ep);
  a.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
}

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::stop() {
  impl_->stopping = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  for (auto* s : impl_->open) s->socket().close(ec);
}

}  // namespace kr::api
