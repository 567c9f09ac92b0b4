// libFuzzer target: everything that parses bytes a tunnel peer controls.
// The first byte picks the parser: the 8-byte tunnel header and the relay
// rules (runner side: classify, id rewrite, DATA cut for the host's 1 MiB
// limit), the tunnel-client's RFC 6455 frame parser (server → client bytes
// fed in random slices) and its handshake-response check.
// Links against kr_parsers like the other targets in tests/fuzz. By hand:
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc \
//     tests/fuzz/fuzz_tunnel_frame.cpp src/tunnel/frame.cpp src/tunnel/relay_rules.cpp \
//     src/tunnel/ws_client_codec.cpp -o fuzz_tunnel_frame
//   ./fuzz_tunnel_frame tests/fuzz/corpus/tunnel_frame
#include <cstddef>
#include <cstdint>
#include <string>

#include "tunnel/frame.hpp"
#include "tunnel/relay_rules.hpp"
#include "tunnel/ws_client_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0] % 3;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0) {
    std::string m(in);
    (void)kr::tunnel::classify_from_container(m);
    (void)kr::tunnel::classify_from_user(m);
    if (auto h = kr::tunnel::parse_header(m)) {
      std::string copy = m;
      kr::tunnel::set_client_id(copy, h->client_id ^ 0x5A5A5A5Au);
      std::string re = kr::tunnel::encode(*h, kr::tunnel::payload_of(m));
      if (re != m) __builtin_trap();  // parse ∘ encode is the identity
      std::size_t total = 0;
      for (auto& part : kr::tunnel::split_data(m, 64)) {
        if (part.size() > 64 && h->type == 3) __builtin_trap();
        total += kr::tunnel::payload_of(part).size();
      }
      if (total != kr::tunnel::payload_of(m).size()) __builtin_trap();
    }
  } else if (mode == 1) {
    kr::tunnel::ws::FrameParser parser(1 << 16);
    std::size_t step = in.empty() ? 1 : static_cast<unsigned char>(in[0]) % 17 + 1;
    while (!in.empty()) {
      std::string_view slice = in.substr(0, step);
      in.remove_prefix(slice.size());
      while (!slice.empty()) {
        auto e = parser.next(slice);
        if (e.kind == kr::tunnel::ws::FrameParser::Event::Kind::Error) return 0;
      }
    }
  } else {
    (void)kr::tunnel::ws::check_handshake_response(in, "dGhlIHNhbXBsZSBub25jZQ==");
    std::string err;
    (void)kr::tunnel::ws::parse_url(in, &err);
  }
  return 0;
}
