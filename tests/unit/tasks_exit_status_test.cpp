// Exit-code mapping (execution.md §1.7 with D11) and Engine API start
// failures worded like upstream's docker CLI.
#include <gtest/gtest.h>

#include "tasks/exit_status.hpp"

using kr::tasks::cli_exit_code_for_daemon_error;
using kr::tasks::docker_stderr_suffix;
using kr::tasks::FinalStatus;
using kr::tasks::map_container_exit;
using kr::tasks::map_start_failure;
using kr::tasks::StartPhase;

TEST(TaskExitStatus, ContainerExitCodes) {
  EXPECT_EQ(map_container_exit(0, false), (FinalStatus{"completed", 0, std::nullopt}));
  EXPECT_EQ(map_container_exit(0, true), (FinalStatus{"completed", 0, std::nullopt}));
  EXPECT_EQ(map_container_exit(137, true),
            (FinalStatus{"killed_oom", 137, "Container killed (SIGKILL) - likely out of memory."}));
  // D11: a SIGKILL that Docker does not attribute to OOM is a plain failure.
  EXPECT_EQ(map_container_exit(137, false), (FinalStatus{"failed", 137, "Container killed (SIGKILL)."}));
  EXPECT_EQ(map_container_exit(143, false), (FinalStatus{"failed", 143, "Container terminated (SIGTERM)."}));
  EXPECT_EQ(map_container_exit(1, false), (FinalStatus{"failed", 1, "Container exited with code 1."}));
  EXPECT_EQ(map_container_exit(2, true), (FinalStatus{"failed", 2, "Container exited with code 2."}));
  EXPECT_EQ(map_container_exit(-9, false), (FinalStatus{"failed", -9, "Container exited with code -9."}));
}

TEST(TaskExitStatus, StderrBeforeRedirectionIsAppended) {
  EXPECT_EQ(map_container_exit(2, false, "sh: 1: cannot create /x/stdout.log: Directory nonexistent\n").message,
            "Container exited with code 2. Docker stderr: sh: 1: cannot create /x/stdout.log: Directory nonexistent");
  EXPECT_EQ(map_container_exit(1, false, " \n\t").message, "Container exited with code 1.");
  // 137/143/0 never carry it.
  EXPECT_EQ(map_container_exit(143, false, "boom").message, "Container terminated (SIGTERM).");
  // 500 characters (code points), after stripping; invalid bytes replaced.
  std::string long_text(600, 'x');
  EXPECT_EQ(docker_stderr_suffix("  " + long_text), " Docker stderr: " + std::string(500, 'x'));
  std::string accents;
  for (int i = 0; i < 501; ++i) accents += "\xc3\xa9";
  std::string expect500;
  for (int i = 0; i < 500; ++i) expect500 += "\xc3\xa9";
  EXPECT_EQ(docker_stderr_suffix(accents), " Docker stderr: " + expect500);
  EXPECT_EQ(docker_stderr_suffix("bad \xff"), " Docker stderr: bad \xef\xbf\xbd");
  EXPECT_EQ(docker_stderr_suffix(""), "");
}

TEST(TaskExitStatus, CliExitCodeFromDaemonText) {
  EXPECT_EQ(cli_exit_code_for_daemon_error(
                "failed to create task for container: failed to create shim task: OCI runtime create failed: runc "
                "create failed: unable to start container process: exec: \"nope\": executable file not found in "
                "$PATH: unknown"),
            127);
  EXPECT_EQ(cli_exit_code_for_daemon_error("exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown"), 127);
  EXPECT_EQ(cli_exit_code_for_daemon_error("exec: \"/x\": permission denied: unknown"), 126);
  EXPECT_EQ(cli_exit_code_for_daemon_error("exec: \"/etc\": is a directory: unknown"), 126);
  EXPECT_EQ(cli_exit_code_for_daemon_error("Conflict. The container name \"/kohakuriver-task-1\" is already in use"),
            125);
}

TEST(TaskExitStatus, StartFailureMessages) {
  const std::string notfound =
      "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create "
      "failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown";
  EXPECT_EQ(map_start_failure(400, notfound),
            (FinalStatus{"failed", 127,
                         "Container exited with code 127. Docker stderr: docker: Error response from daemon: " +
                             notfound + "."}));
  // Create errors carried the usage hint; a trailing '.' is not doubled.
  EXPECT_EQ(map_start_failure(400, "invalid mount config for type \"bind\": bind source path does not exist: /x.",
                              StartPhase::Create)
                .message,
            "Container exited with code 125. Docker stderr: docker: Error response from daemon: invalid mount config "
            "for type \"bind\": bind source path does not exist: /x.\nSee 'docker run --help'.");
  EXPECT_EQ(map_start_failure(400, "exec: \"/data\": permission denied: unknown").exit_code, 126);
  // No daemon answer: no "Error response from daemon" prefix.
  EXPECT_EQ(map_start_failure(0, "connection refused").message,
            "Container exited with code 125. Docker stderr: docker: connection refused.");
  // Cut to 500 characters like upstream's stderr_str[:500].
  auto fs = map_start_failure(500, std::string(1000, 'y'));
  const std::string prefix = "Container exited with code 125. Docker stderr: ";
  ASSERT_EQ(fs.message->size(), prefix.size() + 500);
  EXPECT_EQ(fs.message->substr(prefix.size(), 36), "docker: Error response from daemon: ");
}
