#include "ssh/client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>

#include <libssh/libssh.h>
#include <spdlog/spdlog.h>

#include "common/shell_quote.hpp"
#include "ssh/session.hpp"

namespace kr::ssh {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct KeyFree {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
using KeyPtr = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

// Writes `text` to `path` with `mode` through a temporary file and a rename,
// so a reader never sees half a key.
std::string write_file_atomic(const fs::path& path, const std::string& text, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return "cannot create " + tmp.string() + ": " + std::strerror(errno);
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string e = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return "cannot write " + tmp.string() + ": " + e;
    }
    off += static_cast<std::size_t>(n);
  }
  ::fchmod(fd, mode);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return "cannot write " + tmp.string();
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string e = std::strerror(errno);
    ::unlink(tmp.c_str());
    return "cannot rename to " + path.string() + ": " + e;
  }
  return "";
}

std::string public_line(ssh_key key) {
  char* b64 = nullptr;
  if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK || !b64) return "";
  std::string line = std::string(ssh_key_type_to_char(ssh_key_type(key))) + " " + b64 + " kohakuriver-runner\n";
  ssh_string_free_char(b64);
  return line;
}

std::mutex key_mutex;  // two first uses at once make one key

}  // namespace

fs::path runner_key_path() {
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/root") / ".kohakuriver" / "runner_ssh_key";
}

std::string ensure_ssh_key(const fs::path& key) {
  std::lock_guard lk(key_mutex);
  const fs::path pub = key.string() + ".pub";
  std::error_code ec;
  fs::create_directories(key.parent_path(), ec);
  if (ec) return "cannot create " + key.parent_path().string() + ": " + ec.message();
  // Two runners starting at once must not end with one's private key and
  // the other's public key: one at a time, across processes too.
  const std::string lock_path = key.string() + ".lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return "cannot open " + lock_path + ": " + std::strerror(errno);
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock_fd};
  while (::flock(lock_fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  KeyPtr k;
  if (fs::exists(key, ec)) {
    if (fs::exists(pub, ec)) return "";
    ssh_key raw = nullptr;
    if (ssh_pki_import_privkey_file(key.c_str(), nullptr, nullptr, nullptr, &raw) != SSH_OK)
      return "cannot read the private key " + key.string();
    k.reset(raw);
  } else {
    ssh_key raw = nullptr;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &raw) != SSH_OK) return "ed25519 key generation failed";
    k.reset(raw);
    char* b64 = nullptr;
    // libssh writes ed25519 private keys in the OpenSSH format.
    if (ssh_pki_export_privkey_base64(k.get(), nullptr, nullptr, nullptr, &b64) != SSH_OK || !b64)
      return "cannot export the private key";
    std::string text = b64;
    ssh_string_free_char(b64);
    if (text.empty() || text.back() != '\n') text += '\n';
    if (auto e = write_file_atomic(key, text, 0600); !e.empty()) return e;
  }
  std::string line = public_line(k.get());
  if (line.empty()) return "cannot export the public key";
  return write_file_atomic(pub, line, 0644);
}

std::string runner_public_key_line() {
  const fs::path key = runner_key_path();
  if (auto e = ensure_ssh_key(key); !e.empty()) {
    spdlog::warn("runner SSH key {}: {}", key.string(), e);
    return "";
  }
  std::ifstream in(key.string() + ".pub");
  std::string line;
  std::getline(in, line);
  return line;
}

std::string join_command(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += shell_quote(a);
  }
  return s;
}

std::string command_ending_with_channel(const std::vector<std::string>& argv) {
  // fd 3 keeps the channel's stdin for the watcher: an asynchronous list's
  // stdin is /dev/null unless redirected explicitly.
  static const std::string script =
      "exec 3<&0; \"$@\" <&- 3<&- & p=$!; "
      "{ cat >/dev/null 2>&1; kill $p 2>/dev/null; } <&3 >/dev/null 2>&1 & "
      "exec 3<&-; wait $p";
  std::vector<std::string> line = {"sh", "-c", script, "sh"};
  line.insert(line.end(), argv.begin(), argv.end());
  return join_command(line);
}

SshExecResult ssh_exec(const SshTarget& target, const std::string& command,
                       const std::optional<std::string>& stdin_data, std::chrono::milliseconds deadline,
                       std::size_t max_stdout) {
  SshExecResult r;
  const auto end = Clock::now() + deadline;
  auto fail = [&r](const std::string& why) {
    r.exit_code = -1;
    r.out.clear();
    r.err = "SSH error: " + why;
    return r;
  };
  auto timeout = [&r] {
    r.exit_code = -1;
    r.out.clear();
    r.err = "SSH command timed out";
    r.timed_out = true;
    return r;
  };
  auto left = [&end] { return std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()); };

  SshConnection c;
  std::string why = c.open(target, std::min(left(), std::chrono::milliseconds(10000)));
  if (!why.empty()) return left().count() <= 0 ? timeout() : fail(why);
  if (!c.open_exec(command, why)) return fail(why);

  if (stdin_data) {
    std::size_t off = 0;
    while (off < stdin_data->size()) {
      if (left().count() <= 0) return timeout();
      const std::size_t n = std::min<std::size_t>(stdin_data->size() - off, 32u << 10);
      int w = ssh_channel_write(c.channel(), stdin_data->data() + off, static_cast<uint32_t>(n));
      if (w == SSH_ERROR) return fail(c.error());
      off += static_cast<std::size_t>(w);
    }
  }
  ssh_channel_send_eof(c.channel());

  char buf[32768];
  for (;;) {
    const auto ms = left().count();
    if (ms <= 0) return timeout();
    int n = ssh_channel_read_timeout(c.channel(), buf, sizeof buf, 0, static_cast<int>(std::min<long>(ms, 200)));
    if (n == SSH_ERROR) return fail(c.error());
    if (n > 0) {
      if (r.out.size() < max_stdout) r.out.append(buf, std::min<std::size_t>(n, max_stdout - r.out.size()));
      continue;
    }
    int m = ssh_channel_read_nonblocking(c.channel(), buf, sizeof buf, 1);
    if (m == SSH_ERROR) return fail(c.error());
    if (m > 0) {
      if (r.err.size() < (1u << 20)) r.err.append(buf, m);
      continue;
    }
    // n is 0 or SSH_AGAIN (timeout) here: nothing buffered on either stream.
    if (ssh_channel_is_eof(c.channel()) || ssh_channel_is_closed(c.channel())) break;
  }
  // The exit status may arrive just after EOF.
  int status = -1;
  while (left().count() > 0) {
    status = ssh_channel_get_exit_status(c.channel());
    if (status != -1 || ssh_channel_is_closed(c.channel())) break;
    ::usleep(5000);
  }
  r.exit_code = status == -1 ? 0 : status;  // missing exit status counts as 0 (§6.3)
  return r;
}

}  // namespace kr::ssh
