#include "tunnel/ws_client_codec.hpp"

#include <cstring>

namespace kr::tunnel::ws {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// True when the comma-separated header value lists `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::uint32_t rol(std::uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

}  // namespace

std::optional<Url> parse_url(std::string_view url, std::string* error) {
  auto err = [&](std::string m) -> std::optional<Url> {
    if (error) *error = std::move(m);
    return std::nullopt;
  };
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return err("invalid URL (expected ws://HOST:PORT): " + std::string(url));
  std::string_view scheme = url.substr(0, scheme_end);
  if (iequals(scheme, "wss"))
    return err("wss:// is not supported by this tunnel-client (TLS is not built in); use a ws:// runner URL");
  if (!iequals(scheme, "ws")) return err("unsupported URL scheme '" + std::string(scheme) + "' (expected ws://)");
  std::string_view rest = url.substr(scheme_end + 3);
  auto path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  Url u;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return err("invalid IPv6 address in URL: " + std::string(url));
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return err("invalid URL authority: " + std::string(url));
      port_text = after.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) return err("URL has no host: " + std::string(url));
  if (!port_text.empty()) {
    unsigned long v = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || v > 65535) return err("invalid port in URL: " + std::string(url));
      v = v * 10 + static_cast<unsigned long>(c - '0');
    }
    if (v == 0 || v > 65535) return err("invalid port in URL: " + std::string(url));
    u.port = static_cast<std::uint16_t>(v);
  }
  // Fragments are never sent; the query stays part of the request target.
  if (auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  u.path = path.empty() || path.front() == '?' ? "/" + std::string(path) : std::string(path);
  return u;
}

std::string tunnel_url(std::string_view runner_url, std::string_view container_id) {
  while (!runner_url.empty() && runner_url.back() == '/') runner_url.remove_suffix(1);
  std::string out(runner_url);
  out += "/ws/tunnel/";
  out += container_id;
  return out;
}

