#pragma once
// Makes a task's image available locally (execution.md §1.3, Appendix A.3):
// registry images are pulled when absent (600 s deadline), and refreshed
// when the tag is `latest` or missing, like Docker/Kubernetes
// (DOCKER_REGISTRY_REFRESH_TIMEOUT; on failure the local copy runs with a
// warning), with credentials from the runner's Docker client config
// (docker/registry_auth.hpp); environment
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
  std::string warning;      // ok, but the user should know (stale local copy)
  bool cancelled = false;   // the CancelToken fired (a kill)
};

class ImageProvisioner {
 public:
  ImageProvisioner(docker::DockerClient& docker, const config::RunnerConfig& cfg) : docker_(docker), cfg_(cfg) {}

  // Registry image: absent → pull (600 s); `latest`/untagged and present →
  // refresh pull with the short deadline, local copy on failure.
  // `cancel` aborts a pull (a kill during provisioning).
  boost::asio::awaitable<SyncOutcome> ensure_registry_image(std::string ref, CancelToken cancel = {});
  // Environment image kohakuriver/<env>:base, synced from the tarball dir.
  // `cancel` aborts the wait for the lock and a load.
  boost::asio::awaitable<SyncOutcome> sync_environment(std::string env_name, CancelToken cancel = {});

  // True when a registry reference names no tag or `latest` (and no
  // digest): such an image is refreshed on every use.
  static bool wants_refresh(const std::string& ref);

  // Per-environment locks currently kept (held or waited for).
  std::size_t lock_count() const { return locks_.size(); }

 private:
  boost::asio::awaitable<SyncOutcome> sync_locked(const std::string& env_name, CancelToken cancel);
  AsyncMutex& lock_for(const std::string& env_name);
  void forget_lock_if_idle(const std::string& env_name);

  docker::DockerClient& docker_;
  const config::RunnerConfig& cfg_;
  // Only names in use: entries are removed when idle.
  std::map<std::string, std::unique_ptr<AsyncMutex>> locks_;
};

}  // namespace kr::tasks
