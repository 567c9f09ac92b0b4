#pragma once
// workload/: the target a filesystem, terminal or watch request works in —
// a Docker container (through docker/) or a VM (through ssh/) — and how to
// run one command there. Knows nothing of vm/ (QEMU, its routes) or of the
// services above it (fs/, terminal/).
//
// Which container a filesystem/terminal/watch request for a task id talks
// to (execution.md §6.1 "Task resolution", §7.1 steps 2–4): the runner's
// store record, then the container's state from Docker; for a VM record
// its address (commands then go over SSH, §6.3).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "ssh/client.hpp"

namespace kr::docker {
class DockerClient;
}
namespace kr::store {
class StateStore;
}

namespace kr::workload {

struct ContainerTarget {
  std::int64_t task_id = 0;
  std::string container;            // Docker container name
  std::vector<std::string> mounts;  // mount destinations inside the container
  std::string user;                 // Config.User: whom execs run as ("" = image default, root)
  std::vector<std::string> tmpfs;   // tmpfs mount destinations (HostConfig.Tmpfs, Mounts of type tmpfs)
  // A VM (vm-<id> record): commands run over SSH to this address as root
  // with the runner key (execution.md §6.3, §7.4); `container` is empty.
  std::string vm_ip;
  bool is_vm() const { return !vm_ip.empty(); }
};

struct TargetLookup {
  std::optional<ContainerTarget> target;
  // When there is no target: the HTTP status upstream answers with, the
  // message text, and whether it was a Docker connection failure (the
  // terminal closes those with 1011 instead of 1008).
  int status = 0;
  std::string message;
  bool docker_unreachable = false;
};

// How the runner reaches a VM target over SSH: root at `vm_ip`:22 with the
// runner key (execution.md §6.3, §7.4).
ssh::SshTarget vm_ssh_target(const std::string& vm_ip);

boost::asio::awaitable<TargetLookup> resolve_container(store::StateStore& store, docker::DockerClient& docker,
                                                       std::int64_t task_id);

}  // namespace kr::workload
