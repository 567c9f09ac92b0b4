#include <gtest/gtest.h>

#include "docker/exec_frames.hpp"

using namespace kr::docker;

TEST(ExecFrames, DemuxAcrossArbitraryChunks) {
  std::string stream = mux_frame(StdStream::Stdout, "hello ") + mux_frame(StdStream::Stderr, "oops") +
                       mux_frame(StdStream::Stdout, std::string(70000, 'x')) + mux_frame(StdStream::Stdout, "");
  for (std::size_t step : {1u, 3u, 7u, 8u, 9u, 4096u, 1000000u}) {
    StreamDemuxer d;
    std::string out, err;
    StreamDemuxer::Sink sink = [&](StdStream s, std::string_view p) { (s == StdStream::Stderr ? err : out) += p; };
    for (std::size_t i = 0; i < stream.size(); i += step) d.feed(std::string_view(stream).substr(i, step), sink);
    EXPECT_EQ(out, "hello " + std::string(70000, 'x')) << step;
    EXPECT_EQ(err, "oops");
    EXPECT_TRUE(d.at_boundary());
  }
}

TEST(ExecFrames, RejectsNonMultiplexedBytes) {
  StreamDemuxer d;
  StreamDemuxer::Sink sink = [](StdStream, std::string_view) {};
  EXPECT_THROW(d.feed("root@abc:/# ls\r\n", sink), std::runtime_error);
}

TEST(ExecFrames, CreateBody) {
  ExecSpec s;
  s.cmd = {"/bin/sh"};
  s.tty = true;
  s.attach_stdin = true;
  auto b = exec_create_body(s);
  EXPECT_EQ(b["Cmd"], nlohmann::json::array({"/bin/sh"}));
  EXPECT_EQ(b["Tty"], true);
  EXPECT_EQ(b["AttachStdin"], true);
  EXPECT_EQ(b["AttachStdout"], true);
  EXPECT_FALSE(b.contains("User"));
  EXPECT_FALSE(b.contains("Env"));
}
