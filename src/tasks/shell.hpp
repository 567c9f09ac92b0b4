#pragma once
// The shell text a command task runs as `/bin/sh -c <script>` (execution.md
// §1.5.2), plus the few Python string semantics that text depends on. Pure
// functions, no I/O.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/shell_quote.hpp"

namespace kr::tasks {

// Where the tunnel client binary is mounted inside task containers (§1.8).
inline constexpr std::string_view kTunnelClientContainerPath = "/usr/local/bin/tunnel-client";

// Python `shlex.quote` (common/shell_quote.hpp), named here for the
// task-script callers.
using kr::shell_quote;

// `exec <command> <quoted args> > <Q(stdout)> 2> <Q(stderr)>`, optionally
// prefixed by the tunnel-client start-up (`tunnel` = client binary found).
// `command` is inserted raw (S-COMMAND: it is shell text by design). No
// numactl prefix: NUMA binding uses the container cpuset (decisions.md).
std::string build_task_script(std::string_view command, const std::vector<std::string>& arguments,
                              std::string_view container_stdout, std::string_view container_stderr,
                              bool tunnel);

// Upstream's tunnel-client start-up text (§1.5.2) without the trailing
// " && "; task and VPS scripts append " && <script>" to it.
std::string tunnel_wrapper_prefix();

// Python `str.strip()` with no argument on UTF-8 text: removes leading and
// trailing code points for which str.isspace() is true (ASCII and Unicode
// spaces alike). Invalid UTF-8 at an edge is kept as is.
std::string python_strip(std::string_view s);

// Python `bytes.decode("utf-8", errors="replace")`: each maximal invalid
// subsequence becomes one U+FFFD, as CPython does.
std::string decode_utf8_lossy(std::string_view bytes);

// The first `n` code points of valid UTF-8 text (Python `s[:n]`).
std::string utf8_prefix(std::string_view s, std::size_t n);

}  // namespace kr::tasks
