#pragma once
// Runner-initiated SSH into VMs (vm.md §1, §7.4, §11.4; execution.md §6.3,
// §7.4) through libssh, never a spawned `ssh`:
//  * the runner key $HOME/.kohakuriver/runner_ssh_key (+ .pub), ed25519 in
//    OpenSSH format, made when missing;
//  * one command to completion (filesystem API): a new connection per
//    command, user root, the runner key, host keys not checked;
//  * a long-lived channel (terminal shell with a PTY, inotifywait) driven by
//    its own thread: libssh calls block, and a session belongs to one
//    thread. The awaitable side lives in ssh/stream.hpp.
//
// Everything here blocks; call it on the blocking pool.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kr::ssh {

// $HOME/.kohakuriver/runner_ssh_key ("/root" when HOME is unset).
std::filesystem::path runner_key_path();

// Makes `key` (mode 0600) and `key`.pub when missing: a new ed25519 key,
// private part in OpenSSH format; a missing .pub alone is derived from the
// private key. Returns "" on success, else why not. Never replaces a key.
std::string ensure_ssh_key(const std::filesystem::path& key);

// The one-line public key ("ssh-ed25519 AAAA… kohakuriver-runner"), made
// first when missing; "" when it cannot be had (logged).
std::string runner_public_key_line();

struct SshTarget {
  std::string host;  // the VM's address
  int port = 22;
  std::string user = "root";
  std::filesystem::path key;  // private key file
};

struct SshExecResult {
  std::int64_t exit_code = -1;
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs `command` (one shell command line) to completion: connects (at most
// 10 s of the deadline), authenticates, feeds `stdin_data` then EOF, reads
// stdout/stderr (stdout beyond `max_stdout` is dropped) and the exit
// status (missing → 0, §6.3). SSH/OS errors → exit -1, err "SSH error: …";
// the deadline → exit -1, err "SSH command timed out", timed_out set.
SshExecResult ssh_exec(const SshTarget& target, const std::string& command,
                       const std::optional<std::string>& stdin_data, std::chrono::milliseconds deadline,
                       std::size_t max_stdout = 64u << 20);

// argv joined into one command line with Python shlex.quote per element
// (execution.md §1.5.2).
std::string join_command(const std::vector<std::string>& argv);

// argv as a command line that ends when its channel closes. Without a PTY
// sshd sends no SIGHUP when the client closes the channel, and a command
// that writes nothing meanwhile (`inotifywait -m` with no events) never
// gets SIGPIPE, so it would outlive its channel for good. The line runs
// argv under `sh` (whatever the login shell) beside a watcher that reads the
// channel's stdin and kills argv at its EOF; the line's exit status is
// argv's. For commands that read no stdin.
std::string command_ending_with_channel(const std::vector<std::string>& argv);

}  // namespace kr::ssh
