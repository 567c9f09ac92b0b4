// The table of configuration keys: upstream's UPPER_CASE names mapped onto
// RunnerConfig members, with the type and range each one accepts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/py_module.hpp"

namespace kr::config {

// Every key a config file may set, in declaration order.
std::vector<std::string> config_key_names();

// Applies one module-level assignment to `config`. Names starting with '_'
// are skipped (Config.from_globals() skips them too); unknown names add a
// "<file>:<line>: ..." warning; a value of the wrong type or out of range
// throws ConfigError at the value's line.
void apply_assignment(RunnerConfig& config, const py::Assignment& assignment, std::string_view file,
                      std::vector<std::string>& warnings);

}  // namespace kr::config
