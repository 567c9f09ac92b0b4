#pragma once
// One libssh session with one channel (internal to client.cpp and
// stream.cpp). Blocking; owned by one thread at a time.
#include <chrono>
#include <string>

#include <libssh/libssh.h>

#include "ssh/client.hpp"

namespace kr::ssh {

class SshConnection {
 public:
  SshConnection() = default;
  ~SshConnection();
  SshConnection(const SshConnection&) = delete;
  SshConnection& operator=(const SshConnection&) = delete;

  // Connects within `connect_timeout`, authenticates with the key file
  // (host key not checked, vm.md §11.4; no ~/.ssh/config). "" on success.
  std::string open(const SshTarget& target, std::chrono::milliseconds connect_timeout);
  bool open_exec(const std::string& command, std::string& why);
  bool open_shell(const std::string& term, int cols, int rows, std::string& why);

  ssh_session session() const { return session_; }
  ssh_channel channel() const { return channel_; }
  std::string error() const;

 private:
  bool new_channel(std::string& why);
  ssh_session session_ = nullptr;
  ssh_channel channel_ = nullptr;
};

}  // namespace kr::ssh
