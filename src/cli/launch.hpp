// Settles the runner's configuration from the command line and the config
// file (protocol.md §4.3, adapted; see prepare_launch).
#pragma once

#include <ostream>
#include <string>

#include "cli/cli.hpp"

namespace kr::cli {

struct RunnerOptions {
    bool has_config = false;  // --config given (even as ""); else look for the default file
    std::string config_path;
    bool has_bind = false;    // --bind given (already validated as IPv4)
    std::string bind;
    bool has_port = false;    // --port given (already validated 1..65535)
    int port = 0;
};

// Loads the configuration into `launch`. Returns 0 to go on, or the exit
// code (1) after printing why not.
int prepare_launch(const RunnerOptions& options, RunnerLaunch& launch, std::ostream& out, std::ostream& err);

}  // namespace kr::cli
