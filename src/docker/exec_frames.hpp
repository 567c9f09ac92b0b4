#pragma once
// Pure helpers for exec streams (no I/O): the Engine API's stdout/stderr
// multiplexing of non-TTY attach streams, and the exec create body.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kr::docker {

// What to run with POST /containers/{id}/exec.
struct ExecSpec {
  std::vector<std::string> cmd;
  bool tty = false;
  bool attach_stdin = false;
  bool attach_stdout = true;
  bool attach_stderr = true;
  std::vector<std::string> env;  // "K=V"
  std::string user;              // empty: the container's default
  std::string working_dir;       // empty: the container's default
};

nlohmann::json exec_create_body(const ExecSpec& spec);

enum class StdStream : std::uint8_t { Stdin = 0, Stdout = 1, Stderr = 2 };

// Splits the multiplexed stream of a non-TTY exec (8-byte headers: stream
// type, 3 zero bytes, big-endian payload size) into payload pieces. Chunk
// boundaries may fall anywhere, including inside a header; payloads are
// delivered as they arrive (a frame may come in several pieces).
class StreamDemuxer {
 public:
  using Sink = std::function<void(StdStream stream, std::string_view payload)>;
  // Throws std::runtime_error on an unknown stream type (not a multiplexed
  // stream, e.g. a TTY exec fed to the demuxer by mistake).
  void feed(std::string_view bytes, const Sink& sink);
  // True when the stream stopped at a frame boundary.
  bool at_boundary() const { return header_len_ == 0 && remaining_ == 0; }

 private:
  unsigned char header_[8] = {};
  std::size_t header_len_ = 0;
  std::uint32_t remaining_ = 0;
  StdStream current_ = StdStream::Stdout;
};

// Builds one frame (tests and benchmarks).
std::string mux_frame(StdStream stream, std::string_view payload);

}  // namespace kr::docker
