#pragma once
// A long-lived SSH channel into a VM for the I/O thread: the terminal's
// interactive shell (PTY) and the filesystem watch's inotifywait. The
// libssh session lives on its own thread (libssh blocks, and a session
// belongs to one thread); output reaches the awaiting coroutine through a
// queue plus a timer the thread pokes via post(); input, resizes and
// close() go the other way through a queue and a wake-up pipe.
//
//   auto s = co_await SshStream::open(spec);   // throws SshStreamError
//   while (auto chunk = co_await s->read()) ...;   // nullopt: channel ended
//   s->write("ls\n"); s->resize(40, 120); s->close();
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "ssh/client.hpp"

namespace kr::ssh {

struct SshStreamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SshStreamSpec {
  SshTarget target;
  std::chrono::milliseconds connect_timeout{15000};
  // Empty: an interactive shell with a PTY of term/cols/rows; else this
  // command without a PTY.
  std::string command;
  std::string term = "xterm-256color";
  int cols = 80;
  int rows = 24;
};

struct SshChunk {
  bool is_stderr = false;
  std::string data;
};

class SshStream {
 public:
  struct Shared;
  explicit SshStream(std::shared_ptr<Shared> shared);
  ~SshStream();  // close()
  SshStream(const SshStream&) = delete;
  SshStream& operator=(const SshStream&) = delete;

  static boost::asio::awaitable<std::unique_ptr<SshStream>> open(SshStreamSpec spec);

  // The next output chunk (stdout or stderr, in arrival order per stream);
  // nullopt once the channel ended (remote EOF/close, error, close()).
  boost::asio::awaitable<std::optional<SshChunk>> read();
  void write(std::string data);
  void resize(int rows, int cols);
  void close();
  // Why the channel ended ("" for a normal end).
  std::string end_error() const;

 private:
  std::shared_ptr<Shared> shared_;
};

}  // namespace kr::ssh
