#pragma once
// Terminal WebSocket /ws/task/{task_id}/terminal (execution.md §7) for
// command tasks and Docker VPS: a TTY exec of the container's shell, JSON
// text frames both ways. Fixes D-EXECKILL (the shell and its jobs are
// killed when the client goes away), D-TERMUTF8 (UTF-8 decoded across
// reads) and D-FIRSTMSG (an early input message is not dropped).
#include <chrono>

#include <boost/asio/awaitable.hpp>

#include "api/router.hpp"

namespace kr::docker {
class DockerClient;
}
namespace kr::store {
class StateStore;
}

namespace kr::terminal {

class TerminalService {
 public:
  TerminalService(docker::DockerClient& docker, store::StateStore& store);
  void add_routes(api::Router& router);

 private:
  boost::asio::awaitable<void> session(api::WebSocket& ws);

  docker::DockerClient& docker_;
  store::StateStore& store_;
};

}  // namespace kr::terminal
