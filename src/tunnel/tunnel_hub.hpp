#pragma once
// The runner's tunnel server (tunnel-overlay.md §2.2-2.4, rulings T1-T10):
// container tunnels from in-container tunnel-clients, user forward sessions
// from the host's proxy, and the relay between them. Runs on the runner's
// single I/O thread on top of the WebSocket endpoints of src/api.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "api/websocket.hpp"
#include "tunnel/frame.hpp"

namespace kr::api {
class Router;
}

namespace kr::tunnel {

// The IP addresses a container has on its networks; empty when it does not
// exist (ruling T10: a tunnel is accepted only from its container's address).
using ContainerAddressLookup =
    std::function<boost::asio::awaitable<std::vector<std::string>>(std::string container_id)>;

struct HubOptions {
  // A forward session waits this long for a container's tunnel (T4).
  std::chrono::milliseconds tunnel_wait{8000};
  // Null: no source-address check (unit tests).
  ContainerAddressLookup container_addresses;
  // Serves `/ws/forward/vm-{task_id}/...` (the runner dials the VM itself,
  // spec §2.3.3); set by the VM service. Null: such names are handled like
  // containers (no tunnel → the `Error:` text after the T4 wait).
  std::function<boost::asio::awaitable<void>(api::WebSocket&, std::string container_id, std::uint16_t port,
                                             Proto proto)>
      vm_forward;
};

class TunnelHub {
 public:
  TunnelHub(boost::asio::any_io_executor ex, HubOptions options);
  ~TunnelHub();
  TunnelHub(const TunnelHub&) = delete;
  TunnelHub& operator=(const TunnelHub&) = delete;

  // GET /ws/tunnel/{container_id}: the in-container client's tunnel.
  boost::asio::awaitable<void> serve_tunnel(api::WebSocket& ws, std::string container_id);
  // GET /ws/forward/{container_id}/{port}?proto=tcp|udp: one user session.
  boost::asio::awaitable<void> serve_forward(api::WebSocket& ws, std::string container_id, std::uint16_t port,
                                             Proto proto);

  std::size_t tunnel_count() const;
  std::size_t forward_count() const;
  // Wakes waiting sessions and closes every tunnel and forward session.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Options of the two WebSocket routes (message limits, pings every 20 s
// and a 20 s pong deadline: T5).
api::WsOptions tunnel_ws_options();
api::WsOptions forward_ws_options();

// Registers both routes on `router` (the hub must outlive the router's use).
void add_tunnel_routes(api::Router& router, TunnelHub& hub);
// Only the container side (for the extra listener on the container gateway, T11).
void add_container_tunnel_route(api::Router& router, TunnelHub& hub);

}  // namespace kr::tunnel
