#include "docker/exec_frames.hpp"

#include <stdexcept>

namespace kr::docker {

nlohmann::json exec_create_body(const ExecSpec& spec) {
  nlohmann::json b = nlohmann::json::object();
  b["AttachStdin"] = spec.attach_stdin;
  b["AttachStdout"] = spec.attach_stdout;
  b["AttachStderr"] = spec.attach_stderr;
  b["Tty"] = spec.tty;
  b["Cmd"] = spec.cmd;
  if (!spec.env.empty()) b["Env"] = spec.env;
  if (!spec.user.empty()) b["User"] = spec.user;
  if (!spec.working_dir.empty()) b["WorkingDir"] = spec.working_dir;
  return b;
}

void StreamDemuxer::feed(std::string_view bytes, const Sink& sink) {
  while (!bytes.empty()) {
    if (remaining_ == 0) {
      const std::size_t take = std::min<std::size_t>(8 - header_len_, bytes.size());
      for (std::size_t i = 0; i < take; ++i) header_[header_len_ + i] = static_cast<unsigned char>(bytes[i]);
      header_len_ += take;
      bytes.remove_prefix(take);
      if (header_len_ < 8) return;
      header_len_ = 0;
      if (header_[0] > 2 || header_[1] != 0 || header_[2] != 0 || header_[3] != 0)
        throw std::runtime_error("exec stream: invalid frame header");
      current_ = static_cast<StdStream>(header_[0]);
      remaining_ = (std::uint32_t(header_[4]) << 24) | (std::uint32_t(header_[5]) << 16) |
                   (std::uint32_t(header_[6]) << 8) | std::uint32_t(header_[7]);
      continue;
    }
    const std::size_t take = std::min<std::size_t>(remaining_, bytes.size());
    sink(current_, bytes.substr(0, take));
    remaining_ -= static_cast<std::uint32_t>(take);
    bytes.remove_prefix(take);
  }
}

std::string mux_frame(StdStream stream, std::string_view payload) {
  std::string out(8, '\0');
  out[0] = static_cast<char>(stream);
  const auto n = static_cast<std::uint32_t>(payload.size());
  out[4] = static_cast<char>((n >> 24) & 0xff);
  out[5] = static_cast<char>((n >> 16) & 0xff);
  out[6] = static_cast<char>((n >> 8) & 0xff);
  out[7] = static_cast<char>(n & 0xff);
  out.append(payload);
  return out;
}

}  // namespace kr::docker
