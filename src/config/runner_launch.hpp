#pragma once
// What the command line (cli/) hands to the runner (runner/) once the
// configuration is settled: the one type both sides share, kept below both
// so that neither includes the other (main.cpp joins them).
#include <string>
#include <vector>

#include "config/config.hpp"

namespace kr::config {

struct RunnerLaunch {
  RunnerConfig config;  // file values, then --bind/--port overrides
  // The file that was loaded (as given or as found), or "built-in defaults".
  std::string config_source;
  // Non-fatal findings while loading ("<file>:<line>: ..."). run_cli has
  // already printed them on stderr; they are kept so the agent can log them
  // once its logger is configured.
  std::vector<std::string> warnings;
};

}  // namespace kr::config
