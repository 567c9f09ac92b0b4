// VM NAT networking (vm.md §13): the address pool (pure) and, in a network
// namespace of the test's own (a forked child calls unshare(CLONE_NEWNET)),
// the real bridge, gateway address, iptables rules and persistent TAP made
// through libnl and /dev/net/tun.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>

#include "overlay/iptables.hpp"
#include "overlay/netlink.hpp"
#include "overlay/subnet.hpp"
#include "vm/vm_network.hpp"

using namespace kr::vm;

TEST(VmIpPool, LowestFreeFromTenUpAndReuse) {
  NatIpPool pool("10.200.0.0/24", "10.200.0.1");
  EXPECT_EQ(pool.prefix_len(), 24);
  EXPECT_EQ(pool.free_count(), 245u);
  EXPECT_EQ(pool.allocate(), "10.200.0.10");
  EXPECT_EQ(pool.allocate(), "10.200.0.11");
  EXPECT_TRUE(pool.mark_used("10.200.0.12"));  // a recovered VM
  EXPECT_EQ(pool.allocate(), "10.200.0.13");
  pool.release("10.200.0.10");
  EXPECT_EQ(pool.allocate(), "10.200.0.10");
  EXPECT_FALSE(pool.mark_used("10.200.0.9"));   // below the pool
  EXPECT_FALSE(pool.mark_used("10.200.0.255"));
  EXPECT_FALSE(pool.mark_used("10.201.0.20"));
  EXPECT_FALSE(pool.mark_used("nonsense"));
}

TEST(VmIpPool, ExhaustionAndGatewayInsideTheRange) {
  NatIpPool pool("10.9.8.0/24", "10.9.8.100");
  EXPECT_EQ(pool.free_count(), 244u);
  int n = 0;
  while (auto ip = pool.allocate()) {
    EXPECT_NE(*ip, "10.9.8.100");
    ++n;
  }
  EXPECT_EQ(n, 244);
  EXPECT_EQ(pool.free_count(), 0u);
  pool.release("10.9.8.77");
  EXPECT_EQ(pool.allocate(), "10.9.8.77");
}

TEST(VmIpPool, RefusesUnusableSubnets) {
  EXPECT_THROW(NatIpPool("10.200.0.0/25", "10.200.0.1"), std::invalid_argument);
  EXPECT_THROW(NatIpPool("not-a-net", "10.200.0.1"), std::invalid_argument);
  NatIpPool wide("10.200.0.0/16", "10.200.0.1");
  EXPECT_EQ(wide.prefix_len(), 16);
  EXPECT_EQ(wide.allocate(), "10.200.0.10");
}

TEST(VmNatRules, UpstreamRulesWithOurComment) {
  auto rules = vm_nat_rules("10.200.0.0/24");
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].table, "nat");
  EXPECT_EQ(rules[0].chain, "POSTROUTING");
  EXPECT_FALSE(rules[0].insert_first);
  const std::vector<std::string> masq{"-s", "10.200.0.0/24", "!", "-d", "10.200.0.0/24",
                                      "-m", "comment", "--comment", "kohakuriver-vm", "-j", "MASQUERADE"};
  EXPECT_EQ(rules[0].spec, masq);
  EXPECT_EQ(rules[1].chain, "FORWARD");
  EXPECT_TRUE(rules[1].insert_first);
  EXPECT_EQ(rules[1].spec.front(), "-s");
  EXPECT_EQ(rules[2].spec.front(), "-d");
  EXPECT_EQ(rules[2].spec.back(), "ACCEPT");
}

namespace {

// Runs `body` in a forked child inside a fresh network namespace; the
// child's failures are printed to stderr and turn into its exit status.
void in_private_netns(const std::function<std::string()>& body) {
  if (::geteuid() != 0) GTEST_SKIP() << "NEEDS ROOT: network namespaces (run the suite as root, as CI does)";
  std::fflush(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "unshare(CLONE_NEWNET) failed\n");
      ::_exit(2);
    }
    std::string failure;
    try {
      failure = body();
    } catch (const std::exception& e) {
      failure = std::string("exception: ") + e.what();
    }
    if (!failure.empty()) std::fprintf(stderr, "in netns: %s\n", failure.c_str());
    std::fflush(nullptr);
    ::_exit(failure.empty() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see the child's message above";
}

std::string iptables_list(const std::string& table, const std::string& chain) {
  auto r = kr::overlay::run_command({"iptables", "-w", "10", "-t", table, "-S", chain}, std::chrono::seconds(20));
  return r.output;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(VmNetworkNs, BridgeRulesAndTapThroughLibnl) {
  in_private_netns([]() -> std::string {
    NatBridgeSettings s{"krtest-br0", "10.200.0.0/24", "10.200.0.1"};
    auto changes = ensure_nat_network(s);
    if (changes.empty()) return "first ensure_nat_network reported no changes";
    kr::overlay::Netlink nl;
    if (!nl.link_exists("krtest-br0")) return "bridge missing";
    auto addrs = nl.addresses_of("krtest-br0");
    if (addrs.size() != 1 || addrs[0].str() != "10.200.0.1/24") return "bridge address wrong";
    const std::string fwd = iptables_list("filter", "FORWARD"), nat = iptables_list("nat", "POSTROUTING");
    if (count(fwd, "kohakuriver-vm") != 2) return "FORWARD rules: " + fwd;
    if (count(nat, "MASQUERADE") != 1) return "POSTROUTING rules: " + nat;
    // The -d rule was inserted last at position 1, so it comes first (upstream order).
    if (fwd.find("-d 10.200.0.0/24") > fwd.find("-s 10.200.0.0/24")) return "FORWARD order: " + fwd;
    // Idempotent: nothing changes, nothing is duplicated.
    auto again = ensure_nat_network(s);
    if (!again.empty()) return "second ensure_nat_network changed: " + again.front();
    if (count(iptables_list("filter", "FORWARD"), "kohakuriver-vm") != 2) return "rules duplicated";

    create_tap("tap-1ef51593", "krtest-br0");
    if (nl.master_of("tap-1ef51593") != "krtest-br0") return "TAP not on the bridge";
    create_tap("tap-1ef51593", "krtest-br0");  // an existing persistent TAP is reused
    create_tap("tap-8a503734", "krtest-br0", 1450);
    if (nl.master_of("tap-8a503734") != "krtest-br0") return "second TAP not on the bridge";
    if (!delete_tap("tap-1ef51593")) return "delete_tap said absent";
    if (nl.link_exists("tap-1ef51593")) return "TAP still there after delete";
    if (delete_tap("tap-1ef51593")) return "second delete_tap said present";
    try {
      create_tap("tap-nobridge", "no-such-br");
      return "create_tap on a missing bridge did not throw";
    } catch (const std::runtime_error&) {
    }
    if (nl.link_exists("tap-nobridge")) return "failed create_tap left its TAP behind";
    try {
      ensure_nat_network(NatBridgeSettings{"tap-8a503734", "10.200.0.0/24", "10.200.0.1"});
      return "a TAP accepted as the bridge";
    } catch (const std::runtime_error&) {
    }
    return "";
  });
}
