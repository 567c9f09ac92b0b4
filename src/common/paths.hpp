// Home, config directory, own executable and $PATH look-ups: the small
// filesystem helpers of the command line (cli/) and the runner's wiring
// (runner/).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kr {

// $HOME when set and non-empty, else the passwd entry's home, else "/"
// (upstream expands "~" the same way; under systemd HOME may be unset).
std::filesystem::path home_dir();

// "~" and "~/x" expanded with home_dir(); other paths unchanged.
std::filesystem::path expand_user(std::string_view path);

// ~/.kohakuriver, the directory of the default config file.
std::filesystem::path default_config_dir();

// Absolute path of the running executable (/proc/self/exe).
std::filesystem::path self_exe_path();

// First executable regular file called `name` in $PATH.
std::optional<std::filesystem::path> find_in_path(std::string_view name);

}  // namespace kr
