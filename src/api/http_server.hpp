#pragma once
// HTTP/1.1 server (Boost.Beast, C++20 coroutines) with uvicorn's observable
// framing: Content-Length always, no compression, keep-alive.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "api/router.hpp"

namespace kr::api {

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, const Router& router);
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
