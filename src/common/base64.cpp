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
}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.resize((in.size() + 2) / 3 * 4);
  std::size_t o = 0, i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  for (; i + 3 <= in.size(); i += 3) {
    const unsigned v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = kAlphabet[v & 63];
  }
  if (i < in.size()) {
    unsigned v = p[i] << 16;
    if (i + 1 < in.size()) v |= p[i + 1] << 8;
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  return out;
}

std::optional<std::string> base64_decode_lenient(std::string_view text, std::string& error) {
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
