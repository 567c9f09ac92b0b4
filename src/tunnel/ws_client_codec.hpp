#pragma once
// Sans-I/O RFC 6455 client side for the static tunnel-client: URL parsing,
// the opening handshake, masked frame encoding and a reassembling frame
// parser. No Boost or libc++ extras so the static binary stays small.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kr::tunnel::ws {

struct Url {
  std::string host;  // as written (IPv4 literal, name, or [v6] without brackets)
  std::uint16_t port = 80;
  std::string path;  // "/..." (never empty)
};

// Parses `ws://host[:port][/path]`. Errors (wss://, other schemes, bad port)
// come back as a message in `error`.
std::optional<Url> parse_url(std::string_view url, std::string* error);

// runner_url with trailing '/' removed + "/ws/tunnel/" + container_id (the
// Rust client's URL construction).
std::string tunnel_url(std::string_view runner_url, std::string_view container_id);

std::string base64(std::string_view bytes);
std::string sha1(std::string_view bytes);  // 20 raw bytes
// base64(sha1(key + RFC 6455 GUID)).
std::string accept_key(std::string_view key_b64);

std::string handshake_request(const Url& url, std::string_view key_b64);

// Checks a complete response head (up to and including "\r\n\r\n"): status
// 101, Upgrade: websocket, Connection: upgrade, matching accept, and no
// extension or subprotocol we did not ask for. Returns "" when fine, else
// the reason.
std::string check_handshake_response(std::string_view head, std::string_view key_b64);

enum Opcode : std::uint8_t { Continuation = 0x0, Text = 0x1, Binary = 0x2, Close = 0x8, Ping = 0x9, Pong = 0xA };

// Appends one final, masked frame to `out`.
void encode_frame(std::string& out, Opcode op, std::string_view payload, std::uint32_t mask_key);

// The longest client frame head: 2 bytes, 8-byte extended length, mask key.
inline constexpr std::size_t kMaxFrameHead = 14;
// Writes the head of one final, masked frame with a payload of `payload_len`
// bytes (minimal length encoding) to `out`; returns its length (6..14).
std::size_t encode_frame_head(unsigned char* out, Opcode op, std::uint64_t payload_len, std::uint32_t mask_key);
// Turns `room` — kMaxFrameHead spare bytes followed by `payload_len` bytes
// of payload — into one final, masked frame without copying the payload:
// the payload is masked where it lies and the head written just before it.
// Returns the frame's offset in `room` (kMaxFrameHead - head length); the
// frame is kMaxFrameHead - offset + payload_len bytes long.
std::size_t build_frame_in_place(char* room, std::size_t payload_len, Opcode op, std::uint32_t mask_key);
void apply_mask(char* data, std::size_t n, std::uint32_t mask_key, std::size_t offset = 0);

// Incremental parser for server→client frames (unmasked). Control frames are
// delivered as they come, even between fragments of a data message.
class FrameParser {
 public:
  explicit FrameParser(std::size_t max_message) : max_message_(max_message) {}

  struct Event {
    enum class Kind { None, Message, Ping, Pong, Close, Error } kind = Kind::None;
    Opcode opcode = Binary;  // Text or Binary for Message
    std::string payload;     // message body / control payload / error text
  };

  // Consumes bytes from `in` (advancing it) until one event is complete or
  // the input is exhausted (Kind::None). After an Error the parser is dead.
  Event next(std::string_view& in);

 private:
  enum class Stage { Head, ExtLen, Payload, Dead } stage_ = Stage::Head;
  std::size_t max_message_;
  unsigned char head_[2] = {0, 0};
  std::size_t head_have_ = 0;
  unsigned char ext_[8] = {};
  std::size_t ext_need_ = 0, ext_have_ = 0;
  std::uint64_t frame_len_ = 0;
  std::string frame_;  // current control frame payload or data-frame chunk target
  bool in_message_ = false;
  Opcode message_op_ = Binary;
  std::string message_;
  bool frame_fin_ = false;
  Opcode frame_op_ = Binary;

  Event fail(std::string why);
  Event finish_frame();
};

}  // namespace kr::tunnel::ws
