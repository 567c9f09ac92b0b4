#include "tunnel/gateway_listener.hpp"

#include <spdlog/spdlog.h>

#include "tunnel/tunnel_hub.hpp"

namespace kr::tunnel {

bool needs_gateway_listener(const std::string& bind_ip, const std::string& gateway) {
  return !gateway.empty() && bind_ip != "0.0.0.0" && bind_ip != "::" && bind_ip != gateway;
}

GatewayListener::GatewayListener(boost::asio::io_context& io, TunnelHub& hub, std::string gateway,
                                 std::uint16_t port)
    : io_(io), retry_(io), gateway_(std::move(gateway)), port_(port) {
  add_container_tunnel_route(router_, hub);
}

void GatewayListener::start() { attempt(); }

void GatewayListener::stop() {
  stopped_ = true;
  retry_.cancel();
  if (server_) server_->stop();
}

void GatewayListener::attempt() {
  if (stopped_) return;
  try {
    server_ = std::make_unique<api::HttpServer>(io_, router_);
    server_->listen(gateway_, port_);
    listening_ = true;
    spdlog::info("Tunnel endpoint also listening on the container gateway {}:{} (T11)", gateway_, port_);
    return;
  } catch (const std::exception& e) {
    // Usually: the Docker network (and so its gateway address) does not exist yet.
    if (!warned_)
      spdlog::warn("Cannot listen on the container gateway {}:{} yet ({}); retrying every 5 s", gateway_, port_,
                   e.what());
    warned_ = true;
    server_.reset();
  }
  retry_.expires_after(std::chrono::seconds(5));
  retry_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) attempt();
  });
}

}  // namespace kr::tunnel
