#pragma once
// Port forwarding into a VM (tunnel-overlay.md §2.3.3, ruling T8): no
// tunnel client runs in VMs, so the runner is the far end of the user's
// forward session itself: CONNECT dials {vm_ip}:{port} (TCP with a 10 s
// limit, or a connected UDP socket: real UDP, T8), DATA is written to that
// socket, what the VM sends comes back as DATA (one datagram = one DATA for
// UDP), CLOSE closes it. Text frames are ignored (T9).
#include <cstdint>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "api/websocket.hpp"
#include "tunnel/frame.hpp"

namespace kr::vm {

// The whole session after the caller resolved the VM: sends `CONNECTED`,
// serves messages until the WebSocket ends, closes every VM socket.
boost::asio::awaitable<void> serve_vm_forward(api::WebSocket& ws, std::string vm_ip, std::uint16_t url_port,
                                              tunnel::Proto session_proto);

}  // namespace kr::vm