std::string base64(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t v = (std::uint32_t(static_cast<unsigned char>(in[i])) << 16) |
                      (std::uint32_t(static_cast<unsigned char>(in[i + 1])) << 8) |
                      std::uint32_t(static_cast<unsigned char>(in[i + 2]));
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (std::size_t left = in.size() - i; left > 0) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(in[i])) << 16;
    if (left == 2) v |= std::uint32_t(static_cast<unsigned char>(in[i + 1])) << 8;
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += left == 2 ? t[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string sha1(std::string_view in) {
  std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string msg(in);
  const std::uint64_t bits = static_cast<std::uint64_t>(in.size()) * 8;
  msg += static_cast<char>(0x80);
  while (msg.size() % 64 != 56) msg += '\0';
  for (int i = 7; i >= 0; --i) msg += static_cast<char>(bits >> (8 * i));
  for (std::size_t chunk = 0; chunk < msg.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + chunk + 4 * i);
      w[i] = (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      std::uint32_t tmp = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::string out(20, '\0');
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<char>(h[i] >> (24 - 8 * j));
  return out;
}

std::string accept_key(std::string_view key_b64) {
  std::string s(key_b64);
  s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  return base64(sha1(s));
}

std::string handshake_request(const Url& url, std::string_view key_b64) {
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (url.port != 80) host += ":" + std::to_string(url.port);
  std::string r = "GET " + url.path + " HTTP/1.1\r\n";
  r += "Host: " + host + "\r\n";
  r += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
  r += "Sec-WebSocket-Key: " + std::string(key_b64) + "\r\n\r\n";
  return r;
}

std::string check_handshake_response(std::string_view head, std::string_view key_b64) {
  auto eol = head.find("\r\n");
  std::string_view status = head.substr(0, eol);
  // "HTTP/1.1 101 Switching Protocols"
  auto sp = status.find(' ');
  if (status.substr(0, 5) != "HTTP/" || sp == std::string_view::npos)
    return "malformed HTTP response: " + std::string(status);
  std::string_view code = status.substr(sp + 1, 3);
  if (code != "101") return "server answered " + std::string(trim(status.substr(sp + 1))) + " instead of 101";
  bool upgrade = false, connection = false, accept_ok = false;
  std::string expected = accept_key(key_b64);
  std::string_view rest = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
  while (!rest.empty()) {
    auto e = rest.find("\r\n");
    std::string_view line = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e + 2);
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return "malformed header line: " + std::string(line);
    std::string_view name = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
    if (iequals(name, "upgrade")) upgrade = iequals(value, "websocket");
    else if (iequals(name, "connection")) connection = has_token(value, "upgrade");
    else if (iequals(name, "sec-websocket-accept")) accept_ok = value == expected;
    else if (iequals(name, "sec-websocket-extensions") && !value.empty())
      return "server selected an extension we did not offer: " + std::string(value);
    else if (iequals(name, "sec-websocket-protocol") && !value.empty())
      return "server selected a subprotocol we did not offer: " + std::string(value);
  }
  if (!upgrade) return "missing 'Upgrade: websocket' in the handshake response";
  if (!connection) return "missing 'Connection: upgrade' in the handshake response";
  if (!accept_ok) return "Sec-WebSocket-Accept does not match the key";
  return {};
}

void apply_mask(char* data, std::size_t n, std::uint32_t mask_key, std::size_t offset) {
  unsigned char k[4] = {static_cast<unsigned char>(mask_key >> 24), static_cast<unsigned char>(mask_key >> 16),
                        static_cast<unsigned char>(mask_key >> 8), static_cast<unsigned char>(mask_key)};
  std::size_t i = 0;
  // Byte-wise until the key phase is aligned to 0, then 32 bytes at a time.
  for (; i < n && ((offset + i) & 3) != 0; ++i) data[i] = static_cast<char>(data[i] ^ k[(offset + i) & 3]);
  // 16-byte vectors (SSE2, part of baseline x86-64), two per iteration.
  typedef unsigned char v16 __attribute__((vector_size(16)));
  v16 k16;
  for (std::size_t j = 0; j < 16; ++j) k16[j] = k[j & 3];
  for (; i + 32 <= n; i += 32) {
    v16 a, b;
    std::memcpy(&a, data + i, 16);
    std::memcpy(&b, data + i + 16, 16);
    a ^= k16;
    b ^= k16;
    std::memcpy(data + i, &a, 16);
    std::memcpy(data + i + 16, &b, 16);
  }
  for (; i < n; ++i) data[i] = static_cast<char>(data[i] ^ k[(offset + i) & 3]);
}

std::size_t encode_frame_head(unsigned char* h, Opcode op, std::uint64_t n, std::uint32_t mask_key) {
  std::size_t hl = 0;
  h[hl++] = static_cast<unsigned char>(0x80 | op);
  if (n < 126) {
    h[hl++] = static_cast<unsigned char>(0x80 | n);
  } else if (n <= 0xFFFF) {
    h[hl++] = 0x80 | 126;
    h[hl++] = static_cast<unsigned char>(n >> 8);
    h[hl++] = static_cast<unsigned char>(n);
  } else {
    h[hl++] = 0x80 | 127;
    for (int i = 7; i >= 0; --i) h[hl++] = static_cast<unsigned char>(n >> (8 * i));
  }
  for (int i = 3; i >= 0; --i) h[hl++] = static_cast<unsigned char>(mask_key >> (8 * i));
  return hl;
}

void encode_frame(std::string& out, Opcode op, std::string_view payload, std::uint32_t mask_key) {
  unsigned char h[kMaxFrameHead];
  std::size_t hl = encode_frame_head(h, op, payload.size(), mask_key);
  out.append(reinterpret_cast<const char*>(h), hl);
  std::size_t start = out.size();
  out.append(payload);
  apply_mask(out.data() + start, payload.size(), mask_key);
}

std::size_t build_frame_in_place(char* room, std::size_t payload_len, Opcode op, std::uint32_t mask_key) {
  unsigned char h[kMaxFrameHead];
  std::size_t hl = encode_frame_head(h, op, payload_len, mask_key);
  apply_mask(room + kMaxFrameHead, payload_len, mask_key);
  std::size_t offset = kMaxFrameHead - hl;
  std::memcpy(room + offset, h, hl);
  return offset;
}

FrameParser::Event FrameParser::fail(std::string why) {
  stage_ = Stage::Dead;
  Event e;
  e.kind = Event::Kind::Error;
  e.payload = std::move(why);
  return e;
}

FrameParser::Event FrameParser::next(std::string_view& in) {
  while (true) {
    switch (stage_) {
      case Stage::Dead:
        return fail("connection already failed");
      case Stage::Head: {
        while (head_have_ < 2 && !in.empty()) {
          head_[head_have_++] = static_cast<unsigned char>(in.front());
          in.remove_prefix(1);
        }
        if (head_have_ < 2) return {};
        head_have_ = 0;
        if (head_[0] & 0x70) return fail("reserved bits set (no extension was negotiated)");
        if (head_[1] & 0x80) return fail("server frames must not be masked");
        frame_fin_ = (head_[0] & 0x80) != 0;
        frame_op_ = static_cast<Opcode>(head_[0] & 0x0F);
        const bool control = (frame_op_ & 0x8) != 0;
        if (control) {
          if (frame_op_ != Close && frame_op_ != Ping && frame_op_ != Pong) return fail("unknown control opcode");
          if (!frame_fin_) return fail("fragmented control frame");
        } else if (frame_op_ == Continuation) {
          if (!in_message_) return fail("continuation frame without a message");
        } else if (frame_op_ == Text || frame_op_ == Binary) {
          if (in_message_) return fail("new data frame inside a fragmented message");
          in_message_ = true;
          message_op_ = frame_op_;
          message_.clear();
        } else {
          return fail("unknown data opcode");
        }
        std::uint8_t len7 = head_[1] & 0x7F;
        ext_have_ = 0;
        ext_need_ = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        frame_len_ = len7 < 126 ? len7 : 0;
        if (control && len7 > 125) return fail("control frame too long");
        stage_ = ext_need_ ? Stage::ExtLen : Stage::Payload;
        frame_.clear();
        break;
      }
      case Stage::ExtLen: {
        while (ext_have_ < ext_need_ && !in.empty()) {
          ext_[ext_have_++] = static_cast<unsigned char>(in.front());
          in.remove_prefix(1);
        }
        if (ext_have_ < ext_need_) return {};
        frame_len_ = 0;
        for (std::size_t i = 0; i < ext_need_; ++i) frame_len_ = (frame_len_ << 8) | ext_[i];
        if (frame_len_ >> 63) return fail("frame length has the high bit set");
        stage_ = Stage::Payload;
        break;
      }
      case Stage::Payload: {
        const bool control = (frame_op_ & 0x8) != 0;
        std::string& target = control ? frame_ : message_;
        if (!control && message_.size() + frame_len_ > max_message_) return fail("message too big");
        if (frame_len_ > 0) {
          std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(frame_len_, in.size()));
          target.append(in.data(), take);
          in.remove_prefix(take);
          frame_len_ -= take;
          if (frame_len_ > 0) return {};
        }
        stage_ = Stage::Head;
        Event e = finish_frame();
        if (e.kind != Event::Kind::None) return e;
        break;
      }
    }
  }
}

FrameParser::Event FrameParser::finish_frame() {
  Event e;
  switch (frame_op_) {
    case Ping: e.kind = Event::Kind::Ping; e.payload = std::move(frame_); break;
    case Pong: e.kind = Event::Kind::Pong; e.payload = std::move(frame_); break;
    case Close: e.kind = Event::Kind::Close; e.payload = std::move(frame_); break;
    default:
      if (!frame_fin_) return e;
      in_message_ = false;
      e.kind = Event::Kind::Message;
      e.opcode = message_op_;
      e.payload = std::move(message_);
      message_.clear();
      break;
  }
  frame_.clear();
  return e;
}

}  // namespace kr::tunnel::ws
