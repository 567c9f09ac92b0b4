#include "overlay/iptables.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

extern char** environ;

namespace kr::overlay {

CommandResult run_command(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  CommandResult res;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return res;
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  ::posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  // posix_spawn, not fork: the runner is multi-threaded.
  const int rc = ::posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    res.output = std::string("cannot run ") + args[0] + ": " + std::strerror(rc);
    return res;
  }
  res.spawned = true;
  const auto until = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) {
      timed_out = true;
      break;
    }
    if (pr < 0) break;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (res.output.size() < 256 * 1024) res.output.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    res.output += "\n(timed out)";
    return res;
  }
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return res;
}

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

CommandResult Iptables::run(const std::string& table, std::vector<std::string> args) {
  std::vector<std::string> argv{program_, "-w", "10", "-t", table};
  argv.insert(argv.end(), args.begin(), args.end());
  auto res = run_command(argv, std::chrono::seconds(20));
  if (!res.spawned)
    throw IptablesError("the `" + program_ + "` command is needed for the overlay's firewall rules and could not be run (" +
                        res.output + ")");
  return res;
}

bool Iptables::chain_exists(const std::string& table, const std::string& chain) {
  return run(table, {"-S", chain}).exit_code == 0;
}

std::vector<std::vector<std::string>> Iptables::ours_in(const std::string& table, const std::string& chain) {
  auto res = run(table, {"-S", chain});
  if (res.exit_code != 0) return {};  // chain absent
  return our_rules_in_listing(res.output, chain);
}

std::vector<std::string> Iptables::apply(const std::vector<IptablesRule>& desired) {
  std::vector<std::string> changes;
  for (const auto& [table, chain] : managed_chains()) {
    std::vector<IptablesRule> want;
    for (const auto& r : desired)
      if (r.table == table && r.chain == chain) want.push_back(r);
    auto have = ours_in(table, chain);
    // In place when every wanted rule exists (-C) and nothing else of ours
    // is in the chain. Positions are not re-checked: a rule we inserted at
    // the top stays above the chain's own rules.
    bool in_place = have.size() == want.size();
    for (size_t i = 0; in_place && i < want.size(); ++i) {
      auto args = want[i].spec;
      args.insert(args.begin(), {"-C", chain});
      in_place = run(table, args).exit_code == 0;
    }
    if (in_place) continue;
    for (auto& args : have) {
      std::vector<std::string> del{"-D", chain};
      del.insert(del.end(), args.begin(), args.end());
      auto res = run(table, del);
      if (res.exit_code != 0)
        throw IptablesError("cannot delete rule `-t " + table + " -A " + chain + " " + join(args) +
                            "`: " + trimmed(res.output));
      changes.push_back("iptables: removed -t " + table + " -A " + chain + " " + join(args));
    }
    for (const auto& r : want) {
      std::vector<std::string> add;
      if (r.insert_at > 0)
        add = {"-I", chain, std::to_string(r.insert_at)};
      else
        add = {"-A", chain};
      add.insert(add.end(), r.spec.begin(), r.spec.end());
      auto res = run(table, add);
      if (res.exit_code != 0) throw IptablesError("cannot add rule `" + r.str() + "`: " + trimmed(res.output));
      changes.push_back("iptables: " + r.str());
    }
  }
  return changes;
}

std::vector<std::string> Iptables::remove_ours() {
  std::vector<std::string> removed;
  for (const auto& [table, chain] : managed_chains()) {
    for (auto& args : ours_in(table, chain)) {
      std::vector<std::string> del{"-D", chain};
      del.insert(del.end(), args.begin(), args.end());
      auto res = run(table, del);
      if (res.exit_code != 0)
        throw IptablesError("cannot delete rule `-t " + table + " -A " + chain + " " + join(args) +
                            "`: " + trimmed(res.output));
      removed.push_back("iptables -t " + table + " -A " + chain + " " + join(args));
    }
  }
  return removed;
}

std::vector<std::string> Iptables::remove_upstream(const Ipv4Net& cidr) {
  std::vector<std::string> removed;
  for (const auto& r : upstream_rules(cidr)) {
    for (int guard = 0; guard < 64; ++guard) {
      std::vector<std::string> del{"-D", r.chain};
      del.insert(del.end(), r.spec.begin(), r.spec.end());
      if (run(r.table, del).exit_code != 0) break;  // no (more) copies
      removed.push_back("iptables -t " + r.table + " -A " + r.chain + " " + join(r.spec));
    }
  }
  return removed;
}

}  // namespace kr::overlay
