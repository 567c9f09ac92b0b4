// The cloud-init NoCloud seed of a VM (vm.md §7): meta-data, user-data with
// our guest agent in write_files, network-config (netplan v2), and the
// `cidata` ISO that carries them.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kr::vm {

struct SeedNetwork {
  std::string vm_ip;                  // "10.200.0.10"
  int prefix_len = 24;
  std::string gateway;                // default route
  std::vector<std::string> dns;       // VM_DNS_SERVERS (V19)
  std::string mac;                    // matched by MAC, no set-name
  std::optional<int> mtu;             // overlay mode: 1450 (V18); NAT: none
};

struct SeedSpec {
  std::int64_t task_id = 0;
  std::string user_ssh_key;           // empty: none given (password-style config, V15 Keep)
  std::string runner_public_key;      // empty when it could not be made
  std::string runner_url;             // http://{gateway}:{RUNNER_PORT}
  int heartbeat_interval_seconds = 10;
  bool gpu = false;                   // any GPU passed through
  std::optional<std::string> nvidia_driver_version;  // host driver, digits and dots
  std::string nvidia_driver_base_url = "https://us.download.nvidia.com/XFree86/Linux-x86_64";  // V27
  SeedNetwork network;
};

struct SeedFiles {
  std::string meta_data;
  std::string user_data;
  std::string network_config;
};

std::string seed_meta_data(std::int64_t task_id);
std::string seed_network_config(const SeedNetwork& network);
std::string seed_user_data(const SeedSpec& spec);
// All three. Throws std::invalid_argument for a driver version that is not
// digits and dots (it is pasted into a shell command).
SeedFiles seed_files(const SeedSpec& spec);

// genisoimage, else mkisofs, on PATH (nullopt: neither).
std::optional<std::filesystem::path> find_iso_tool(const std::string& path_env);

// Writes the three files into a fresh temp dir and runs
// `<tool> -output <iso> -volid cidata -joliet -rock meta-data user-data network-config`
// (vm.md §7.1). Throws std::runtime_error("ISO creation failed: <stderr>").
void write_seed_iso(const SeedFiles& files, const std::filesystem::path& iso, const std::filesystem::path& tool,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace kr::vm
