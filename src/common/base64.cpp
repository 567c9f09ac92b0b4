#include "common/base64.hpp"

#include <array>

namespace kr {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<signed char, 256> make_table() {
  std::array<signed char, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<signed char>(i);
  return t;
}
constexpr auto kTable = make_table();

// Two output characters per 12 input bits: half the lookups of a 6-bit table.
constexpr std::array<char, 8192> make_pairs() {
  std::array<char, 8192> t{};
  for (int i = 0; i < 4096; ++i) {
    t[2 * i] = kAlphabet[i >> 6];
    t[2 * i + 1] = kAlphabet[i & 63];
  }
  return t;
}
constexpr auto kPairs = make_pairs();

// Decodes canonical groups (validated: see base64_canonical_size), the last
// one possibly padded. Returns the bytes written.
std::size_t decode_groups(std::string_view in, char* o) {
  const char* const start = o;
  std::size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad = in.size() >= 2 && in[in.size() - 2] == '=' ? 2 : 1;
  const std::size_t full = in.size() / 4 - (pad ? 1 : 0);
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  for (std::size_t g = 0; g < full; ++g, p += 4, o += 3) {
    const auto v = static_cast<unsigned>((kTable[p[0]] << 18) | (kTable[p[1]] << 12) | (kTable[p[2]] << 6) |
                                         kTable[p[3]]);
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    o[2] = static_cast<char>(v);
  }
  if (pad == 1) {
    const auto v = static_cast<unsigned>((kTable[p[0]] << 18) | (kTable[p[1]] << 12) | (kTable[p[2]] << 6));
    *o++ = static_cast<char>(v >> 16);
    *o++ = static_cast<char>(v >> 8);
  } else if (pad == 2) {
    *o++ = static_cast<char>(static_cast<unsigned>((kTable[p[0]] << 18) | (kTable[p[1]] << 12)) >> 16);
  }
  return static_cast<std::size_t>(o - start);
}

// Anything not canonical: nullopt (the lenient path).
std::optional<std::string> decode_canonical(std::string_view in) {
  auto size = base64_canonical_size(in);
  if (!size) return std::nullopt;
  std::string out;
  out.resize(*size);
  decode_groups(in, out.data());
  return out;
}
}  // namespace

std::optional<std::size_t> base64_canonical_size(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad = in.size() >= 2 && in[in.size() - 2] == '=' ? 2 : 1;
  // Every character before the padding must be in the alphabet.
  const std::size_t data = in.size() - pad;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  int bad = 0;
  std::size_t i = 0;
  for (; i + 8 <= data; i += 8)
    bad |= kTable[p[i]] | kTable[p[i + 1]] | kTable[p[i + 2]] | kTable[p[i + 3]] | kTable[p[i + 4]] |
           kTable[p[i + 5]] | kTable[p[i + 6]] | kTable[p[i + 7]];
  for (; i < data; ++i) bad |= kTable[p[i]];
  if (bad < 0) return std::nullopt;
  return in.size() / 4 * 3 - pad;
}

std::size_t base64_decode_canonical_chunk(std::string_view in, char* out) { return decode_groups(in, out); }

std::size_t base64_encoded_size(std::size_t bytes) { return (bytes + 2) / 3 * 4; }

std::string base64_encode(std::string_view in) {
  std::string out;
  out.resize(base64_encoded_size(in.size()));
  base64_encode_into(in, out.data());
  return out;
}

std::size_t base64_encode_into(std::string_view in, char* w) {
  char* const out = w;
  std::size_t o = 0, i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  for (; i + 3 <= in.size(); i += 3, o += 4) {
    const unsigned v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    const char* hi = &kPairs[2 * (v >> 12)];
    const char* lo = &kPairs[2 * (v & 4095)];
    w[o] = hi[0];
    w[o + 1] = hi[1];
    w[o + 2] = lo[0];
    w[o + 3] = lo[1];
  }
  if (i < in.size()) {
    unsigned v = p[i] << 16;
    if (i + 1 < in.size()) v |= p[i + 1] << 8;
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  return o;
}

void Base64PieceEncoder::feed(std::string_view piece) {
  if (carry_len_ > 0) {  // complete the group an earlier piece began
    while (carry_len_ < 3 && !piece.empty()) {
      carry_[carry_len_++] = piece.front();
      piece.remove_prefix(1);
    }
    if (carry_len_ < 3) return;
    pos_ += base64_encode_into(std::string_view(carry_, 3), out_ + pos_);
    carry_len_ = 0;
  }
  const std::size_t whole = piece.size() / 3 * 3;
  pos_ += base64_encode_into(piece.substr(0, whole), out_ + pos_);
  for (std::size_t i = whole; i < piece.size(); ++i) carry_[carry_len_++] = piece[i];
}

std::size_t Base64PieceEncoder::finish() {
  pos_ += base64_encode_into(std::string_view(carry_, carry_len_), out_ + pos_);
  carry_len_ = 0;
  return pos_;
}

std::optional<std::string> base64_decode_lenient(std::string_view text, std::string& error) {
  if (auto fast = decode_canonical(text)) return fast;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  unsigned acc = 0;
  int quad = 0;       // data characters in the current group
  int pads = 0;       // '=' seen while completing a group
  std::size_t data_chars = 0;
  for (char ch : text) {
    if (ch == '=') {
      if (quad >= 2) {
        ++pads;
        if (quad + pads >= 4) {  // group complete: flush its bytes
          if (quad == 2) out.push_back(static_cast<char>((acc >> 4) & 0xFF));
          if (quad == 3) {
            out.push_back(static_cast<char>((acc >> 10) & 0xFF));
            out.push_back(static_cast<char>((acc >> 2) & 0xFF));
          }
          acc = 0;
          quad = 0;
          pads = 0;
        }
      }
      continue;  // excess padding is ignored
    }
    const int v = kTable[static_cast<unsigned char>(ch)];
    if (v < 0) continue;
    if (pads > 0) pads = 0;  // data after an incomplete pad run: keep going
    ++data_chars;
    acc = (acc << 6) | static_cast<unsigned>(v);
    if (++quad == 4) {
      out.push_back(static_cast<char>((acc >> 16) & 0xFF));
      out.push_back(static_cast<char>((acc >> 8) & 0xFF));
      out.push_back(static_cast<char>(acc & 0xFF));
      acc = 0;
      quad = 0;
    }
  }
  if (quad == 1) {
    error = "Invalid base64-encoded string: number of data characters (" + std::to_string(data_chars) +
            ") cannot be 1 more than a multiple of 4";
    return std::nullopt;
  }
  if (quad != 0) {
    error = "Incorrect padding";
    return std::nullopt;
  }
  return out;
}

}  // namespace kr
