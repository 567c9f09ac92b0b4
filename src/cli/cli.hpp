// The command line of the `kohakuriver` program (protocol.md §4.3, D25).
//
//   kohakuriver runner [--config|-c PATH] [--bind IP] [--port N]
//   kohakuriver init config [--runner|-g] [--host] [--output-dir|-o DIR]
//   kohakuriver init service --runner [--runner-config PATH] [--working-dir DIR]
//                            [--no-install] [--capture-env|--no-capture-env]
//   kohakuriver version | --version
//   kohakuriver overlay cleanup [--config|-c PATH]
//   kohakuriver.runner [--config|-c PATH] [--bind IP] [--port N]   (argv[0] basename)
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "config/runner_launch.hpp"

namespace kr::cli {

// What `runner` hands to the agent (config/runner_launch.hpp).
using config::RunnerLaunch;

// "kohakuriver-runner <version>"
std::string version_string();

// Parses argv, runs the chosen command and returns the process exit code:
// 0 ok, 1 configuration/I/O error (or an exception from start_runner),
// 2 usage error (unknown option, unprovided upstream subcommand). For
// `runner` it returns whatever start_runner returns.
int run_cli(int argc, char** argv, const std::function<int(RunnerLaunch&)>& start_runner);
// Same, writing to the given streams instead of std::cout / std::cerr.
int run_cli(int argc, char** argv, const std::function<int(RunnerLaunch&)>& start_runner, std::ostream& out,
            std::ostream& err);

}  // namespace kr::cli
