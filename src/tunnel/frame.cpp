#include "tunnel/frame.hpp"

namespace kr::tunnel {

bool is_known_type(std::uint8_t type) { return type >= 0x01 && type <= 0x07; }
bool is_known_proto(std::uint8_t proto) { return proto <= 0x01; }

const char* type_name(std::uint8_t type) {
  switch (type) {
    case 0x01: return "CONNECT";
    case 0x02: return "CONNECTED";
    case 0x03: return "DATA";
    case 0x04: return "CLOSE";
    case 0x05: return "ERROR";
    case 0x06: return "PING";
    case 0x07: return "PONG";
    default: return "UNKNOWN";
  }
}

std::optional<Header> parse_header(std::string_view m) {
  if (m.size() < kHeaderSize) return std::nullopt;
  auto b = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(m[i])); };
  Header h;
  h.type = static_cast<std::uint8_t>(b(0));
  h.proto = static_cast<std::uint8_t>(b(1));
  h.client_id = (b(2) << 24) | (b(3) << 16) | (b(4) << 8) | b(5);
  h.port = static_cast<std::uint16_t>((b(6) << 8) | b(7));
  return h;
}

std::string_view payload_of(std::string_view m) {
  return m.size() <= kHeaderSize ? std::string_view{} : m.substr(kHeaderSize);
}

void write_header(const Header& h, unsigned char* o) {
  o[0] = h.type;
  o[1] = h.proto;
  o[2] = static_cast<unsigned char>(h.client_id >> 24);
  o[3] = static_cast<unsigned char>(h.client_id >> 16);
  o[4] = static_cast<unsigned char>(h.client_id >> 8);
  o[5] = static_cast<unsigned char>(h.client_id);
  o[6] = static_cast<unsigned char>(h.port >> 8);
  o[7] = static_cast<unsigned char>(h.port);
}

std::string encode(const Header& h, std::string_view payload) {
  std::string out(kHeaderSize + payload.size(), '\0');
  write_header(h, reinterpret_cast<unsigned char*>(out.data()));
  if (!payload.empty()) out.replace(kHeaderSize, payload.size(), payload);
  return out;
}

std::string encode(MsgType type, Proto proto, std::uint32_t client_id, std::uint16_t port,
                   std::string_view payload) {
  return encode(Header{static_cast<std::uint8_t>(type), static_cast<std::uint8_t>(proto), client_id, port}, payload);
}

void set_client_id(std::string& m, std::uint32_t id) {
  m[2] = static_cast<char>(id >> 24);
  m[3] = static_cast<char>(id >> 16);
  m[4] = static_cast<char>(id >> 8);
  m[5] = static_cast<char>(id);
}

}  // namespace kr::tunnel
