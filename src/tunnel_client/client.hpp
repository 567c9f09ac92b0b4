#pragma once
// The tunnel-client's network side: one WebSocket to the runner's
// /ws/tunnel/{container_id}, multiplexing connections to 127.0.0.1:<port>
// inside the container (tunnel-overlay.md §1.7, §2.6). Single-threaded
// poll() loop over non-blocking sockets.
#include <cstdint>
#include <string>

#include "tunnel/client_options.hpp"

namespace kr::tunnel_client {

enum class SessionEnd {
  HandshakeFailed,  // counts as a failed attempt
  Ended,            // a session ran (any end after a good handshake)
};

// One connect + run until the WebSocket ends.
SessionEnd run_session(const tunnel::ClientOptions& opts);

// The reconnect loop; returns the process exit status.
int run_client(const tunnel::ClientOptions& opts);

// "Connection refused (os error 111)": the text Rust's io::Error shows,
// which the Rust client sends in ERROR messages.
std::string os_error_text(int err);

}  // namespace kr::tunnel_client
