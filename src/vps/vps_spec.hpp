#pragma once
// The Engine API create body of a Docker VPS and the in-container SSH setup
// script (execution.md §3.3–3.5 with the rulings D19, D-PKGMGR, S-KEYINJ,
// S-SSHCFG, D-SSHPORT and "VPS sshd setup"). Pure functions, no I/O.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "vps/vps_request.hpp"

namespace kr::vps {

// "kohakuriver-vps-<id>"
std::string vps_container_name(int64_t task_id);

// The image a fresh (not restored) VPS runs: registry_image when non-empty,
// else kohakuriver/<container_name>:base. Throws tasks::SpecError when
// neither is usable.
std::string vps_image_reference(const VpsRequest& rq);

// How the setup script treats SSH.
enum class SetupKind {
  Fresh,    // configure sshd for the mode (install it first when absent)
  Restore,  // snapshot restore: start the snapshot's sshd as it is
};

// The public key as authorized_keys lines: split on line breaks, each line
// trimmed, empty lines dropped.
std::vector<std::string> authorized_key_lines(std::string_view key);

// The shell text run as `/bin/sh -c` at every container start (Docker's
// restart policy re-runs it). Disabled: wait forever (TERM ends it at
// once). Fresh sshd modes: use the image's sshd when present, else install
// it with the first package manager found by probing (apk, apt-get, dnf,
// yum, zypper, pacman); generate missing host keys; rewrite one managed
// block at the top of sshd_config (sshd honours the first occurrence of a
// keyword, so it wins over anything below it and is never duplicated);
// none: empty root password; upload/generate: password logins off, each key
// line added to authorized_keys unless already there (quoted with
// shell_quote). Restore: no package manager, no config change, only the
// keys given (if any) are added; sshd started when the snapshot has one.
// `tunnel`: prefixed with upstream's tunnel-client start-up.
std::string build_vps_setup_script(SshKeyMode mode, SetupKind kind, const std::vector<std::string>& key_lines,
                                   bool tunnel);

struct VpsContainerContext {
  std::string hostname;           // label kohakuriver.node
  std::string network;            // "" → DOCKER_NETWORK_NAME
  std::string container_gateway;  // "" → DOCKER_NETWORK_GATEWAY
  std::optional<std::string> tunnel_client_path;
  std::string image;              // the resolved image (snapshot tag, registry image or env image)
  SshKeyMode mode = SshKeyMode::Disabled;  // effective mode: port 22 published unless Disabled
  SetupKind setup = SetupKind::Fresh;
  std::vector<std::string> key_lines;
};

// The create body for `kohakuriver-vps-<id>` (name in the query). Throws
// tasks::SpecError for invalid input (image, reserved_ip, mounts, NUL).
nlohmann::json build_vps_create_body(const VpsRequest& rq, const config::RunnerConfig& cfg,
                                     const VpsContainerContext& ctx, std::vector<std::string>* warnings = nullptr);

// The host port bound to the container's 22/tcp from a container inspect
// (NetworkSettings.Ports), any address family (D-SSHPORT); nullopt when
// none is bound (yet).
std::optional<int> ssh_host_port(const nlohmann::json& container_inspect);

// The kohakuriver.ssh_key_mode label of an image or container inspect.
std::optional<SshKeyMode> recorded_key_mode(const nlohmann::json& inspect);

}  // namespace kr::vps
