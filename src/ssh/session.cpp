#include "ssh/session.hpp"

#include <algorithm>

namespace kr::ssh {

SshConnection::~SshConnection() {
  if (channel_) {
    if (ssh_channel_is_open(channel_)) ssh_channel_close(channel_);
    ssh_channel_free(channel_);
  }
  if (session_) {
    if (ssh_is_connected(session_)) ssh_disconnect(session_);
    ssh_free(session_);
  }
}

std::string SshConnection::error() const {
  const char* e = session_ ? ssh_get_error(session_) : nullptr;
  return e && *e ? e : "unknown SSH failure";
}

std::string SshConnection::open(const SshTarget& t, std::chrono::milliseconds connect_timeout) {
  session_ = ssh_new();
  if (!session_) return "cannot create an SSH session";
  int process_config = 0;
  unsigned int port = static_cast<unsigned int>(t.port);
  long secs = std::max<long>(1, static_cast<long>((connect_timeout.count() + 999) / 1000));
  int strict = 0;
  if (ssh_options_set(session_, SSH_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_options_set(session_, SSH_OPTIONS_HOST, t.host.c_str()) != SSH_OK ||
      ssh_options_set(session_, SSH_OPTIONS_PORT, &port) != SSH_OK ||
      ssh_options_set(session_, SSH_OPTIONS_USER, t.user.c_str()) != SSH_OK ||
      ssh_options_set(session_, SSH_OPTIONS_TIMEOUT, &secs) != SSH_OK ||
      ssh_options_set(session_, SSH_OPTIONS_STRICTHOSTKEYCHECK, &strict) != SSH_OK)
    return error();
  // No known_hosts file is read or written: host keys are not checked.
  ssh_options_set(session_, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
  ssh_options_set(session_, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
  if (ssh_connect(session_) != SSH_OK) return error();
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_file(t.key.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
    return "cannot read the key " + t.key.string();
  int rc = ssh_userauth_publickey(session_, nullptr, key);
  ssh_key_free(key);
  if (rc != SSH_AUTH_SUCCESS) return rc == SSH_AUTH_ERROR ? error() : "Authentication failed (publickey)";
  return "";
}

bool SshConnection::new_channel(std::string& why) {
  channel_ = ssh_channel_new(session_);
  if (!channel_ || ssh_channel_open_session(channel_) != SSH_OK) {
    why = error();
    return false;
  }
  return true;
}

bool SshConnection::open_exec(const std::string& command, std::string& why) {
  if (!new_channel(why)) return false;
  if (ssh_channel_request_exec(channel_, command.c_str()) != SSH_OK) {
    why = error();
    return false;
  }
  return true;
}

bool SshConnection::open_shell(const std::string& term, int cols, int rows, std::string& why) {
  if (!new_channel(why)) return false;
  if (ssh_channel_request_pty_size(channel_, term.c_str(), cols, rows) != SSH_OK ||
      ssh_channel_request_shell(channel_) != SSH_OK) {
    why = error();
    return false;
  }
  return true;
}

}  // namespace kr::ssh
