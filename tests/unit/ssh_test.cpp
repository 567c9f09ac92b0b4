// Runner SSH into VMs (src/ssh/client.*, stream.*): the runner key
// and libssh against a real OpenSSH sshd on loopback (package
// openssh-server, scripts/install-deps.sh --test), started by the test with
// its own host key and the generated key in its authorized_keys.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <fstream>
#include <thread>

#include "ssh/client.hpp"
#include "ssh/stream.hpp"
#include "vm/process.hpp"
#include "vm_test_util.hpp"

extern char** environ;

namespace kr::ssh {
namespace {

namespace fs = std::filesystem;
using vm::testing::read_file;
using vm::testing::TempDir;
using vm::run_process;
using vm::ProcessOptions;

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

TEST(VmSshKey, GeneratesAnOpenSshEd25519KeyOnceAndDerivesAMissingPub) {
  TempDir tmp;
  const fs::path key = tmp.dir / "home" / ".kohakuriver" / "runner_ssh_key";
  ASSERT_EQ(ensure_ssh_key(key), "");
  const std::string priv = read_file(key), pub = read_file(key.string() + ".pub");
  EXPECT_EQ(priv.rfind("-----BEGIN OPENSSH PRIVATE KEY-----\n", 0), 0u) << priv;
  EXPECT_NE(priv.find("-----END OPENSSH PRIVATE KEY-----"), std::string::npos);
  EXPECT_EQ(pub.rfind("ssh-ed25519 AAAA", 0), 0u) << pub;
  EXPECT_EQ(std::count(pub.begin(), pub.end(), '\n'), 1) << "one line";
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // OpenSSH reads the private key and derives the same public key.
  ProcessOptions o;
  auto r = run_process({"ssh-keygen", "-y", "-f", key.string()}, o);
  ASSERT_EQ(r.exit_code, 0) << r.output << " (openssh-client: scripts/install-deps.sh --test)";
  const std::string pub_fields = first_line(pub).substr(0, first_line(pub).rfind(' '));
  EXPECT_EQ(first_line(r.output).substr(0, pub_fields.size()), pub_fields);
  // A second call keeps the key.
  ASSERT_EQ(ensure_ssh_key(key), "");
  EXPECT_EQ(read_file(key), priv);
  EXPECT_EQ(read_file(key.string() + ".pub"), pub);
  // A lost .pub is derived from the private key, not a new key.
  fs::remove(key.string() + ".pub");
  ASSERT_EQ(ensure_ssh_key(key), "");
  EXPECT_EQ(read_file(key), priv);
  EXPECT_EQ(read_file(key.string() + ".pub"), pub);
}

TEST(VmSshKey, RunnerKeyLivesUnderHome) {
  TempDir tmp;
  const char* old = std::getenv("HOME");
  std::string saved = old ? old : "";
  ::setenv("HOME", tmp.dir.c_str(), 1);
  EXPECT_EQ(runner_key_path(), tmp.dir / ".kohakuriver" / "runner_ssh_key");
  const std::string line = runner_public_key_line();
  EXPECT_EQ(line.rfind("ssh-ed25519 ", 0), 0u) << line;
  EXPECT_EQ(line + "\n", read_file(tmp.dir / ".kohakuriver" / "runner_ssh_key.pub"));
  if (old) ::setenv("HOME", saved.c_str(), 1);
  else ::unsetenv("HOME");
}

TEST(VmSsh, JoinCommandQuotesLikeShlex) {
  EXPECT_EQ(join_command({"ls", "-la", "--time-style=+%s", "/a b/it's"}), "ls -la --time-style=+%s '/a b/it'\"'\"'s'");
  EXPECT_EQ(join_command({"stat", "--format=%F|%s", ""}), "stat '--format=%F|%s' ''");
}

// A real sshd on 127.0.0.1:<free port> that accepts `key` for root.
class Sshd {
 public:
  explicit Sshd(const fs::path& dir, const fs::path& client_key) {
    ::mkdir("/run/sshd", 0755);  // privilege separation directory
    const fs::path host_key = dir / "host_key";
    ProcessOptions o;
    auto g = run_process({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key.string()}, o);
    EXPECT_EQ(g.exit_code, 0) << g.output;
    fs::copy_file(client_key.string() + ".pub", dir / "authorized_keys");
    port_ = free_port();
    const fs::path conf = dir / "sshd_config";
    std::ofstream(conf) << "ListenAddress 127.0.0.1\nPort " << port_ << "\nHostKey " << host_key.string()
                        << "\nAuthorizedKeysFile " << (dir / "authorized_keys").string()
                        << "\nStrictModes no\nUsePAM no\nPidFile none\nPermitRootLogin yes\n"
                        << "PasswordAuthentication no\nLogLevel ERROR\n";
    std::vector<std::string> argv = {"/usr/sbin/sshd", "-D", "-e", "-f", conf.string()};
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    if (::posix_spawn(&pid_, cargv[0], nullptr, nullptr, cargv.data(), environ) != 0) pid_ = 0;
    EXPECT_NE(pid_, 0) << "/usr/sbin/sshd (openssh-server: scripts/install-deps.sh --test)";
    // Listening?
    for (int i = 0; i < 200; ++i) {
      int s = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const bool up = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(s);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "sshd did not start listening";
  }
  ~Sshd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }

