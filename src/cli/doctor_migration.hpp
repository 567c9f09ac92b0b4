#pragma once
// `kohakuriver doctor` checks for a node being switched from the Python
// runner (issue 18, docs/migration.md): a Python runner still running, its
// systemd unit still installed (and whether it stops with KillMode=process),
// its state store. Each with the fix. Roots are parameters for the tests.
#include <optional>
#include <string>
#include <vector>

#include "cli/doctor.hpp"

namespace kr::cli {

// A Python runner's command line: a python interpreter running
// `-m kohakuriver.cli.runner` (the unit upstream's `init service` writes),
// the `kohakuriver.runner` console script, or `kohakuriver runner`.
bool is_python_runner_cmdline(const std::vector<std::string>& argv);

// Scans <proc_root>/<pid>/cmdline.
CheckResult check_python_runner_process(const std::string& proc_root);

// <unit_dir>/kohakuriver-runner.service: absent, ours, or the Python
// runner's (its ExecStart runs python -m kohakuriver.cli.runner); for the
// latter, whether it has KillMode=process.
CheckResult check_python_unit(const std::string& unit_dir);

// LOCAL_TEMP_DIR/.kohakuriver/runner-state.db: whether it exists and whether
// this runner will read it (only on its first start: no state of ours yet).
CheckResult check_python_store(const std::string& local_temp_dir, const std::string& state_dir);

}  // namespace kr::cli
