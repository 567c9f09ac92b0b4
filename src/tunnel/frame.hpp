#pragma once
// Tunnel message codec (tunnel-overlay.md §1): one binary WebSocket message =
// 8-byte big-endian header `>BBIH` (type, proto, client_id, port) + payload.
// Sans-I/O and dependency-free: shared by the runner's tunnel server and the
// static in-container tunnel-client.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kr::tunnel {

inline constexpr std::size_t kHeaderSize = 8;

enum class MsgType : std::uint8_t {
  Connect = 0x01,
  Connected = 0x02,
  Data = 0x03,
  Close = 0x04,
  Error = 0x05,
  Ping = 0x06,
  Pong = 0x07,
};

enum class Proto : std::uint8_t { Tcp = 0x00, Udp = 0x01 };

// Raw header fields: `type` and `proto` stay bytes so that unknown values can
// be recognised (and relayed or dropped) instead of being lost in parsing.
struct Header {
  std::uint8_t type = 0;
  std::uint8_t proto = 0;
  std::uint32_t client_id = 0;
  std::uint16_t port = 0;
};

bool is_known_type(std::uint8_t type);
bool is_known_proto(std::uint8_t proto);
const char* type_name(std::uint8_t type);

// The header of a message; nullopt when it is shorter than 8 bytes.
std::optional<Header> parse_header(std::string_view message);
// Bytes after the header (empty for a header-only or short message).
std::string_view payload_of(std::string_view message);

void write_header(const Header& h, unsigned char* out8);
std::string encode(const Header& h, std::string_view payload = {});
std::string encode(MsgType type, Proto proto, std::uint32_t client_id, std::uint16_t port = 0,
                   std::string_view payload = {});

// Rewrites the client_id field in place (runner-allocated ids, ruling T1).
// `message` must hold at least 8 bytes.
void set_client_id(std::string& message, std::uint32_t client_id);

}  // namespace kr::tunnel
