#pragma once
// One tunnel session over a WebSocket that is already open (handshake
// done): multiplexes the runner's CONNECT/DATA/CLOSE messages onto local
// connections until the WebSocket ends (session.cpp).
#include <cstdint>
#include <string>

namespace kr::tunnel_client {

// Runs the session on `ws_fd` (taken over, closed at the end); `leftover`
// is what was read past the handshake response.
void run_tunnel_session(int ws_fd, std::string leftover);

// Masking keys and the handshake nonce: xorshift64* seeded from getrandom.
std::uint32_t random_u32();

}  // namespace kr::tunnel_client
