#include "tasks/image_provisioner.hpp"

#include <spdlog/spdlog.h>

#include "common/blocking.hpp"
#include "docker/docker_error.hpp"
#include "docker/names.hpp"
#include "docker/registry_auth.hpp"
#include "tasks/container_spec.hpp"
#include "tasks/image_source.hpp"

namespace kr::tasks {

namespace {
constexpr std::chrono::seconds kPullDeadline{600};
constexpr std::chrono::seconds kCredentialDeadline{15};

// The tarball directory is usually on shared storage: listing it may hang
// on a dead NFS server. A few stuck listings at most; more fail at once.
BlockingLane& tarball_lane() {
  static auto* lane = new BlockingLane("tarball directory listing", 4);
  return *lane;
}
BlockingLane& credentials_lane() {
  static auto* lane = new BlockingLane("registry credential lookup", 4);
  return *lane;
}

// "repo:tag" → {"repo","tag"}; the tag part is after the last ':' that
// follows the last '/' (a registry port is not a tag).
std::pair<std::string, std::string> split_tag(const std::string& ref) {
  auto slash = ref.rfind('/');
  auto colon = ref.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
    return {ref.substr(0, colon), ref.substr(colon + 1)};
  return {ref, "latest"};
}

// The X-Registry-Auth value for `ref` ("" = anonymous). Blocking.
std::string registry_auth_header(const std::string& ref) {
  auto creds = docker::credentials_for_image(ref);
  if (!creds) return {};
  spdlog::info("Using credentials for {} from the Docker client config", docker::registry_host(ref));
  return docker::encode_registry_auth(*creds);
}
}  // namespace

bool ImageProvisioner::wants_refresh(const std::string& ref) {
  auto parsed = docker::parse_image_reference(ref);
  if (!parsed || !parsed->digest.empty()) return false;
  return parsed->tag.empty() || parsed->tag == "latest";
}

AsyncMutex& ImageProvisioner::lock_for(const std::string& env_name) {
  auto& slot = locks_[env_name];
  if (!slot) slot = std::make_unique<AsyncMutex>();
  return *slot;
}

boost::asio::awaitable<SyncOutcome> ImageProvisioner::ensure_registry_image(std::string ref,
                                                                            CancelToken cancel) {
  SyncOutcome out;
  bool present = false;
  try {
    present = (co_await docker_.inspect_image(ref)).has_value();
  } catch (const docker::DockerError& e) {
    out.error = e.message;
    spdlog::warn("Inspecting image {} failed: {}", ref, e.message);
    co_return out;
  }
  const bool refresh = wants_refresh(ref);
  if (present && !refresh) {
    out.ok = true;
    co_return out;
  }
  std::string auth;
  try {
    auto lookup = [ref] { return registry_auth_header(ref); };
    auth = co_await run_blocking_for(credentials_lane(), kCredentialDeadline, lookup);
  } catch (const std::exception& e) {
    spdlog::warn("Looking up registry credentials for {} failed ({}); pulling anonymously", ref, e.what());
  }
  const auto deadline = present ? std::chrono::seconds(cfg_.docker_registry_refresh_timeout) : kPullDeadline;
  spdlog::info("Pulling registry image {} ({}; deadline {} s)", ref, present ? "refreshing the local copy" : "absent",
               deadline.count());
  try {
    co_await docker_.pull_image(ref, deadline, cancel, auth);
    out.ok = true;
  } catch (const docker::DockerError& e) {
    out.error = e.message;
    out.cancelled = cancel.cancelled();
  }
  if (out.ok || out.cancelled) co_return out;
  if (present) {
    // Docker/Kubernetes users expect a re-pushed :latest to be picked up,
    // but an unreachable registry must not stop work that has an image.
    out.ok = true;
    out.warning = "Could not refresh registry image '" + ref + "' (" + out.error + "); running the local copy.";
    spdlog::warn("{}", out.warning);
    co_return out;
  }
  spdlog::warn("Pulling {} failed: {}", ref, out.error);
  co_return out;
}

boost::asio::awaitable<SyncOutcome> ImageProvisioner::sync_environment(std::string env_name,
                                                                       CancelToken cancel) {
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
    auto guard = co_await lock_for(env_name).lock(cancel);
    if (!guard) {
      out.cancelled = true;
      out.error = "cancelled while waiting for another sync of '" + env_name + "'";
    } else {
      // Decided after taking the lock, so a second waiter normally finds
      // the image already up to date.
      out = co_await sync_locked(env_name, cancel);
    }
  }
  forget_lock_if_idle(env_name);
  co_return out;
}

void ImageProvisioner::forget_lock_if_idle(const std::string& env_name) {
  auto it = locks_.find(env_name);
  if (it != locks_.end() && !it->second->locked()) locks_.erase(it);
}

boost::asio::awaitable<SyncOutcome> ImageProvisioner::sync_locked(const std::string& env_name,
                                                                  CancelToken cancel) {
  SyncOutcome out;
  const std::string image = env_image_reference(env_name);
  const auto timeout = std::chrono::seconds(cfg_.docker_image_sync_timeout);
  try {
    auto list_tarballs = [dir = cfg_.tar_dir(), env_name] { return newest_tarball(dir, env_name); };
    auto tarball = co_await run_blocking_for(tarball_lane(), timeout, list_tarballs);
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
    // The tarball is read with the same deadline (a hung read ends it).
    auto loaded = co_await docker_.load_image(path, timeout, cancel);
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
  out.cancelled = cancel.cancelled();
  if (!out.ok) spdlog::warn("Image sync for {} failed: {}", env_name, out.error);
  co_return out;
}

}  // namespace kr::tasks
