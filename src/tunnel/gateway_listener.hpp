#pragma once
// Ruling T11: containers reach the runner's tunnel endpoint at their
// network's gateway (KOHAKURIVER_TUNNEL_URL). When RUNNER_BIND_IP is a
// specific address, the runner also listens on that gateway, serving only
// /ws/tunnel. The gateway address exists only once the Docker network does,
// so binding is retried until it works.
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "api/http_server.hpp"
#include "api/router.hpp"

namespace kr::tunnel {

class TunnelHub;

// True when `bind_ip` does not already cover `gateway`.
bool needs_gateway_listener(const std::string& bind_ip, const std::string& gateway);

class GatewayListener {
 public:
  GatewayListener(boost::asio::io_context& io, TunnelHub& hub, std::string gateway, std::uint16_t port);
  void start();
  void stop();

 private:
  void attempt();
  boost::asio::io_context& io_;
  api::Router router_;
  std::unique_ptr<api::HttpServer> server_;  // fresh per attempt
  boost::asio::steady_timer retry_;
  std::string gateway_;
  std::uint16_t port_;
  bool listening_ = false, stopped_ = false, warned_ = false;
};

}  // namespace kr::tunnel
