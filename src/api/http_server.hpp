#pragma once
// HTTP/1.1 server (Boost.Beast, C++20 coroutines) with uvicorn's observable
// framing: Content-Length always, no compression, keep-alive.
#include <cstdint>
#include <memory>
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
  // Stops accepting and closes open connections.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kr::api
