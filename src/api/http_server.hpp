#pragma once
// HTTP/1.1 server (Boost.Beast, C++20 coroutines) with uvicorn's observable
// framing: Content-Length always, no compression, keep-alive.
// Bounded (api/limits.hpp): per-route body limits (413), idle, header and
// body deadlines, and per-source connection limits with a reserve for the
// host and loopback (api/connection_limiter.hpp), and one budget for the
// bodies held in memory across all connections (api/body_budget.hpp, 503).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "api/connection_limiter.hpp"
#include "api/limits.hpp"
#include "api/router.hpp"

namespace kr::api {

struct HttpServerOptions {
  ConnectionLimits connections;
  // Sources that may use the reserved connections (the host: HOST_ADDRESS).
  // IP literals, or names resolved once when listening. Loopback always is.
  std::vector<std::string> privileged_sources;
  // All request bodies held in memory at once (MAX_BUFFERED_REQUEST_BYTES).
  std::uint64_t max_buffered_body_bytes = limits::kDefaultBufferedBodies;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, const Router& router, HttpServerOptions options = {});
  ~HttpServer();
  // Binds and listens now (throws std::system_error on failure, e.g. port in
  // use), then accepts in the background.
  void listen(const std::string& address, uint16_t port);
  uint16_t port() const;
  // Consulted for every request once its header is in, before its body is
  // read (WebSocket upgrades included; the request's body is still empty):
  // a response returned here is sent instead, with `Connection: close`,
  // and the body is never read (the source-address policy's 403).
  using Gate = std::function<std::optional<HttpResponse>(const HttpRequest&)>;
  void set_gate(Gate gate);
  // Stops accepting and closes open connections.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kr::api
