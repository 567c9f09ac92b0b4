// `kohakuriver init config` and `kohakuriver init service` (protocol.md §4.4,
// §4.5, D25): write a runner_config.py and a systemd unit for this runner.
// Each returns the process exit code and writes only to the given streams.
#pragma once

#include <ostream>
#include <string>

namespace kr::cli {

// The runner_config.py written by `init config --runner`: our wording, the
// same shape as upstream's, values equal to RunnerConfig's defaults.
std::string runner_config_template();

struct InitConfigOptions {
    bool generate = false;   // -g/--generate: same as --runner here
    bool host = false;       // --host: refused (no host in this build)
    bool runner = false;     // --runner
    std::string output_dir;  // -o/--output-dir; empty = ~/.kohakuriver
};

// 0 on success (also when the file already exists and is left alone), 1 on
// I/O errors, 2 for --host. No flag at all prints instructions (exit 0).
int init_config(const InitConfigOptions& options, std::ostream& out, std::ostream& err);

struct InitServiceOptions {
    bool host = false;            // --host: refused, exit 2
    bool runner = false;          // --runner
    bool all = false;             // --all: refused, exit 2
    std::string runner_config;    // --runner-config; empty = <working dir>/runner_config.py
    std::string working_dir;      // --working-dir; empty = ~/.kohakuriver
    std::string python_path;      // --python-path: accepted from upstream scripts, ignored
    std::string host_config;      // --host-config: accepted from upstream scripts, ignored (no host here)
    bool no_install = false;      // --no-install: write into the current directory
    bool capture_env = true;      // --capture-env/--no-capture-env: put $PATH in the unit
};

struct UnitParams {
    std::string exe;          // absolute path of this program
    std::string config_path;  // absolute path of the runner config
    std::string working_dir;  // absolute
    std::string path_env;     // captured $PATH; empty = no Environment= line
};

// The text of kohakuriver-runner.service.
std::string render_runner_unit(const UnitParams& params);

// Writes kohakuriver-runner.service. Installing writes into
// Where `init service` installs the unit and doctor looks for one:
// $KR_SYSTEMD_UNIT_DIR, default /etc/systemd/system.
std::string systemd_unit_dir();

// $KR_SYSTEMD_UNIT_DIR (default /etc/systemd/system) and runs
// `systemctl daemon-reload`; $KR_SYSTEMCTL overrides the systemctl binary
// (empty = behave as if systemctl were absent) so tests never touch the
// real system manager.
int init_service(const InitServiceOptions& options, std::ostream& out, std::ostream& err);

}  // namespace kr::cli
