#pragma once
// Python `shlex.quote` (execution.md §1.5.2): the one quoting rule shared by
// task scripts (tasks/), VPS set-up (vps/) and commands sent over SSH
// (ssh/). Pure function, no I/O.
#include <string>
#include <string_view>

namespace kr {

// "" -> '', a string of only ASCII [A-Za-z0-9_@%+=:,./-] unchanged,
// anything else single-quoted with each ' written as '"'"'.
std::string shell_quote(std::string_view s);

}  // namespace kr
