#include "common/utf8.hpp"

#include <cstdint>
#include <cstring>

namespace kr {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the sequence starting with `b` and the allowed range of its
// second byte; 0 when `b` cannot start a sequence.
int sequence_length(unsigned char b, unsigned char& lo, unsigned char& hi) {
  lo = 0x80;
  hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b == 0xE0) { lo = 0xA0; return 3; }
  if (b >= 0xE1 && b <= 0xEC) return 3;
  if (b == 0xED) { hi = 0x9F; return 3; }
  if (b >= 0xEE && b <= 0xEF) return 3;
  if (b == 0xF0) { lo = 0x90; return 4; }
  if (b >= 0xF1 && b <= 0xF3) return 4;
  if (b == 0xF4) { hi = 0x8F; return 4; }
  return 0;
}

// Decodes `in` into `out`. Returns the number of trailing bytes that form
// an incomplete (but so far valid) sequence, left undecoded when
// `keep_tail` is set.
std::size_t decode(std::string_view in, std::string& out, bool keep_tail) {
  std::size_t i = 0;
  const std::size_t n = in.size();
  out.reserve(out.size() + n);
  while (i < n) {
    const auto b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      // Fast path over ASCII runs.
      std::size_t j = i + 1;
      while (j < n && static_cast<unsigned char>(in[j]) < 0x80) ++j;
      out.append(in.substr(i, j - i));
      i = j;
      continue;
    }
    unsigned char lo, hi;
    const int len = sequence_length(b, lo, hi);
    if (len == 0) {
      out.append(kReplacement);
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    bool bad = false;
    for (int k = 1; k < len; ++k, ++j) {
      if (j >= n) break;
      const auto c = static_cast<unsigned char>(in[j]);
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (c < l || c > h) {
        bad = true;
        break;
      }
    }
    if (bad) {  // the valid prefix [i, j) is one maximal invalid subpart
      out.append(kReplacement);
      i = j;
      continue;
    }
    if (j - i < static_cast<std::size_t>(len)) {  // ran out of input
      if (keep_tail) return n - i;
      out.append(kReplacement);
      return 0;
    }
    out.append(in.substr(i, len));
    i = j;
  }
  return 0;
}

}  // namespace

std::string Utf8StreamDecoder::feed(std::string_view bytes) {
  std::string out;
  if (!held_.empty()) {
    std::string joined = held_ + std::string(bytes);
    held_.clear();
    const auto tail = decode(joined, out, true);
    held_ = joined.substr(joined.size() - tail);
    return out;
  }
  const auto tail = decode(bytes, out, true);
  held_.assign(bytes.substr(bytes.size() - tail));
  return out;
}

std::string Utf8StreamDecoder::finish() {
  std::string out;
  if (!held_.empty()) decode(held_, out, false);
  held_.clear();
  return out;
}

std::string utf8_replace_invalid(std::string_view bytes) {
  std::string out;
  decode(bytes, out, false);
  return out;
}

bool utf8_is_valid(std::string_view bytes) {
  // Same notion as decode() (valid iff it would change nothing), without
  // building a copy: ASCII eight bytes at a time, sequences checked in place.
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    unsigned char lo, hi;
    const int len = sequence_length(b, lo, hi);
    if (len == 0 || n - i < static_cast<std::size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char c = p[i + k];
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return false;
    }
    i += static_cast<std::size_t>(len);
  }
  return true;
}

}  // namespace kr
