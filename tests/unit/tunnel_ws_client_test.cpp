// The tunnel-client's WebSocket side (RFC 6455 client) and its command
// line (the upstream Rust client's flags and environment).
#include <gtest/gtest.h>

#include <map>

#include "tunnel/client_options.hpp"
#include "tunnel/ws_client_codec.hpp"

using namespace kr::tunnel;
using namespace kr::tunnel::ws;

TEST(TunnelWsClient, UrlParsing) {
  std::string err;
  auto u = parse_url("ws://172.30.0.1:8001/ws/tunnel/kohakuriver-task-1", &err);
  ASSERT_TRUE(u) << err;
  EXPECT_EQ(u->host, "172.30.0.1");
  EXPECT_EQ(u->port, 8001);
  EXPECT_EQ(u->path, "/ws/tunnel/kohakuriver-task-1");
  u = parse_url("ws://runner", &err);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->path, "/");
  u = parse_url("WS://[fd00::1]:9000/x?y=1#frag", &err);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "fd00::1");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->path, "/x?y=1");
  EXPECT_FALSE(parse_url("wss://10.0.0.1:8001/ws", &err));
  EXPECT_NE(err.find("wss:// is not supported"), std::string::npos);
  EXPECT_FALSE(parse_url("http://10.0.0.1/", &err));
  EXPECT_FALSE(parse_url("ws://:80/", &err));
  EXPECT_FALSE(parse_url("ws://h:0/", &err));
  EXPECT_FALSE(parse_url("ws://h:65536/", &err));
  EXPECT_FALSE(parse_url("ws://h:8x/", &err));
  EXPECT_FALSE(parse_url("172.30.0.1:8001", &err));
}

TEST(TunnelWsClient, TunnelUrlLikeTheRustClient) {
  EXPECT_EQ(tunnel_url("ws://10.0.0.1:8001", "c1"), "ws://10.0.0.1:8001/ws/tunnel/c1");
  EXPECT_EQ(tunnel_url("ws://10.0.0.1:8001///", "c1"), "ws://10.0.0.1:8001/ws/tunnel/c1");
  EXPECT_EQ(tunnel_url("ws://10.0.0.1:8001/prefix/", "c1"), "ws://10.0.0.1:8001/prefix/ws/tunnel/c1");
}

