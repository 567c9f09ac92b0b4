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
