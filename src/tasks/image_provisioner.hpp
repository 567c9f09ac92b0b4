#pragma once
// Makes a task's image available locally (execution.md §1.3, Appendix A.3):
// registry images are pulled when absent (600 s deadline); environment
// images are loaded from the newest tarball on shared storage when it is
// newer than the local image. One lock per environment is shared by tasks,
// VPS and /api/docker/sync (R-SYNCLOCK); DOCKER_IMAGE_SYNC_TIMEOUT is
// enforced (D-SYNCTIMEOUT); no tarball and no local image is a failure, never
// a public-registry pull (D-NOTAR).
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "common/async_mutex.hpp"
#include "config/config.hpp"
#include "docker/docker_client.hpp"

namespace kr::tasks {

struct SyncOutcome {
  bool ok = false;
  bool loaded = false;      // a tarball was loaded
  bool no_source = false;   // neither a tarball nor a local image (D-NOTAR)
  std::string source;       // tarball path when loaded
  std::string error;        // why it failed (for logs)
};

class ImageProvisioner {
 public:
  ImageProvisioner(docker::DockerClient& docker, const config::RunnerConfig& cfg) : docker_(docker), cfg_(cfg) {}

  // Registry image: present locally → ok; else pull with a 600 s deadline.
  boost::asio::awaitable<SyncOutcome> ensure_registry_image(std::string ref);
  // Environment image kohakuriver/<env>:base, synced from the tarball dir.
  boost::asio::awaitable<SyncOutcome> sync_environment(std::string env_name);

  // Per-environment locks currently kept (held or waited for).
  std::size_t lock_count() const { return locks_.size(); }

 private:
  boost::asio::awaitable<SyncOutcome> sync_locked(const std::string& env_name);
  AsyncMutex& lock_for(const std::string& env_name);
  void forget_lock_if_idle(const std::string& env_name);

  docker::DockerClient& docker_;
  const config::RunnerConfig& cfg_;
  // Only names in use: entries are removed when idle.
  std::map<std::string, std::unique_ptr<AsyncMutex>> locks_;
};

}  // namespace kr::tasks