  static int free_port() {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(s);
    return ntohs(a.sin_port);
  }

 private:
  pid_t pid_ = 0;
  int port_ = 0;
};

class VmSshServer : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = tmp_.dir / "runner_ssh_key";
    ASSERT_EQ(ensure_ssh_key(key_), "");
    sshd_ = std::make_unique<Sshd>(tmp_.dir, key_);
    target_.host = "127.0.0.1";
    target_.port = sshd_->port();
    target_.key = key_;
  }
  TempDir tmp_;
  fs::path key_;
  std::unique_ptr<Sshd> sshd_;
  SshTarget target_;
};

TEST_F(VmSshServer, ExecRunsACommandLineWithStdinStdoutStderrAndExitStatus) {
  auto r = ssh_exec(target_, "echo out; echo err >&2; exit 3", std::nullopt, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);

  // The filesystem API's write: content through stdin (2 MiB, binary).
  std::string blob;
  for (int i = 0; i < (2 << 20); ++i) blob.push_back(static_cast<char>((static_cast<unsigned>(i) * 7919u) & 0xffu));
  const fs::path file = tmp_.dir / "dir with space" / "blob";
  fs::create_directories(file.parent_path());
  r = ssh_exec(target_, join_command({"sh", "-c", "cat > \"$1\"", "sh", file.string()}), blob,
               std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(file), blob);
  r = ssh_exec(target_, join_command({"head", "-c", "10485760", file.string()}), std::nullopt,
               std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), blob.size());
  EXPECT_TRUE(r.out == blob);
  // stdout beyond the cap is dropped.
  r = ssh_exec(target_, join_command({"head", "-c", "100000", file.string()}), std::nullopt, std::chrono::seconds(20),
               1000);
  EXPECT_EQ(r.out.size(), 1000u);
}

TEST_F(VmSshServer, ExecTimeoutAndErrors) {
  auto r = ssh_exec(target_, "sleep 20", std::nullopt, std::chrono::milliseconds(1500));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.err, "SSH command timed out");

  // Another key: refused.
  const fs::path other = tmp_.dir / "other_key";
  ASSERT_EQ(ensure_ssh_key(other), "");
  SshTarget t = target_;
  t.key = other;
  r = ssh_exec(t, "true", std::nullopt, std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.err.rfind("SSH error: ", 0), 0u) << r.err;
  EXPECT_FALSE(r.timed_out);

  // Nobody listening.
  t = target_;
  t.port = Sshd::free_port();
  r = ssh_exec(t, "true", std::nullopt, std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.err.rfind("SSH error: ", 0), 0u) << r.err;
}

namespace asio = boost::asio;

// Reads chunks until `want` appears in the collected output (or the end).
asio::awaitable<std::string> read_until(SshStream& s, std::string want, bool stderr_only = false) {
  std::string got;
  while (got.find(want) == std::string::npos) {
    auto c = co_await s.read();
    if (!c) break;
    if (!stderr_only || c->is_stderr) got += c->data;
  }
  co_return got;
}

