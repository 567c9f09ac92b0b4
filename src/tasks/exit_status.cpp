#include "tasks/exit_status.hpp"

#include "tasks/shell.hpp"

namespace kr::tasks {
namespace {

// Upstream: `message += f" Docker stderr: {stderr_str[:500]}"`.
constexpr std::size_t kStderrChars = 500;

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

FinalStatus failed(int64_t code, std::string message) {
  return FinalStatus{"failed", code, std::move(message)};
}

}  // namespace

std::string docker_stderr_suffix(std::string_view raw_stderr) {
  std::string text = python_strip(decode_utf8_lossy(raw_stderr));
  if (text.empty()) return {};
  return " Docker stderr: " + utf8_prefix(text, kStderrChars);
}

FinalStatus map_container_exit(int64_t exit_code, bool oom_killed, std::string_view docker_stderr) {
  switch (exit_code) {
    case 0:
      return FinalStatus{"completed", 0, std::nullopt};
    case 137:
      // 128 + SIGKILL. Upstream guessed OOM for every 137; a `docker kill`
      // from outside or an expired stop grace period is not an OOM (D11).
      if (oom_killed) return FinalStatus{"killed_oom", 137, "Container killed (SIGKILL) - likely out of memory."};
      return failed(137, "Container killed (SIGKILL).");
    case 143:
      return failed(143, "Container terminated (SIGTERM).");
    default:
      return failed(exit_code,
                    "Container exited with code " + std::to_string(exit_code) + "." + docker_stderr_suffix(docker_stderr));
  }
}

int cli_exit_code_for_daemon_error(std::string_view message) {
  // Same substring tests, same order, as the docker CLI.
  if (contains(message, "executable file not found") || contains(message, "no such file or directory") ||
      contains(message, "system cannot find the file specified"))
    return 127;
  if (contains(message, "permission denied") || contains(message, "is a directory")) return 126;
  return 125;
}

FinalStatus map_start_failure(int http_status, const std::string& docker_message, StartPhase phase) {
  // The CLI printed `docker: <err>.` where <err> is the Go client's error
  // text ("Error response from daemon: <message>" for an API error answer)
  // with one trailing '.' normalised, then the usage hint after create.
  std::string err = http_status > 0 ? "Error response from daemon: " + docker_message : docker_message;
  if (!err.empty() && err.back() == '.') err.pop_back();
  std::string stderr_text = "docker: " + err + ".";
  if (phase == StartPhase::Create) stderr_text += "\nSee 'docker run --help'.";
  const int code = cli_exit_code_for_daemon_error(docker_message);
  return failed(code, "Container exited with code " + std::to_string(code) + "." + docker_stderr_suffix(stderr_text));
}

}  // namespace kr::tasks
