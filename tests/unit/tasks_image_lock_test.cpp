// Issue 6 item 6: the per-environment lock map must not grow from request
// input. Names are validated before they key the map, and entries go when
// no sync holds or waits for them. Docker is an absent socket here: every
// sync fails, which is all these tests need.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "tasks/image_provisioner.hpp"

namespace asio = boost::asio;

TEST(ImageSyncLocks, InvalidNamesNeverKeyTheMapAndIdleLocksGo) {
  asio::io_context io;
  kr::docker::ClientOptions opts;
  opts.socket_path = "/nonexistent/kr-test-docker.sock";
  kr::docker::DockerClient docker(io.get_executor(), opts);
  kr::config::RunnerConfig cfg;
  cfg.shared_dir = "/nonexistent/kr-test-share";
  kr::tasks::ImageProvisioner images(docker, cfg);

  std::vector<std::future<kr::tasks::SyncOutcome>> results;
  for (int i = 0; i < 200; ++i) {
    // Not valid image names: rejected before any lock is made.
    results.push_back(asio::co_spawn(io, images.sync_environment("Bad Name " + std::to_string(i)), asio::use_future));
    // Valid names: each gets a lock while it runs.
    results.push_back(asio::co_spawn(io, images.sync_environment("env" + std::to_string(i)), asio::use_future));
  }
  // Two syncs of one environment share one lock.
  results.push_back(asio::co_spawn(io, images.sync_environment("env0"), asio::use_future));
  io.run();
  for (auto& f : results) EXPECT_FALSE(f.get().ok);
  EXPECT_EQ(images.lock_count(), 0u);
}
