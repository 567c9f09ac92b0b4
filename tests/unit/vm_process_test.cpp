// Tool processes and QEMU pid verification (V10/V11).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vm/process.hpp"
#include "vm_test_util.hpp"

extern char** environ;

using namespace kr::vm;
using kr::vm::testing::read_file;
using kr::vm::testing::TempDir;

TEST(VmProcess, CapturesOutputAndExitCode) {
  auto r = run_process({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.output.find("out\n"), std::string::npos);
  EXPECT_NE(r.output.find("err\n"), std::string::npos);
}

TEST(VmProcess, ChildGetsNoDescriptorOfTheRunnerBeyondStdio) {
  // Like an Asio socket: not close-on-exec.
  int fd = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 3);
  auto r = run_process({"sh", "-c", "test -e /proc/$$/fd/" + std::to_string(fd) + " && echo inherited || echo closed"});
  ::close(fd);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "closed\n");
}

// The glibc < 2.34 path (Debian 11, RHEL 8 nodes of the portable release):
// close actions for what /proc/self/fd lists, then a plain posix_spawn.
TEST(VmProcess, ListedDescriptorsAreClosedInTheChild) {
  int fd = ::open("/dev/null", O_RDONLY);  // not close-on-exec
  ASSERT_GE(fd, 3);
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  add_close_listed_descriptors(&fa, 3);
  const std::string probe = "test -e /proc/$$/fd/" + std::to_string(fd);
  const char* argv[] = {"/bin/sh", "-c", probe.c_str(), nullptr};
  pid_t pid = -1;
  ASSERT_EQ(::posix_spawn(&pid, "/bin/sh", &fa, nullptr, const_cast<char**>(argv), environ), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(fd);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "descriptor " << fd << " was inherited";
}

TEST(VmProcess, MissingProgram) {
  auto r = run_process({"kr-no-such-program-xyz"});
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_NE(r.output.find("kr-no-such-program-xyz"), std::string::npos);
}

TEST(VmProcess, TimeoutKills) {
  ProcessOptions o;
  o.timeout = std::chrono::milliseconds(300);
  auto r = run_process({"/bin/sleep", "30"}, o);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, -1);
}

TEST(VmProcess, DaemonLaunchDoesNotWaitForTheDaemon) {
  // Like `qemu -daemonize`: the launcher exits, its child keeps stderr open.
  // With a file instead of a pipe the call returns when the launcher exits.
  TempDir tmp;
  ProcessOptions o;
  o.stderr_file = tmp.dir / "start.err";
  o.new_session = true;
  o.timeout = std::chrono::seconds(20);
  const auto pidfile = tmp.dir / "daemon.pid";
  auto start = std::chrono::steady_clock::now();
  auto r = run_process({"/bin/sh", "-c", "echo launching >&2; (sleep 30 & echo $! > " + pidfile.string() + ")", "x"}, o);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(read_file(tmp.dir / "start.err"), "launching\n");
  auto pid = read_pid_file(pidfile);
  ASSERT_TRUE(pid);
  EXPECT_TRUE(pid_exists(*pid));
  // New session: the daemon is not in our session.
  EXPECT_NE(::getsid(*pid), ::getsid(0));
  ::kill(*pid, SIGKILL);
}

TEST(VmProcess, PidFileParsing) {
  TempDir tmp;
  EXPECT_EQ(read_pid_file(tmp.write("a", "1234\n")), 1234);
  EXPECT_EQ(read_pid_file(tmp.write("b", "  99 ")), 99);
  for (const char* bad : {"", "abc", "12x", "-5", "0", "1", "99999999999"})
    EXPECT_FALSE(read_pid_file(tmp.write("c", bad))) << bad;
  EXPECT_FALSE(read_pid_file(tmp.dir / "missing"));
}

TEST(VmProcess, QemuCmdlineMustNameTheInstance) {
  const VmPaths p = vm_paths("/var/lib/kohakuriver/vm-instances", "/run/kohakuriver/vm", 42);
  const std::vector<std::string> qemu = {"qemu-system-x86_64", "-enable-kvm", "-pidfile",
                                         "/var/lib/kohakuriver/vm-instances/42/qemu.pid", "-daemonize"};
  EXPECT_TRUE(is_qemu_of_instance(qemu, p));
  auto abs = qemu;
  abs[0] = "/usr/bin/qemu-system-x86_64";
  EXPECT_TRUE(is_qemu_of_instance(abs, p));
  auto other_vm = qemu;
  other_vm[3] = "/var/lib/kohakuriver/vm-instances/43/qemu.pid";
  EXPECT_FALSE(is_qemu_of_instance(other_vm, p));
  auto not_qemu = qemu;
  not_qemu[0] = "/usr/bin/python3";
  EXPECT_FALSE(is_qemu_of_instance(not_qemu, p));
  EXPECT_FALSE(is_qemu_of_instance({"qemu-system-x86_64", "/var/lib/kohakuriver/vm-instances/42/qemu.pid"}, p));
  EXPECT_FALSE(is_qemu_of_instance({}, p));
}

TEST(VmProcess, VerifiedPidUsesProcCmdline) {
  TempDir tmp;
  const VmPaths p = vm_paths(tmp.dir / "instances", tmp.dir / "run", 42);
  std::filesystem::create_directories(p.instance_dir);
  const auto proc = tmp.dir / "proc";
  const std::string cmd = std::string("qemu-system-x86_64\0-pidfile\0", 28) + p.pid_file.string() + std::string("\0", 1);
  tmp.write("proc/4242/cmdline", cmd);
  tmp.write("proc/4343/cmdline", std::string("/usr/sbin/sshd\0-D\0", 18));
  EXPECT_FALSE(verified_qemu_pid(p, proc));  // no pid file
  tmp.write("instances/42/qemu.pid", "4242\n");
  EXPECT_EQ(verified_qemu_pid(p, proc), 4242);
  tmp.write("instances/42/qemu.pid", "4343\n");  // reused by another program
  EXPECT_FALSE(verified_qemu_pid(p, proc));
  tmp.write("instances/42/qemu.pid", "4444\n");  // gone
  EXPECT_FALSE(verified_qemu_pid(p, proc));
  // The live /proc: our own pid is not a QEMU.
  tmp.write("instances/42/qemu.pid", std::to_string(::getpid()));
  EXPECT_FALSE(verified_qemu_pid(p));
  auto self = read_cmdline(::getpid());
  ASSERT_TRUE(self);
  EXPECT_FALSE(self->empty());
}
