#pragma once
// One command in a filesystem/terminal target (workload/target.hpp):
// a Docker exec in the container, or for a VM the same argv joined with
// shlex quoting and run over SSH as root with the runner key (execution.md
// §6.3): a new connection per command. Both end with the same ExecResult;
// a deadline throws DockerError{Kind::Timeout} either way (D-FSTIMEOUT).
// SSH failures come back as exit -1 with "SSH error: …" on stderr, which
// the callers' error mapping reports like any failed command (§6.3).
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "docker/exec.hpp"
#include "workload/target.hpp"

namespace kr::workload {

boost::asio::awaitable<docker::ExecResult> run_in_target(docker::DockerClient& docker, const ContainerTarget& target,
                                                         std::vector<std::string> cmd, docker::RunOptions options);

}  // namespace kr::workload
