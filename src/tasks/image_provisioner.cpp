#include "tasks/image_provisioner.hpp"

#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "docker/docker_error.hpp"
#include "tasks/container_spec.hpp"
#include "tasks/image_source.hpp"

namespace kr::tasks {

namespace {
constexpr std::chrono::seconds kPullDeadline{600};

// "repo:tag" → {"repo","tag"}; the tag part is after the last ':' that
// follows the last '/' (a registry port is not a tag).
std::pair<std::string, std::string> split_tag(const std::string& ref) {
  auto slash = ref.rfind('/');
  auto colon = ref.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
    return {ref.substr(0, colon), ref.substr(colon + 1)};
  return {ref, "latest"};
}
}  // namespace

AsyncMutex& ImageProvisioner::lock_for(const std::string& env_name) {
  auto& slot = locks_[env_name];
  if (!slot) slot = std::make_unique<AsyncMutex>();
  return *slot;
}

boost::asio::awaitable<SyncOutcome> ImageProvisioner::ensure_registry_image(std::string ref) {
  SyncOutcome out;
  try {
    if (co_await docker_.inspect_image(ref)) {
      out.ok = true;
      co_return out;
    }
    spdlog::info("Pulling registry image {}", ref);
    co_await docker_.pull_image(ref, kPullDeadline);
    out.ok = true;
  } catch (const docker::DockerError& e) {
    out.error = e.message;
    spdlog::warn("Pulling {} failed: {}", ref, e.message);
  }
  co_return out;
}

boost::asio::awaitable<SyncOutcome> ImageProvisioner::sync_environment(std::string env_name) {
  SyncOutcome out;
  // The name comes from a request: validated before it keys the lock map,
  // and the entry goes when nobody holds or waits for it (issue 6: no map
  // grows from request-provided names).
  try {
    env_image_reference(env_name);
  } catch (const SpecError& e) {
    out.error = e.what();
  }
  if (!out.error.empty()) co_return out;
  {
    auto guard = co_await lock_for(env_name).lock();
    // Decided after taking the lock, so a second waiter normally finds the
    // image already up to date.
    out = co_await sync_locked(env_name);
  }
  forget_lock_if_idle(env_name);
  co_return out;
}

void ImageProvisioner::forget_lock_if_idle(const std::string& env_name) {
  auto it = locks_.find(env_name);
  if (it != locks_.end() && !it->second->locked()) locks_.erase(it);
}

boost::asio::awaitable<SyncOutcome> ImageProvisioner::sync_locked(const std::string& env_name) {
  SyncOutcome out;
  const std::string image = env_image_reference(env_name);
  try {
    // The tarball directory is usually on shared storage (NFS): list it off
    // the I/O thread.
    auto list_tarballs = [dir = cfg_.tar_dir(), env_name] { return newest_tarball(dir, env_name); };
    auto tarball = co_await run_blocking(list_tarballs);
    auto local = co_await docker_.inspect_image(image);
    std::optional<int64_t> created;
    if (local && local->contains("Created") && (*local)["Created"].is_string())
      created = parse_docker_created((*local)["Created"].get<std::string>());
    auto decision = decide_sync(created, tarball, local.has_value());
    if (decision.action == SyncAction::UpToDate) {
      out.ok = true;
      co_return out;
    }
    if (decision.action == SyncAction::NoSource) {
      out.no_source = true;
      out.error = "no tarball for '" + env_name + "' in " + cfg_.tar_dir() + " and no local image " + image;
      spdlog::warn("Image sync for {}: {}", env_name, out.error);
      co_return out;
    }
    const auto& path = decision.tarball->path;
    spdlog::info("Loading {} into {} (timeout {} s)", path.string(), image, cfg_.docker_image_sync_timeout);
    auto loaded = co_await docker_.load_image(path, std::chrono::seconds(cfg_.docker_image_sync_timeout));
    if (loaded.empty()) {
      out.error = "docker load of " + path.string() + " announced no image";
      co_return out;
    }
    const std::string& first = loaded.front();
    if (first != image) {
      auto [repo, tag] = split_tag(image);
      co_await docker_.tag_image(first, repo, tag);
    }
    out.ok = true;
    out.loaded = true;
    out.source = path.string();
  } catch (const docker::DockerError& e) {
    out.error = e.message;
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  if (!out.ok) spdlog::warn("Image sync for {} failed: {}", env_name, out.error);
  co_return out;
}

}  // namespace kr::tasks
