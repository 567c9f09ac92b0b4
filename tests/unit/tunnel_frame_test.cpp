// Tunnel codec (tunnel-overlay.md §1.2-1.3) against the spec's worked byte
// examples (§1.10).
#include <gtest/gtest.h>

#include "tunnel/frame.hpp"

using namespace kr::tunnel;

namespace {
std::string hex(std::string_view s) {
  static const char* d = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out += ' ';
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}
std::string unhex(std::string_view h) {
  std::string out;
  int v = -1;
  for (char c : h) {
    if (c == ' ') continue;
    int n = c <= '9' ? c - '0' : c - 'A' + 10;
    if (v < 0) v = n;
    else {
      out += static_cast<char>(v * 16 + n);
      v = -1;
    }
  }
  return out;
}
}  // namespace

TEST(TunnelFrame, SpecExamplesEncode) {
  EXPECT_EQ(hex(encode(MsgType::Connect, Proto::Tcp, 1, 8080)), "01 00 00 00 00 01 1F 90");
  EXPECT_EQ(hex(encode(MsgType::Connect, Proto::Udp, 2, 5353)), "01 01 00 00 00 02 14 E9");
  EXPECT_EQ(hex(encode(MsgType::Connect, Proto::Tcp, 70000, 22)), "01 00 00 01 11 70 00 16");
  EXPECT_EQ(hex(encode(MsgType::Connected, Proto::Tcp, 1)), "02 00 00 00 00 01 00 00");
  EXPECT_EQ(hex(encode(MsgType::Connected, Proto::Tcp, 1, 8080)), "02 00 00 00 00 01 1F 90");
  EXPECT_EQ(hex(encode(MsgType::Data, Proto::Tcp, 1, 0, "GET /")), "03 00 00 00 00 01 00 00 47 45 54 20 2F");
  EXPECT_EQ(hex(encode(MsgType::Data, Proto::Udp, 2, 0, "\xDE\xAD")), "03 01 00 00 00 02 00 00 DE AD");
  EXPECT_EQ(hex(encode(MsgType::Close, Proto::Tcp, 1)), "04 00 00 00 00 01 00 00");
  EXPECT_EQ(hex(encode(MsgType::Error, Proto::Tcp, 1, 0, "Connection refused (os error 111)")),
            "05 00 00 00 00 01 00 00 43 6F 6E 6E 65 63 74 69 6F 6E 20 72 65 66 75 73 65 64 20 28 6F 73 20 65 72 "
            "72 6F 72 20 31 31 31 29");
  EXPECT_EQ(hex(encode(MsgType::Error, Proto::Tcp, 3, 0, "Tunnel send failed")),
            "05 00 00 00 00 03 00 00 54 75 6E 6E 65 6C 20 73 65 6E 64 20 66 61 69 6C 65 64");
  EXPECT_EQ(hex(encode(MsgType::Ping, Proto::Tcp, 0)), "06 00 00 00 00 00 00 00");
  EXPECT_EQ(hex(encode(MsgType::Pong, Proto::Tcp, 0)), "07 00 00 00 00 00 00 00");
  EXPECT_EQ(hex(encode(MsgType::Ping, Proto::Tcp, 0x01020304)), "06 00 01 02 03 04 00 00");
  EXPECT_EQ(hex(encode(MsgType::Pong, Proto::Tcp, 0x01020304)), "07 00 01 02 03 04 00 00");
}

TEST(TunnelFrame, SpecExamplesParse) {
  auto h = parse_header(unhex("01 00 00 01 11 70 00 16"));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->type, 0x01);
  EXPECT_EQ(h->proto, 0x00);
  EXPECT_EQ(h->client_id, 70000u);
  EXPECT_EQ(h->port, 22);
  std::string m = unhex("03 01 00 00 00 02 00 00 DE AD");
  h = parse_header(m);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->type, static_cast<std::uint8_t>(MsgType::Data));
  EXPECT_EQ(h->proto, static_cast<std::uint8_t>(Proto::Udp));
  EXPECT_EQ(h->client_id, 2u);
  EXPECT_EQ(payload_of(m), "\xDE\xAD");
  h = parse_header(unhex("01 01 00 00 00 02 14 E9"));
  EXPECT_EQ(h->port, 5353);
  // Highest values survive.
  h = parse_header(unhex("FF FF FF FF FF FF FF FF"));
  EXPECT_EQ(h->client_id, 0xFFFFFFFFu);
  EXPECT_EQ(h->port, 0xFFFF);
  EXPECT_FALSE(is_known_type(h->type));
  EXPECT_FALSE(is_known_proto(h->proto));
}

TEST(TunnelFrame, ShortMessagesAreInvalid) {
  EXPECT_FALSE(parse_header(""));
  EXPECT_FALSE(parse_header(unhex("03 00 00 00 00 01 00")));
  EXPECT_TRUE(parse_header(unhex("03 00 00 00 00 01 00 00")));
  EXPECT_EQ(payload_of(unhex("03 00 00 00 00 01 00 00")), "");
  EXPECT_EQ(payload_of("abc"), "");
}

TEST(TunnelFrame, KnownTypesAndProtos) {
  EXPECT_FALSE(is_known_type(0));
  for (int t = 1; t <= 7; ++t) EXPECT_TRUE(is_known_type(static_cast<std::uint8_t>(t)));
  EXPECT_FALSE(is_known_type(8));
  EXPECT_TRUE(is_known_proto(0));
  EXPECT_TRUE(is_known_proto(1));
  EXPECT_FALSE(is_known_proto(2));
  EXPECT_STREQ(type_name(0x05), "ERROR");
  EXPECT_STREQ(type_name(0x42), "UNKNOWN");
}

TEST(TunnelFrame, RewriteClientIdKeepsEverythingElse) {
  std::string m = encode(MsgType::Data, Proto::Udp, 1, 0, "payload");
  set_client_id(m, 0xA1B2C3D4);
  EXPECT_EQ(hex(m.substr(0, 8)), "03 01 A1 B2 C3 D4 00 00");
  EXPECT_EQ(payload_of(m), "payload");
  auto h = parse_header(m);
  EXPECT_EQ(h->client_id, 0xA1B2C3D4u);
}

TEST(TunnelFrame, BinaryPayloadRoundTrip) {
  std::string payload;
  for (int i = 0; i < 70000; ++i) payload += static_cast<char>(i * 7);
  std::string m = encode(MsgType::Data, Proto::Tcp, 9, 0, payload);
  ASSERT_EQ(m.size(), 8 + payload.size());
  EXPECT_EQ(payload_of(m), payload);
}
