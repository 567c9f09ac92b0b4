#pragma once
// Container filesystem API (execution.md §6): REST routes /api/fs/{id}/...
// and the watch WebSocket /ws/fs/{id}/watch. Every operation runs as Docker
// exec instances in the task's container, under one 30 s deadline per
// request (D-FSTIMEOUT: a timeout is a JSON 504, never a hang).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "api/router.hpp"
#include "docker/exec.hpp"
#include "workload/target.hpp"

namespace kr::store {
class StateStore;
}

namespace kr::fs {

class FsService {
 public:
  FsService(docker::DockerClient& docker, store::StateStore& store,
            std::chrono::milliseconds op_deadline = std::chrono::seconds(30));
  void add_routes(api::Router& router);

 private:
  using Clock = std::chrono::steady_clock;
  using Response = api::HttpResponse;
  template <class T>
  using awaitable = boost::asio::awaitable<T>;

  awaitable<Response> guarded(api::HttpRequest& req, int op);
  awaitable<Response> list(api::HttpRequest& req, Clock::time_point end);
  awaitable<Response> read(api::HttpRequest& req, Clock::time_point end);
  awaitable<Response> write(api::HttpRequest& req, Clock::time_point end);
  awaitable<Response> mkdir(api::HttpRequest& req, Clock::time_point end);
  awaitable<Response> rename(api::HttpRequest& req, Clock::time_point end);
  awaitable<Response> remove(api::HttpRequest& req, Clock::time_point end);
  awaitable<Response> stat(api::HttpRequest& req, Clock::time_point end);
  awaitable<void> watch(api::WebSocket& ws);

  awaitable<docker::ExecResult> run(const workload::ContainerTarget& t, std::vector<std::string> cmd,
                                    Clock::time_point end, std::optional<std::string> stdin_data = std::nullopt);

  docker::DockerClient& docker_;
  store::StateStore& store_;
  std::chrono::milliseconds op_deadline_;
};

}  // namespace kr::fs
