#pragma once
// HTTP/1.1 server (Boost.Beast, C++20 coroutines) with uvicorn's observable
// framing: Content-Length always, no compression, keep-alive.
// Bounded (api/limits.hpp): per-route body limits (413), idle, header and
// body deadlines, and per-source connection limits with a reserve for the
// host and loopback (api/connection_limiter.hpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "api/connection_limiter.hpp"
#include "api/router.hpp"

namespace kr::api {

struct HttpServerOptions {
  ConnectionLimits connections;
  // Sources that may use the reserved connections (the host: HOST_ADDRESS).
  // IP literals, or names resolved once when listening. Loopback always is.
  std::vector<std::string> privileged_sources;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, const Router& router, HttpServerOptions options = {});
  ~HttpServer();
  // Binds and listens now (throws std::system_error on failure, e.g. port in
  // use), then accepts in the background.
  void listen(const std::string& address, uint16_t port);
  uint16_t port() const;
  // Consulted for every request before it is routed (WebSocket upgrades
  // included): a response returned here is sent instead (the source-address
  // policy's 403).
  using Gate = std::function<std::optional<HttpResponse>(const HttpRequest&)>;
  void set_gate(Gate gate);
  // Stops accepting and closes open connections.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kr::api
