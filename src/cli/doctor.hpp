#pragma once
// `kohakuriver doctor`: checks what this node needs to run the runner and
// prints one line per check, each failure or warning with its fix. Exit
// status 1 when a required check fails (the runner would not work).
#include <functional>
#include <ostream>
#include <set>
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

// The cgroup hierarchy mounted at `cgroup_root` ("/sys/fs/cgroup") and its
// controllers: v2 lists them in cgroup.controllers, v1 mounts one directory
// per controller.
CheckResult check_cgroup(const std::string& cgroup_root);
// The verdict for a hierarchy (`label`, e.g. "cgroup v2 (unified hierarchy)")
// whose `available` controllers must include every one in `needed`: Docker
// silently drops CPU/memory limits without cpu/memory and refuses a
// NUMA-bound (cpuset) task without cpuset.
CheckResult cgroup_controllers_result(const std::string& label, const std::set<std::string>& available,
                                      const std::set<std::string>& needed);
// The controller names of a cgroup v2 cgroup.controllers file.
std::set<std::string> parse_cgroup_controllers(const std::string& text);
// STATE_DIR: exists or can be created, is a writable directory, not
// writable by others (it holds the durable task state).
CheckResult check_state_dir(const std::string& state_dir);

int run_doctor(const RunnerOptions& options, std::ostream& out, std::ostream& err);

}  // namespace kr::cli