TEST_F(VmSshServer, StreamShellWithPtyInputResizeAndClose) {
  asio::io_context io;
  std::string first, size_out, after_close;
  bool ended = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    SshStreamSpec spec;
    spec.target = target_;
    spec.cols = 100;
    spec.rows = 30;
    auto s = co_await SshStream::open(spec);
    s->write("stty size; echo MARK$((6*7))\n");
    first = co_await read_until(*s, "MARK42");
    s->resize(40, 120);
    asio::steady_timer t(io);
    t.expires_after(std::chrono::milliseconds(300));
    co_await t.async_wait(asio::use_awaitable);
    s->write("stty size; echo DONE$((1+1))\n");
    size_out = co_await read_until(*s, "DONE2");
    s->write("exit\n");
    after_close = co_await read_until(*s, "\x01never");
    ended = !(co_await s->read());
  }, asio::detached);
  io.run_for(std::chrono::seconds(30));
  EXPECT_NE(first.find("30 100"), std::string::npos) << first;
  EXPECT_NE(size_out.find("40 120"), std::string::npos) << size_out;
  EXPECT_TRUE(ended);
}

TEST_F(VmSshServer, StreamCommandSeparatesStderrAndCloseEndsIt) {
  asio::io_context io;
  std::string err;
  bool ended = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    SshStreamSpec spec;
    spec.target = target_;
    spec.command = "echo banner >&2; exec sleep 60";
    auto s = co_await SshStream::open(spec);
    err = co_await read_until(*s, "banner", true);
    s->close();
    ended = !(co_await s->read());
  }, asio::detached);
  io.run_for(std::chrono::seconds(20));
  EXPECT_NE(err.find("banner"), std::string::npos);
  EXPECT_TRUE(ended);
}

// Processes whose command line is exactly `argv` (NUL-separated in /proc).
int count_processes(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want += a + '\0';
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (got == want) ++n;
  }
  return n;
}

// The filesystem watch's inotifywait writes nothing while nothing changes:
// a plain command line outlived its closed channel (no PTY, so no SIGHUP).
TEST_F(VmSshServer, CommandEndingWithChannelDiesWhenTheChannelCloses) {
  const std::vector<std::string> marker = {"sleep", "4321.5"};
  asio::io_context io;
  int while_open = -1;
  bool ended = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    SshStreamSpec spec;
    spec.target = target_;
    spec.command = command_ending_with_channel(marker);
    auto s = co_await SshStream::open(spec);
    asio::steady_timer t(io);
    for (int i = 0; i < 50 && (while_open = count_processes(marker)) == 0; ++i) {
      t.expires_after(std::chrono::milliseconds(100));
      co_await t.async_wait(asio::use_awaitable);
    }
    s->close();
    ended = !(co_await s->read());
  }, asio::detached);
  io.run_for(std::chrono::seconds(20));
  EXPECT_EQ(while_open, 1);
  EXPECT_TRUE(ended);
  int left = 1;
  for (int i = 0; i < 50 && (left = count_processes(marker)) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(left, 0) << "the command outlived its closed channel";
}

TEST(VmSsh, CommandEndingWithChannelKeepsTheExitStatusAndQuoting) {
  // Run locally with a stdin that stays open for a second: an argv that ends
  // by itself keeps its own exit status, and its arguments arrive intact.
  const auto line = command_ending_with_channel({"sh", "-c", "echo \"$1\"; exit 7", "x", "it's a b"});
  FILE* p = ::popen(("sleep 1 | " + line).c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[256] = {};
  std::string out;
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int st = ::pclose(p);
  EXPECT_EQ(out, "it's a b\n");
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 7);
}

TEST_F(VmSshServer, StreamOpenFailureThrowsWithTheReason) {
  asio::io_context io;
  std::string why;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    SshStreamSpec spec;
    spec.target = target_;
    spec.target.port = Sshd::free_port();
    spec.connect_timeout = std::chrono::seconds(5);
    try {
      co_await SshStream::open(spec);
    } catch (const SshStreamError& e) {
      why = e.what();
    }
  }, asio::detached);
  io.run_for(std::chrono::seconds(20));
  EXPECT_FALSE(why.empty());
}

}  // namespace
}  // namespace kr::ssh
