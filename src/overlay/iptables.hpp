#pragma once
// The overlay's firewall rules through the `iptables` command (decision O7:
// the same binary, hence the same nft/legacy backend, that Docker uses).
// Every rule we add carries the comment kRuleComment; repair and cleanup
// work on exactly those. Blocking: run off the I/O thread.
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "overlay/plan.hpp"

namespace kr::overlay {

class IptablesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CommandResult {
  bool spawned = false;  // false: the program could not be started
  int exit_code = -1;    // -1 when killed or not spawned
  std::string output;    // stdout and stderr together (capped at 256 KiB)
};
// Runs argv[0] (looked up in PATH) without a shell; kills it after `timeout`.
CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

class Iptables {
 public:
  explicit Iptables(std::string program = "iptables") : program_(std::move(program)) {}

  bool chain_exists(const std::string& table, const std::string& chain);
  // Makes our rules exactly `desired`: rules missing or out of place are
  // (re)inserted, our rules no longer wanted are deleted, other rules are
  // never touched. Returns the changes made. Throws IptablesError when the
  // command is missing or a rule cannot be added.
  std::vector<std::string> apply(const std::vector<IptablesRule>& desired);
  // Deletes every rule carrying our comment in the managed chains.
  std::vector<std::string> remove_ours();
  // Deletes upstream's uncommented rules for `cidr` (all copies).
  std::vector<std::string> remove_upstream(const Ipv4Net& cidr);

 private:
  CommandResult run(const std::string& table, std::vector<std::string> args);
  std::vector<std::vector<std::string>> ours_in(const std::string& table, const std::string& chain);
  std::string program_;
};

}  // namespace kr::overlay
