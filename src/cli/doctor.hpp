#pragma once
// `kohakuriver doctor`: checks what this node needs to run the runner and
// prints one line per check, each failure or warning with its fix. Exit
// status 1 when a required check fails (the runner would not work).
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/launch.hpp"

namespace kr::cli {

enum class CheckStatus { Ok, Info, Warn, Fail };

struct CheckResult {
  CheckStatus status = CheckStatus::Ok;
  std::string name;    // "docker", "state-dir", ...
  std::string result;  // what was found
  std::string fix;     // what to do (empty when nothing to do)
};

// "[FAIL] docker     cannot reach /var/run/docker.sock: ... | fix: ..."
std::string format_check(const CheckResult& r);

// The cgroup hierarchy mounted at `cgroup_root` ("/sys/fs/cgroup").
CheckResult check_cgroup(const std::string& cgroup_root);
// STATE_DIR: exists or can be created, is a writable directory, not
// writable by others (it holds the durable task state).
CheckResult check_state_dir(const std::string& state_dir);

int run_doctor(const RunnerOptions& options, std::ostream& out, std::ostream& err);

}  // namespace kr::cli
