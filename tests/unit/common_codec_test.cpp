#include <gtest/gtest.h>

#include <random>

#include "common/base64.hpp"
#include "common/utf8.hpp"

using namespace kr;

TEST(Utf8, WholeBufferReplacementLikePython) {
  EXPECT_EQ(utf8_replace_invalid("abc"), "abc");
  EXPECT_EQ(utf8_replace_invalid("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(utf8_replace_invalid("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  // Truncated 3-byte sequence followed by ASCII: one U+FFFD for the prefix.
  EXPECT_EQ(utf8_replace_invalid("\xE2\x82" "x"), "\xEF\xBF\xBD" "x");
  // Surrogates and overlongs are invalid.
  EXPECT_EQ(utf8_replace_invalid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_replace_invalid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_TRUE(utf8_is_valid("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8_is_valid("\xF0\x9F\x98"));
}

// utf8_is_valid agrees with "replacement changes nothing" on every short
// sequence and at every alignment of the eight-byte ASCII skip.
TEST(Utf8, ValidityMatchesReplacement) {
  std::mt19937 rng(3);
  const unsigned char pieces[] = {0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xA0, 0xED, 0x9F,
                                  0xA0, 0xEF, 0xF0, 0x90, 0xF4, 0x8F, 0x90, 0xF5, 0xFF};
  for (int round = 0; round < 20000; ++round) {
    std::string s(rng() % 12, 'a');
    for (std::size_t k = rng() % 5; k > 0; --k) {
      std::string tail(1 + rng() % 4, '\0');
      for (auto& c : tail) c = static_cast<char>(pieces[rng() % sizeof pieces]);
      s.insert(rng() % (s.size() + 1), tail);
    }
    EXPECT_EQ(utf8_is_valid(s), utf8_replace_invalid(s) == s) << testing::PrintToString(s);
  }
}

TEST(Utf8, StreamDecoderKeepsSplitCharacters) {
  const std::string text = "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 \xC3\xA9";  // 你好 😀 é
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    Utf8StreamDecoder d;
    std::string out = d.feed(text.substr(0, cut));
    out += d.feed(text.substr(cut));
    out += d.finish();
    EXPECT_EQ(out, text) << "cut at " << cut;
  }
  // Byte by byte.
  Utf8StreamDecoder d;
  std::string out;
  for (char c : text) out += d.feed(std::string(1, c));
  EXPECT_EQ(out + d.finish(), text);
  // A truncated tail at the end becomes one U+FFFD.
  Utf8StreamDecoder e;
  EXPECT_EQ(e.feed("a\xE4\xBD"), "a");
  EXPECT_EQ(e.finish(), "\xEF\xBF\xBD");
  // Invalid bytes are not held back.
  Utf8StreamDecoder f;
  EXPECT_EQ(f.feed("\xFF" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(f.held(), 0u);
}

TEST(Base64, RoundTripRandom) {
  std::mt19937 rng(7);
  for (std::size_t len : {0u, 1u, 2u, 3u, 4u, 5u, 1000u, 65537u}) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    std::string err;
    auto back = base64_decode_lenient(base64_encode(s), err);
    ASSERT_TRUE(back) << err;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
}

TEST(Base64, LenientLikePython) {
  std::string err;
  EXPECT_EQ(*base64_decode_lenient("Zm9v\nYmFy", err), "foobar");
  EXPECT_EQ(*base64_decode_lenient("Zm 9v!!", err), "foo");
  EXPECT_FALSE(base64_decode_lenient("Zm8", err));
  EXPECT_EQ(err, "Incorrect padding");
  EXPECT_FALSE(base64_decode_lenient("Zm9vY", err));
  EXPECT_NE(err.find("cannot be 1 more than a multiple of 4"), std::string::npos);
  EXPECT_EQ(*base64_decode_lenient("Zm8=", err), "fo");
  EXPECT_EQ(*base64_decode_lenient("Zg==", err), "f");
}

// The canonical-form fast path and the lenient path give Python's bytes.
TEST(Base64, CanonicalAndLenientInputsDecodeLikePython) {
  std::string err;
  const std::pair<std::string, std::string> cases[] = {
      {"Zh==", "f"},              // non-zero leftover bits are dropped
      {"Zm9=", "fo"},
      {"Zm9vYmE=", "fooba"},
      {"AAAA", std::string(3, '\0')},
      {"", ""},
      {"Zm9v====", "foo"},        // excess padding: lenient path
      {"=Zm9v", "foo"},
      {"QUJD\r\n", "ABC"},
      {"QU JD", "ABC"},
  };
  for (const auto& [in, want] : cases) {
    auto got = base64_decode_lenient(in, err);
    ASSERT_TRUE(got) << in << ": " << err;
    EXPECT_EQ(*got, want) << in;
  }
  EXPECT_FALSE(base64_decode_lenient("Zm=v", err));
  EXPECT_EQ(err, "Incorrect padding");
  EXPECT_FALSE(base64_decode_lenient("Z===", err));
}

TEST(Base64, EncodeMatchesBitByBitReference) {
  static constexpr char kAlpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::mt19937 rng(11);
  for (std::size_t len = 0; len < 70; ++len) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    std::string want;
    for (std::size_t i = 0; i < len; i += 3) {
      unsigned v = static_cast<unsigned char>(s[i]) << 16;
      if (i + 1 < len) v |= static_cast<unsigned char>(s[i + 1]) << 8;
      if (i + 2 < len) v |= static_cast<unsigned char>(s[i + 2]);
      want += kAlpha[(v >> 18) & 63];
      want += kAlpha[(v >> 12) & 63];
      want += i + 1 < len ? kAlpha[(v >> 6) & 63] : '=';
      want += i + 2 < len ? kAlpha[v & 63] : '=';
    }
    EXPECT_EQ(base64_encode(s), want) << len;
  }
}

namespace {
// Mutations of valid base64 that real clients rarely send: whitespace,
// stray characters, '=' in odd places. Some stay decodable (lenient path).
std::string mutate(std::string s, std::mt19937& rng) {
  static constexpr char kOdd[] = " \n\r\t=!-_.\x80\xff";
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits; ++e) {
    const std::size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    const char c = kOdd[rng() % (sizeof(kOdd) - 1)];
    switch (rng() % 3) {
      case 0: s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), c); break;
      case 1: if (at < s.size()) s[at] = c; break;
      default: if (at < s.size()) s.erase(at, 1); break;
    }
  }
  return s;
}
}  // namespace

// base64_canonical_size accepts a text only when base64_decode_lenient does,
// with the size of exactly its bytes; whatever it refuses still goes
// through the lenient decoder unchanged (the write path falls back to it).
TEST(Base64, CanonicalSizeAgreesWithTheLenientDecoder) {
  std::mt19937 rng(23);
  std::size_t canonical = 0, refused = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string bytes(rng() % 40, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    std::string text = base64_encode(bytes);
    if (round % 2 == 1) text = mutate(text, rng);
    std::string err;
    auto lenient = base64_decode_lenient(text, err);
    auto size = base64_canonical_size(text);
    if (round % 2 == 0) ASSERT_TRUE(size) << text;  // untouched encoder output is canonical
    if (size) {
      ++canonical;
      ASSERT_TRUE(lenient) << text;
      ASSERT_EQ(*size, lenient->size()) << text;
      std::string out(*size, '\0');
      ASSERT_EQ(base64_decode_canonical_chunk(text, out.data()), *size) << text;
      EXPECT_EQ(out, *lenient) << text;
    } else {
      ++refused;
      // Anything outside the canonical form: not a multiple of 4, a
      // character outside the alphabet before the padding, or '=' anywhere
      // but closing the last group.
      const std::size_t data = text.find('=');
      const bool looks_canonical =
          text.size() % 4 == 0 && (data == std::string::npos || data + 2 >= text.size()) &&
          text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
              std::string::npos &&
          (data == std::string::npos || text.find_first_not_of('=', data) == std::string::npos) &&
          !(data != std::string::npos && data % 4 < 2);
      EXPECT_FALSE(looks_canonical) << text;
    }
  }
  EXPECT_GT(canonical, 2000u);
  EXPECT_GT(refused, 500u);
  EXPECT_EQ(base64_canonical_size(""), std::optional<std::size_t>(0));
  EXPECT_FALSE(base64_canonical_size("QU JD"));
  EXPECT_FALSE(base64_canonical_size("QUJD\n"));
  EXPECT_FALSE(base64_canonical_size("Zm9v===="));  // lenient accepts it: not here
  EXPECT_FALSE(base64_canonical_size("Z==="));
  EXPECT_FALSE(base64_canonical_size("Zm=v"));
  EXPECT_FALSE(base64_canonical_size("===="));
  EXPECT_EQ(base64_canonical_size("Zh=="), std::optional<std::size_t>(1));
  EXPECT_EQ(base64_canonical_size("Zm9vYmE="), std::optional<std::size_t>(5));
}

// Decoding piece by piece, cut at every multiple of 4 characters (and into
// many small pieces), gives the same bytes as decoding the whole text.
TEST(Base64, CanonicalChunksDecodeAtEveryBoundary) {
  std::mt19937 rng(29);
  for (std::size_t len : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 47u, 48u, 49u, 50u, 301u}) {
    std::string bytes(len, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    const std::string text = base64_encode(bytes);
    ASSERT_EQ(base64_canonical_size(text), std::optional<std::size_t>(len));
    for (std::size_t cut = 0; cut <= text.size(); cut += 4) {
      std::string out(len, '\0');
      std::size_t n = base64_decode_canonical_chunk(std::string_view(text).substr(0, cut), out.data());
      n += base64_decode_canonical_chunk(std::string_view(text).substr(cut), out.data() + n);
      ASSERT_EQ(n, len) << len << " cut at " << cut;
      EXPECT_EQ(out, bytes) << len << " cut at " << cut;
    }
    for (std::size_t piece : {4u, 8u, 12u, 400u}) {
      std::string out(len, '\0');
      std::size_t n = 0;
      for (std::size_t at = 0; at < text.size(); at += piece)
        n += base64_decode_canonical_chunk(std::string_view(text).substr(at, piece), out.data() + n);
      ASSERT_EQ(n, len);
      EXPECT_EQ(out, bytes) << len << " pieces of " << piece;
    }
  }
}

TEST(Base64, EncodeIntoWritesTheSameCharacters) {
  std::mt19937 rng(31);
  for (std::size_t len = 0; len < 40; ++len) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    std::string out(base64_encoded_size(len) + 1, '#');
    EXPECT_EQ(base64_encode_into(s, out.data()), base64_encoded_size(len));
    EXPECT_EQ(out.back(), '#');  // nothing written past the end
    out.pop_back();
    EXPECT_EQ(out, base64_encode(s));
  }
}

// Pieces of any size, cut at every offset: the same text as one encode.
TEST(Base64, PieceEncoderMatchesWholeEncodeAtEveryCut) {
  std::mt19937 rng(37);
  for (std::size_t len : {0u, 1u, 2u, 3u, 4u, 5u, 7u, 31u, 100u}) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    const std::string want = base64_encode(s);
    for (std::size_t a = 0; a <= len; ++a) {
      for (std::size_t b = a; b <= len; ++b) {
        std::string out(base64_encoded_size(len) + 1, '#');
        Base64PieceEncoder enc(out.data());
        enc.feed(std::string_view(s).substr(0, a));
        enc.feed(std::string_view(s).substr(a, b - a));
        enc.feed(std::string_view(s).substr(b));
        ASSERT_EQ(enc.finish(), want.size()) << len << " " << a << " " << b;
        EXPECT_EQ(out.back(), '#');
        out.pop_back();
        ASSERT_EQ(out, want) << len << " cut at " << a << ", " << b;
      }
    }
    std::string out(base64_encoded_size(len), '\0');
    Base64PieceEncoder enc(out.data());
    for (char c : s) enc.feed(std::string_view(&c, 1));
    EXPECT_EQ(enc.finish(), want.size());
    EXPECT_EQ(out, want);
  }
}