TEST(TunnelWsClient, Sha1Base64AndAcceptKey) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64(sha1("abc")), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
  EXPECT_EQ(base64(sha1("")), "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
  EXPECT_EQ(base64(sha1(std::string(1000, 'a'))), "KR6abGaZSUm1e6XmUDYemPw2sbo=");  // hashlib.sha1
  // RFC 6455 §1.3 example.
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(TunnelWsClient, HandshakeRequestAndResponse) {
  Url u{"10.1.2.3", 8001, "/ws/tunnel/x"};
  std::string req = handshake_request(u, "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(req.rfind("GET /ws/tunnel/x HTTP/1.1\r\n", 0), 0u);
  EXPECT_NE(req.find("Host: 10.1.2.3:8001\r\n"), std::string::npos);
  EXPECT_NE(req.find("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), std::string::npos);
  EXPECT_EQ(req.find("Extensions"), std::string::npos);  // nothing offered
  EXPECT_EQ(req.substr(req.size() - 4), "\r\n\r\n");
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
  std::string ok =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  EXPECT_EQ(check_handshake_response(ok, key), "");
  std::string lower =
      "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
      "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  EXPECT_EQ(check_handshake_response(lower, key), "");
  EXPECT_NE(check_handshake_response("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", key).find("404"),
            std::string::npos);
  std::string bad_accept = ok;
  bad_accept.replace(bad_accept.find("s3pP"), 4, "AAAA");
  EXPECT_NE(check_handshake_response(bad_accept, key), "");
  std::string ext = ok;
  ext.insert(ext.size() - 2, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
  EXPECT_NE(check_handshake_response(ext, key), "");
}

TEST(TunnelWsClient, MaskedFramesAllLengths) {
  for (std::size_t n : {0u, 1u, 125u, 126u, 65535u, 65536u, 70000u}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 31 + 7);
    std::string out;
    encode_frame(out, Binary, payload, 0x11223344);
    const auto* b = reinterpret_cast<const unsigned char*>(out.data());
    EXPECT_EQ(b[0], 0x82);
    EXPECT_TRUE(b[1] & 0x80);
    std::size_t hl = 2, len = b[1] & 0x7F;
    if (len == 126) {
      len = (b[2] << 8) | b[3];
      hl = 4;
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | b[2 + i];
      hl = 10;
    }
    EXPECT_EQ(len, n);
    // Minimal length encoding.
    EXPECT_EQ(hl, n < 126 ? 2u : n <= 65535 ? 4u : 10u);
    EXPECT_EQ(b[hl], 0x11);
    EXPECT_EQ(b[hl + 3], 0x44);
    std::string body = out.substr(hl + 4);
    apply_mask(body.data(), body.size(), 0x11223344);
    EXPECT_EQ(body, payload);
  }
}

TEST(TunnelWsClient, MaskAtAnyOffsetMatchesBytewise) {
  std::string data(37, 'z');
  for (std::size_t off = 0; off < 4; ++off) {
    std::string a = data, b = data;
    apply_mask(a.data(), a.size(), 0xA1B2C3D4, off);
    const unsigned char k[4] = {0xA1, 0xB2, 0xC3, 0xD4};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>(b[i] ^ k[(off + i) & 3]);
    EXPECT_EQ(a, b);
  }
}

namespace {
std::string server_frame(std::uint8_t b0, std::string_view payload) {
  std::string f;
  f += static_cast<char>(b0);
  if (payload.size() < 126) f += static_cast<char>(payload.size());
  else if (payload.size() <= 0xFFFF) {
    f += static_cast<char>(126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xFF);
  } else {
    f += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((static_cast<std::uint64_t>(payload.size()) >> (8 * i)) & 0xFF);
  }
  f += payload;
  return f;
}
using Kind = FrameParser::Event::Kind;
}  // namespace

TEST(TunnelWsClient, ParserReassemblesAndInterleavesControlFrames) {
  std::string big(70000, 'q');
  std::string stream = server_frame(0x02, "first") + server_frame(0x02 /*not fin*/ & 0x7F, "ab") +
                       server_frame(0x89, "p!") + server_frame(0x80, "cd") + server_frame(0x82, big) +
                       server_frame(0x81, "text") + server_frame(0x8A, "") + server_frame(0x88, "\x03\xE8");
  // Mark "first" final.
  stream[0] = static_cast<char>(0x82);
  // Feed one byte at a time: every boundary must work.
  FrameParser p(1 << 20);
  std::vector<FrameParser::Event> events;
  for (char c : stream) {
    std::string_view in(&c, 1);
    while (!in.empty()) {
      auto e = p.next(in);
      if (e.kind != Kind::None) events.push_back(e);
    }
  }
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[0].kind, Kind::Message);
  EXPECT_EQ(events[0].payload, "first");
  EXPECT_EQ(events[1].kind, Kind::Ping);
  EXPECT_EQ(events[1].payload, "p!");
  EXPECT_EQ(events[2].kind, Kind::Message);
  EXPECT_EQ(events[2].payload, "abcd");
  EXPECT_EQ(events[3].payload, big);
  EXPECT_EQ(events[4].opcode, Text);
  EXPECT_EQ(events[5].kind, Kind::Pong);
  EXPECT_EQ(events[6].kind, Kind::Close);
  EXPECT_EQ(events[6].payload, "\x03\xE8");
}

TEST(TunnelWsClient, ParserRejectsProtocolErrors) {
  auto first_event = [](std::string s, std::size_t max = 1 << 20) {
    FrameParser p(max);
    std::string_view in(s);
    while (!in.empty()) {
      auto e = p.next(in);
      if (e.kind != Kind::None) return e;
    }
    return FrameParser::Event{};
  };
  EXPECT_EQ(first_event("\x82\x81" "abcdx").kind, Kind::Error);                  // masked from server
  EXPECT_EQ(first_event(server_frame(0xC2, "x")).kind, Kind::Error);             // RSV1
  EXPECT_EQ(first_event(server_frame(0x80, "x")).kind, Kind::Error);             // stray continuation
  EXPECT_EQ(first_event(server_frame(0x09, "x")).kind, Kind::Error);             // fragmented ping
  EXPECT_EQ(first_event(server_frame(0x83, "x")).kind, Kind::Error);             // reserved opcode
  EXPECT_EQ(first_event(server_frame(0x02, "a") + server_frame(0x82, "b")).kind, Kind::Error);
  EXPECT_EQ(first_event(server_frame(0x82, std::string(200, 'x')), 100).kind, Kind::Error);  // too big
  EXPECT_EQ(first_event(server_frame(0x89, std::string(126, 'x'))).kind, Kind::Error);      // long control
}

namespace {
ClientParse parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  return parse_client_args(args, [env](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}
}  // namespace

TEST(TunnelClientCli, RunnerStartLineAndForms) {
  // The exact arguments the runner's container wrapper passes.
  auto p = parse({"--runner-url", "ws://172.30.0.1:8001", "--container-id", "kohakuriver-task-7", "--log-level", "info"});
  ASSERT_EQ(p.action, ClientParse::Action::Run) << p.message;
  EXPECT_EQ(p.options.runner_url, "ws://172.30.0.1:8001");
  EXPECT_EQ(p.options.container_id, "kohakuriver-task-7");
  EXPECT_EQ(p.options.reconnect_delay_s, 5u);
  EXPECT_EQ(p.options.max_reconnect, 0u);
  EXPECT_EQ(p.options.log_level, "info");
  p = parse({"-rws://h:1", "-c", "x", "--reconnect-delay=2", "--max-reconnect", "3", "--log-level=debug"});
  ASSERT_EQ(p.action, ClientParse::Action::Run) << p.message;
  EXPECT_EQ(p.options.runner_url, "ws://h:1");
  EXPECT_EQ(p.options.reconnect_delay_s, 2u);
  EXPECT_EQ(p.options.max_reconnect, 3u);
  EXPECT_EQ(p.options.log_level, "debug");
  p = parse({"-r=ws://h:1", "-cx"});
  EXPECT_EQ(p.options.runner_url, "ws://h:1");
  EXPECT_EQ(p.options.container_id, "x");
}

TEST(TunnelClientCli, EnvironmentFallbacksAndPrecedence) {
  auto p = parse({}, {{"RUNNER_URL", "ws://e:2"},
                      {"CONTAINER_ID", "from-env"},
                      {"RECONNECT_DELAY", "9"},
                      {"MAX_RECONNECT", "4"},
                      {"LOG_LEVEL", "warn"}});
  ASSERT_EQ(p.action, ClientParse::Action::Run) << p.message;
  EXPECT_EQ(p.options.runner_url, "ws://e:2");
  EXPECT_EQ(p.options.container_id, "from-env");
  EXPECT_EQ(p.options.reconnect_delay_s, 9u);
  EXPECT_EQ(p.options.max_reconnect, 4u);
  EXPECT_EQ(p.options.log_level, "warn");
  p = parse({"-c", "flag"}, {{"RUNNER_URL", "ws://e:2"}, {"CONTAINER_ID", "env"}});
  EXPECT_EQ(p.options.container_id, "flag");
  // The KOHAKURIVER_* names are for the shell wrapper, not the client.
  p = parse({}, {{"KOHAKURIVER_TUNNEL_URL", "ws://e:2"}, {"KOHAKURIVER_CONTAINER_ID", "x"}});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
}

TEST(TunnelClientCli, ErrorsHelpVersion) {
  auto p = parse({});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_NE(p.message.find("--runner-url <RUNNER_URL>"), std::string::npos);
  EXPECT_NE(p.message.find("--container-id <CONTAINER_ID>"), std::string::npos);
  p = parse({"-r", "ws://h:1", "-c", "x", "--reconnect-delay", "-1"});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  p = parse({"-r", "ws://h:1", "-c", "x", "--max-reconnect", "4294967296"});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  p = parse({"-r", "ws://h:1", "-c", "x", "--bogus"});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  p = parse({"-r", "ws://h:1", "-c"});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  p = parse({"-r", "a", "-r", "b", "-c", "x"});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  p = parse({"extra"});
  EXPECT_EQ(p.action, ClientParse::Action::Error);
  p = parse({"-c", "x", "--help"});
  EXPECT_EQ(p.action, ClientParse::Action::Help);
  EXPECT_NE(p.message.find("[env: RUNNER_URL=]"), std::string::npos);
  p = parse({"-V"});
  EXPECT_EQ(p.action, ClientParse::Action::Version);
  EXPECT_EQ(p.message, "kohakuriver-tunnel 0.1.0\n");
}

TEST(TunnelWsClient, FrameBuiltInPlaceMatchesEncodeFrame) {
  for (std::size_t n : {0u, 1u, 117u, 118u, 125u, 126u, 65535u, 65536u, 262152u}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 13 + 5);
    std::string expected;
    encode_frame(expected, Binary, payload, 0xA1B2C3D4);
    std::string room(kMaxFrameHead, 'x');
    room += payload;
    std::size_t offset = build_frame_in_place(room.data(), n, Binary, 0xA1B2C3D4);
    EXPECT_EQ(room.substr(offset), expected) << n;
    unsigned char head[kMaxFrameHead];
    EXPECT_EQ(encode_frame_head(head, Binary, n, 0xA1B2C3D4), kMaxFrameHead - offset);
  }
}
