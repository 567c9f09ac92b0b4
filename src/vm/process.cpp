#include "vm/process.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

extern char** environ;

namespace kr::vm {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kOutputLimit = 64 * 1024;

struct FileActions {
  posix_spawn_file_actions_t fa;
  FileActions() { ::posix_spawn_file_actions_init(&fa); }
  ~FileActions() { ::posix_spawn_file_actions_destroy(&fa); }
};
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { ::posix_spawnattr_init(&attr); }
  ~SpawnAttr() { ::posix_spawnattr_destroy(&attr); }
};

// Closes every descriptor >= `from` in the child.
#if defined(__GLIBC__) && !__GLIBC_PREREQ(2, 34)
// Built against glibc < 2.34 (the portable release's 2.28 baseline), which
// lacks posix_spawn_file_actions_addclosefrom_np: use it when the glibc the
// runner runs on has it, otherwise close what is open now. Descriptors opened
// by another thread between the listing and the spawn can still leak there.
void add_close_from(posix_spawn_file_actions_t* fa, int from) {
  using Fn = int (*)(posix_spawn_file_actions_t*, int);
  static const Fn closefrom = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "posix_spawn_file_actions_addclosefrom_np"));
  if (closefrom) {
    closefrom(fa, from);
    return;
  }
  add_close_listed_descriptors(fa, from);
}
#else
void add_close_from(posix_spawn_file_actions_t* fa, int from) { ::posix_spawn_file_actions_addclosefrom_np(fa, from); }
#endif

void kill_and_reap(pid_t pid, int& status) {
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

void add_close_listed_descriptors(posix_spawn_file_actions_t* fa, int from) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return;
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    int fd = -1;
    const char* end = e->d_name + std::strlen(e->d_name);
    if (std::from_chars(e->d_name, end, fd).ptr == end && fd >= from && fd != own)
      ::posix_spawn_file_actions_addclose(fa, fd);  // glibc ignores EBADF of a close action
  }
  ::closedir(dir);
}

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options) {
  ProcessResult result;
  if (argv.empty()) {
    result.output = "empty command";
    return result;
  }
  int fds[2] = {-1, -1};
  FileActions actions;
  SpawnAttr attr;
  ::posix_spawn_file_actions_addopen(&actions.fa, 0, "/dev/null", O_RDONLY, 0);
  if (options.stderr_file) {
    ::posix_spawn_file_actions_addopen(&actions.fa, 1, "/dev/null", O_WRONLY, 0);
    ::posix_spawn_file_actions_addopen(&actions.fa, 2, options.stderr_file->c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
  } else {
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      result.output = std::string("pipe: ") + std::strerror(errno);
      return result;
    }
    ::posix_spawn_file_actions_adddup2(&actions.fa, fds[1], 1);
    ::posix_spawn_file_actions_adddup2(&actions.fa, fds[1], 2);
  }
  // Nothing of the runner beyond stdio: Asio's sockets are not close-on-exec,
  // and a QEMU daemon outlives the runner (V26) — it kept the runner's
  // listening socket, so a restarted runner could not bind its port.
  add_close_from(&actions.fa, 3);
  // Default signal dispositions and mask in the child: the runner blocks or
  // handles SIGTERM/SIGINT itself, and a QEMU daemon must not inherit that.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr.attr, &none);
  ::posix_spawnattr_setsigdefault(&attr.attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_session) flags |= POSIX_SPAWN_SETSID;
  ::posix_spawnattr_setflags(&attr.attr, flags);

  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, cargv[0], &actions.fa, &attr.attr, cargv.data(), environ);
  if (fds[1] >= 0) ::close(fds[1]);
  if (rc != 0) {
    if (fds[0] >= 0) ::close(fds[0]);
    result.output = argv[0] + ": " + std::strerror(rc);
    return result;
  }

  const auto until = std::chrono::steady_clock::now() + options.timeout;
  auto left_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
  };
  int status = 0;
  if (fds[0] >= 0) {
    for (;;) {
      const auto left = left_ms();
      if (left <= 0) {
        result.timed_out = true;
        break;
      }
      pollfd p{fds[0], POLLIN, 0};
      const int pr = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
      if (pr < 0 && errno == EINTR) continue;
      if (pr == 0) {
        result.timed_out = true;
        break;
      }
      if (pr < 0) break;
      char buf[4096];
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF: every writer closed
      if (result.output.size() < kOutputLimit)
        result.output.append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), kOutputLimit - result.output.size()));
    }
    ::close(fds[0]);
  }
  // Wait for the exit itself within what is left of the deadline.
  for (;;) {
    if (result.timed_out) {
      kill_and_reap(pid, status);
      break;
    }
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (left_ms() <= 0) {
      result.timed_out = true;
      continue;
    }
    ::usleep(10 * 1000);
  }
  if (!result.timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

std::optional<fs::path> find_program(std::string_view name, const std::string& path_env) {
  if (name.find('/') != std::string_view::npos) {
    if (::access(std::string(name).c_str(), X_OK) == 0) return fs::path(name);
    return std::nullopt;
  }
  std::string_view rest = path_env;
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::optional<pid_t> read_pid_file(const fs::path& pid_file) {
  std::ifstream in(pid_file);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) return std::nullopt;
  text = text.substr(first, last - first + 1);
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 1 || value > 0x7fffffff) return std::nullopt;
  return static_cast<pid_t>(value);
}

bool pid_exists(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  // A daemon's exit leaves a zombie until its parent (init, or whatever
  // adopted it) reaps it; a zombie is not a running QEMU.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren != std::string::npos && paren + 2 < text.size() && (text[paren + 2] == 'Z' || text[paren + 2] == 'X'))
    return false;
  return true;
}

std::optional<std::vector<std::string>> read_cmdline(pid_t pid, const fs::path& proc_root) {
  std::ifstream in(proc_root / std::to_string(pid) / "cmdline", std::ios::binary);
  if (!in) return std::nullopt;
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (raw.empty()) return std::nullopt;  // zombie or kernel thread
  std::vector<std::string> argv;
  std::size_t pos = 0;
  while (pos < raw.size()) {
    const auto nul = raw.find('\0', pos);
    argv.push_back(raw.substr(pos, nul == std::string::npos ? std::string::npos : nul - pos));
    if (nul == std::string::npos) break;
    pos = nul + 1;
  }
  return argv;
}

bool is_qemu_of_instance(const std::vector<std::string>& cmdline, const VmPaths& paths) {
  if (cmdline.empty()) return false;
  if (!fs::path(cmdline[0]).filename().string().starts_with("qemu-system")) return false;
  const std::string pid_file = paths.pid_file.string();
  for (std::size_t i = 1; i + 1 < cmdline.size(); ++i)
    if (cmdline[i] == "-pidfile" && cmdline[i + 1] == pid_file) return true;
  return false;
}

std::optional<pid_t> verified_qemu_pid(const VmPaths& paths, const fs::path& proc_root) {
  const auto pid = read_pid_file(paths.pid_file);
  if (!pid) return std::nullopt;
  const auto cmdline = read_cmdline(*pid, proc_root);
  if (!cmdline || !is_qemu_of_instance(*cmdline, paths)) return std::nullopt;
  return pid;
}

}  // namespace kr::vm
