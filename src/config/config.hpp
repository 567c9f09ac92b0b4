// Runner configuration: the settings of protocol.md §4.1 plus this project's
// own keys, and the loader for operators' Python-style `runner_config.py`
// files (§4.2, decision D24). The files are parsed, never executed.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kr::config {

// Upstream's LogLevel enum (kohakuriver.models.enums), most verbose first.
enum class LogLevel { Full, Debug, Info, Warning };

// "full", "debug", "info", "warning" (upstream's enum values).
std::string to_string(LogLevel level);
// Case-insensitive inverse of to_string; also accepts the member names
// ("FULL", "INFO", ...). nullopt for anything else.
std::optional<LogLevel> log_level_from_string(std::string_view text);

// Strict dotted-quad IPv4 ("10.0.0.1"; no leading zeros, no short forms).
// The registration url must carry an IPv4 literal (decision D4), so the bind
// address is held to that form wherever it is configured.
bool is_ipv4_literal(std::string_view text);
// RUNNER_BIND_IP: an IPv4 literal, or "::" (every IPv6 and IPv4 address).
bool is_bind_address(std::string_view text);

// One member per configuration key; the member is the key in snake_case and
// its initialiser is upstream's default (protocol.md §4.1).
struct RunnerConfig {
    // Network
    std::string runner_bind_ip = "0.0.0.0";
    int runner_port = 8001;
    std::string host_address = "127.0.0.1";
    int host_port = 8000;

    // Paths
    std::string shared_dir = "/mnt/cluster-share";
    std::string local_temp_dir = "/tmp/kohakuriver";
    std::string container_tar_dir;  // empty: <shared_dir>/kohakuriver-containers
    std::string numactl_path;
    std::string runner_log_file;  // unused upstream; we also log to it when set

    // Timing
    int heartbeat_interval_seconds = 5;
    int resource_check_interval_seconds = 1;  // unused upstream

    // Execution
    std::string runner_user;                   // unused upstream
    std::string default_working_dir = "/shared";  // unused upstream

    // Docker
    bool tasks_privileged = false;
    std::vector<std::string> additional_mounts;
    int docker_image_sync_timeout = 600;
    // Deadline (s) of the refresh pull of a `:latest`/untagged registry image
    // that is already present locally; on failure the local copy runs.
    int docker_registry_refresh_timeout = 30;

    // Tunnel
    bool tunnel_enabled = true;
    std::string tunnel_client_path;

    // Docker network
    std::string docker_network_name = "kohakuriver-net";
    std::string docker_network_subnet = "172.30.0.0/16";
    std::string docker_network_gateway = "172.30.0.1";

    // Snapshots
    bool auto_snapshot_on_stop = true;
    int max_snapshots_per_vps = 3;  // <= 0: unlimited
    bool auto_restore_on_create = true;

    // Logging
    LogLevel log_level = LogLevel::Info;

    // QEMU VMs
    std::string vm_images_dir = "/var/lib/kohakuriver/vm-images";
    std::string vm_instances_dir = "/var/lib/kohakuriver/vm-instances";
    int vm_default_memory_mb = 4096;
    std::string vm_default_disk_size = "500G";
    bool vm_acs_override = true;
    int vm_boot_timeout_seconds = 600;
    int vm_ssh_ready_timeout_seconds = 600;
    int vm_heartbeat_timeout_seconds = 120;
    std::string vm_bridge_name = "kohaku-br0";
    std::string vm_bridge_subnet = "10.200.0.0/24";
    std::string vm_bridge_gateway = "10.200.0.1";
    // This project's VM keys (decisions.md "VM settings for emulation", V6,
    // V19, V27; vm.md §15.1).
    std::string vm_qemu_accel = "kvm";      // "kvm" | "tcg"
    std::string vm_qemu_cpu;                // empty: "host" under kvm, "max" under tcg
    std::string vm_firmware = "auto";       // OVMF CODE path; "" = SeaBIOS; "auto" = upstream's search
    std::vector<std::string> vm_dns_servers = {"8.8.8.8", "8.8.4.4"};
    std::string vm_run_dir = "/run/kohakuriver/vm";  // QMP sockets
    int vm_cloud_init_timeout_seconds = 300;         // watchdog, VM without GPU
    int vm_cloud_init_gpu_timeout_seconds = 900;     // watchdog, GPU VM (driver build)
    std::string vm_nvidia_driver_url = "https://us.download.nvidia.com/XFree86/Linux-x86_64";
    int vm_powerdown_timeout_seconds = 30;  // ACPI powerdown wait before SIGKILL (stop; restart: at most 20)
    // The VM SSH port relay's bounds (issue 16 point 4; README "VM SSH port"):
    // open relayed connections on this node, and per source address
    // (HOST_ADDRESS, loopback and API_ALLOWED_CLIENTS are exempt from the
    // per-source cap); a connection that has not exchanged SSH
    // identification lines both ways within the handshake timeout is closed.
    int vm_ssh_relay_max_connections = 512;
    int vm_ssh_relay_max_per_source = 16;
    int vm_ssh_relay_handshake_timeout_seconds = 20;

    // VXLAN overlay
    bool overlay_enabled = false;
    std::string overlay_subnet = "10.128.0.0/12/6/14";
    std::string overlay_network_name = "kohakuriver-overlay";
    int overlay_vxlan_id = 100;
    int overlay_vxlan_port = 4789;
    int overlay_mtu = 1450;

    // This project's keys (not upstream).
    // Durable runner state (SQLite, WAL) lives here, outside every container
    // mount (decisions.md "Durable state").
    std::string state_dir = "/var/lib/kohakuriver";
    // dockerd's Engine API socket (decisions.md "Docker: Engine API only").
    std::string docker_socket = "/var/run/docker.sock";
    // Source-address policy (decisions.md, S-NOAUTH): when non-empty, only
    // these addresses/networks (and loopback) may use the control API;
    // /metrics follows metrics_allowed_clients, or this list when that is
    // empty. Containers and VMs are kept off the control API regardless.
    std::vector<std::string> api_allowed_clients;
    std::vector<std::string> metrics_allowed_clients;
    // All HTTP request bodies held in memory at once, over every
    // connection (issue 16 item 2); a body that does not fit waits up to
    // 10 s for room, then gets 503.
    int max_buffered_request_bytes = 256 * 1024 * 1024;

    // CONTAINER_TAR_DIR, or <SHARED_DIR>/kohakuriver-containers when empty.
    std::string tar_dir() const;
    // "http://<HOST_ADDRESS>:<HOST_PORT>"
    std::string host_url() const;

    bool operator==(const RunnerConfig&) const = default;
};

// Every configuration problem. what() is "<file>:<line>: <message>" (or
// "<file>: <message>" when no line applies, e.g. an unreadable file).
class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string file, int line, std::string message);

    const std::string& file() const noexcept { return file_; }
    int line() const noexcept { return line_; }  // 0 when not line-specific
    const std::string& message() const noexcept { return message_; }

private:
    std::string file_;
    int line_;
    std::string message_;
};

struct LoadResult {
    RunnerConfig config;
    // Non-fatal findings, each "<file>:<line>: <message>" (e.g. unknown keys).
    std::vector<std::string> warnings;
};

// Reads and parses `path`; throws ConfigError (also when it cannot be read).
LoadResult load_config_file(const std::filesystem::path& path);

// Parses `text` as a runner_config.py; `filename` only labels messages.
// Assignments override the corresponding members of `base`.
LoadResult parse_config_text(std::string_view text, std::string_view filename,
                             RunnerConfig base = {});

}  // namespace kr::config
