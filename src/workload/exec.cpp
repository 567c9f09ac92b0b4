#include "workload/exec.hpp"

#include "common/blocking.hpp"
#include "docker/docker_error.hpp"
#include "ssh/client.hpp"

namespace kr::workload {

namespace {

// SSH commands into VMs: each holds a pool thread for at most its deadline.
BlockingLane& ssh_lane() {
  static BlockingLane lane("vm-ssh", 32);
  return lane;
}

docker::ExecResult to_exec_result(ssh::SshExecResult r) {
  if (r.timed_out)
    throw docker::DockerError(docker::DockerError::Kind::Timeout, 0, "SSH command timed out");
  docker::ExecResult e;
  e.exit_code = r.exit_code;
  e.out = std::move(r.out);
  e.err = std::move(r.err);
  return e;
}

}  // namespace

boost::asio::awaitable<docker::ExecResult> run_in_target(docker::DockerClient& docker, const ContainerTarget& target,
                                                         std::vector<std::string> cmd, docker::RunOptions options) {
  if (!target.is_vm()) co_return co_await docker::run_exec(docker, target.container, std::move(cmd), std::move(options));
  const ssh::SshTarget t = vm_ssh_target(target.vm_ip);
  const std::string line = ssh::join_command(cmd);
  const auto deadline = options.deadline;
  const std::size_t max_out = options.max_stdout;
  auto job = [t, line, stdin_data = std::move(options.stdin_data), deadline, max_out] {
    return ssh::ssh_exec(t, line, stdin_data, deadline, max_out);
  };
  ssh::SshExecResult r;
  try {
    // ssh_exec keeps its own deadline; the pool's is the backstop for a
    // call stuck inside libssh.
    r = co_await run_blocking_for(ssh_lane(), deadline + std::chrono::seconds(5), std::move(job));
  } catch (const BlockingTimeout&) {
    r.timed_out = true;
  } catch (const BlockingBusy&) {
    r.exit_code = -1;
    r.err = "SSH error: too many SSH commands in progress";
  }
  co_return to_exec_result(std::move(r));
}

}  // namespace kr::workload
