#pragma once
// Final status of a command task from its container's exit (execution.md
// §1.7 with decision D11) or from an Engine API create/start error, worded
// exactly as upstream's `docker run` CLI made the runner report it.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kr::tasks {

// The status/exit_code/message triple of the final `/api/update` report.
struct FinalStatus {
  std::string status;  // "completed", "failed" or "killed_oom"
  std::optional<int64_t> exit_code;
  std::optional<std::string> message;

  bool operator==(const FinalStatus&) const = default;
};

// Container exit → final status:
//   0                → completed, message null
//   137 + OOMKilled  → killed_oom "Container killed (SIGKILL) - likely out of memory."
//   137 otherwise    → failed "Container killed (SIGKILL)." (D11: upstream
//                      called every 137 an OOM; only Docker's OOMKilled flag
//                      is trusted now)
//   143              → failed "Container terminated (SIGTERM)."
//   anything else    → failed "Container exited with code N." plus, when
//                      `docker_stderr` is not blank, " Docker stderr: " and
//                      its first 500 characters.
// `docker_stderr` stands for what upstream's attached `docker run` printed on
// stderr: the container's own stderr written before the script's redirection
// took effect (e.g. "sh: 1: cannot create …: Directory nonexistent"). The
// caller passes the container's stderr log; bytes are decoded as UTF-8 with
// replacement and whitespace-stripped, as upstream did. Exit codes 0, 137 and
// 143 never carry it, as upstream.
FinalStatus map_container_exit(int64_t exit_code, bool oom_killed, std::string_view docker_stderr = {});

// Which Engine API call failed: upstream's CLI printed a usage hint after
// create errors ("See 'docker run --help'.") but not after start errors.
enum class StartPhase { Create, Start };

// The exit status upstream's CLI derived from a daemon error text
// (docker/cli runStartContainerErr): 127 when it contains "executable file
// not found", "no such file or directory" or "system cannot find the file
// specified"; else 126 for "permission denied" or "is a directory"; else 125.
int cli_exit_code_for_daemon_error(std::string_view message);

// An Engine API create/start failure → failed with exit 125/126/127 (above)
// and "Container exited with code N. Docker stderr: docker: Error response
// from daemon: <msg>." (plus "\nSee 'docker run --help'." for Create), the
// stderr part cut to 500 characters as upstream did. `http_status` <= 0
// means no daemon answer (connection/transport error): the text then lacks
// the "Error response from daemon: " prefix, as the CLI printed it.
FinalStatus map_start_failure(int http_status, const std::string& docker_message,
                              StartPhase phase = StartPhase::Start);

// " Docker stderr: <first 500 chars>" for non-blank text, else "".
std::string docker_stderr_suffix(std::string_view raw_stderr);

}  // namespace kr::tasks
