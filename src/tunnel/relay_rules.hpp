#pragma once
// Pure relay rules of the runner's tunnel server (tunnel-overlay.md §2.2-2.3,
// rulings T7/T9): how one message from the container or from the user is
// treated, and how container DATA is cut to respect the host's 1 MiB limit.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tunnel/frame.hpp"

namespace kr::tunnel {

// The host's WebSocket client refuses messages over 1 MiB (T7).
inline constexpr std::size_t kMaxMessageToHost = 1u << 20;

enum class FromContainer {
  Ignore,         // < 8 bytes, PONG
  Drop,           // unknown or wrong-direction type: log and drop (T9)
  RouteKeep,      // CONNECTED, DATA: to the id's user, id stays
  RouteForget,    // CLOSE, ERROR: to the id's user, id forgotten
};
FromContainer classify_from_container(std::string_view message);

enum class FromUser {
  Ignore,   // < 8 bytes
  Connect,
  Data,
  Close,
  Drop,     // anything else: logged and dropped (T9)
};
FromUser classify_from_user(std::string_view message);

// Splits a DATA message whose total size exceeds `limit` into several DATA
// messages with the same header (TCP payloads are a byte stream, so this is
// lossless). Other messages come back unchanged as the only element.
std::vector<std::string> split_data(std::string message, std::size_t limit = kMaxMessageToHost);

}  // namespace kr::tunnel
