// The tunnel-client's send buffer: frames built in place after a gap for
// the frame head must come out contiguous and in order, through growth,
// compaction and partial sends.
#include <gtest/gtest.h>

#include <string>

#include "tunnel/ws_client_codec.hpp"
#include "tunnel_client/out_buffer.hpp"

namespace {

using kr::tunnel_client::OutBuffer;
namespace ws = kr::tunnel::ws;

// Appends `payload` framed in place, the way the client frames a local read.
void frame_in_place(OutBuffer& out, const std::string& payload, std::uint32_t key) {
  char* room = out.prepare(ws::kMaxFrameHead + payload.size() + 100);  // more room than used, like a short read
  std::memcpy(room + ws::kMaxFrameHead, payload.data(), payload.size());
  std::size_t offset = ws::build_frame_in_place(room, payload.size(), ws::Binary, key);
  out.commit(offset, ws::kMaxFrameHead - offset + payload.size());
}

TEST(TunnelOutBuffer, InPlaceFramesMatchEncodedOnesThroughPartialSends) {
  OutBuffer out;
  std::string expected, sent;
  std::size_t sizes[] = {0, 5, 125, 126, 300, 65535, 65536, 70000, 262152, 3, 1000};
  std::uint32_t key = 0x01020304;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    std::string payload(sizes[i], '\0');
    for (std::size_t j = 0; j < payload.size(); ++j) payload[j] = static_cast<char>(j * 7 + i);
    ws::encode_frame(expected, ws::Binary, payload, key + i);
    if (i % 3 == 2) {
      out.append("");  // a no-op append between frames
    }
    frame_in_place(out, payload, key + static_cast<std::uint32_t>(i));
    // Send part of what is queued (as a non-blocking send would), so that
    // later frames are built behind unsent bytes and the buffer compacts.
    std::size_t n = out.size() / 2 + 1;
    if (n > out.size()) n = out.size();
    sent.append(out.data(), n);
    out.consume(n);
  }
  sent.append(out.data(), out.size());
  out.consume(out.size());
  EXPECT_EQ(out.size(), 0u);
  EXPECT_EQ(sent, expected);
}

TEST(TunnelOutBuffer, AppendConsumeAndTrim) {
  OutBuffer out;
  out.append("hello ");
  out.append("world");
  EXPECT_EQ(std::string(out.data(), out.size()), "hello world");
  out.consume(6);
  EXPECT_EQ(std::string(out.data(), out.size()), "world");
  out.trim(0);  // not empty: kept
  EXPECT_EQ(std::string(out.data(), out.size()), "world");
  out.consume(5);
  EXPECT_EQ(out.size(), 0u);
  out.trim(0);  // empty: memory given back, still usable
  out.append("again");
  EXPECT_EQ(std::string(out.data(), out.size()), "again");
}

}  // namespace
