#include "config/config_keys.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <variant>

#include "common/ip_network.hpp"

namespace kr::config {
namespace {

using py::Value;

using Member = std::variant<std::string RunnerConfig::*, int RunnerConfig::*, bool RunnerConfig::*,
                            std::vector<std::string> RunnerConfig::*, LogLevel RunnerConfig::*>;

constexpr std::int64_t kIntMin = std::numeric_limits<int>::min();
constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

struct KeySpec {
    std::string_view name;
    Member member;
    // Accepted range for int keys. Upstream checks nothing; we refuse values
    // that could only crash or misbehave later (port 0, a zero heartbeat).
    std::int64_t min = kIntMin;
    std::int64_t max = kIntMax;
    bool bind_address = false;  // str key that must hold an IPv4 literal or "::"
    std::vector<std::string_view> choices = {};  // str key limited to these values
    bool ip_networks = false;  // list key whose items are addresses or CIDRs
};

constexpr std::int64_t kPortMin = 1, kPortMax = 65535;

const std::vector<KeySpec>& key_table() {
    using C = RunnerConfig;
    static const std::vector<KeySpec> table = {
        {"RUNNER_BIND_IP", &C::runner_bind_ip, kIntMin, kIntMax, true},
        {"RUNNER_PORT", &C::runner_port, kPortMin, kPortMax},
        {"HOST_ADDRESS", &C::host_address},
        {"HOST_PORT", &C::host_port, kPortMin, kPortMax},
        {"SHARED_DIR", &C::shared_dir},
        {"LOCAL_TEMP_DIR", &C::local_temp_dir},
        {"CONTAINER_TAR_DIR", &C::container_tar_dir},
        {"NUMACTL_PATH", &C::numactl_path},
        {"RUNNER_LOG_FILE", &C::runner_log_file},
        {"HEARTBEAT_INTERVAL_SECONDS", &C::heartbeat_interval_seconds, 1},
        {"RESOURCE_CHECK_INTERVAL_SECONDS", &C::resource_check_interval_seconds, 1},
        {"RUNNER_USER", &C::runner_user},
        {"DEFAULT_WORKING_DIR", &C::default_working_dir},
        {"TASKS_PRIVILEGED", &C::tasks_privileged},
        {"ADDITIONAL_MOUNTS", &C::additional_mounts},
        {"DOCKER_IMAGE_SYNC_TIMEOUT", &C::docker_image_sync_timeout, 1},
        {"TUNNEL_ENABLED", &C::tunnel_enabled},
        {"TUNNEL_CLIENT_PATH", &C::tunnel_client_path},
        {"DOCKER_NETWORK_NAME", &C::docker_network_name},
        {"DOCKER_NETWORK_SUBNET", &C::docker_network_subnet},
        {"DOCKER_NETWORK_GATEWAY", &C::docker_network_gateway},
        {"AUTO_SNAPSHOT_ON_STOP", &C::auto_snapshot_on_stop},
        {"MAX_SNAPSHOTS_PER_VPS", &C::max_snapshots_per_vps},  // <= 0 means unlimited
        {"AUTO_RESTORE_ON_CREATE", &C::auto_restore_on_create},
        {"LOG_LEVEL", &C::log_level},
        {"VM_IMAGES_DIR", &C::vm_images_dir},
        {"VM_INSTANCES_DIR", &C::vm_instances_dir},
        {"VM_DEFAULT_MEMORY_MB", &C::vm_default_memory_mb, 1},
        {"VM_DEFAULT_DISK_SIZE", &C::vm_default_disk_size},
        {"VM_ACS_OVERRIDE", &C::vm_acs_override},
        {"VM_BOOT_TIMEOUT_SECONDS", &C::vm_boot_timeout_seconds, 1},
        {"VM_SSH_READY_TIMEOUT_SECONDS", &C::vm_ssh_ready_timeout_seconds, 1},
        {"VM_HEARTBEAT_TIMEOUT_SECONDS", &C::vm_heartbeat_timeout_seconds, 1},
        {"VM_BRIDGE_NAME", &C::vm_bridge_name},
        {"VM_BRIDGE_SUBNET", &C::vm_bridge_subnet},
        {"VM_BRIDGE_GATEWAY", &C::vm_bridge_gateway},
        {"VM_QEMU_ACCEL", &C::vm_qemu_accel, kIntMin, kIntMax, false, {"kvm", "tcg"}},
        {"VM_QEMU_CPU", &C::vm_qemu_cpu},
        {"VM_FIRMWARE", &C::vm_firmware},
        {"VM_DNS_SERVERS", &C::vm_dns_servers},
        {"VM_RUN_DIR", &C::vm_run_dir},
        {"VM_CLOUD_INIT_TIMEOUT_SECONDS", &C::vm_cloud_init_timeout_seconds, 1},
        {"VM_CLOUD_INIT_GPU_TIMEOUT_SECONDS", &C::vm_cloud_init_gpu_timeout_seconds, 1},
        {"VM_NVIDIA_DRIVER_URL", &C::vm_nvidia_driver_url},
        {"VM_POWERDOWN_TIMEOUT_SECONDS", &C::vm_powerdown_timeout_seconds, 1, 3600},
        {"VM_SSH_RELAY_MAX_CONNECTIONS", &C::vm_ssh_relay_max_connections, 1, 65536},
        {"VM_SSH_RELAY_MAX_PER_SOURCE", &C::vm_ssh_relay_max_per_source, 1, 65536},
        {"VM_SSH_RELAY_HANDSHAKE_TIMEOUT_SECONDS", &C::vm_ssh_relay_handshake_timeout_seconds, 1, 3600},
        {"OVERLAY_ENABLED", &C::overlay_enabled},
        {"OVERLAY_SUBNET", &C::overlay_subnet},
        {"OVERLAY_NETWORK_NAME", &C::overlay_network_name},
        {"OVERLAY_VXLAN_ID", &C::overlay_vxlan_id, 1, (1 << 24) - 1},  // VNIs are 24 bits
        {"OVERLAY_VXLAN_PORT", &C::overlay_vxlan_port, kPortMin, kPortMax},
        {"OVERLAY_MTU", &C::overlay_mtu, 68, 65535},  // 68: IPv4's minimum MTU
        {"STATE_DIR", &C::state_dir},
        {"DOCKER_SOCKET", &C::docker_socket},
        {"DOCKER_REGISTRY_REFRESH_TIMEOUT", &C::docker_registry_refresh_timeout, 1},
        {.name = "API_ALLOWED_CLIENTS", .member = &C::api_allowed_clients, .ip_networks = true},
        {.name = "METRICS_ALLOWED_CLIENTS", .member = &C::metrics_allowed_clients, .ip_networks = true},
        // At least one large control body (a task create's 8 MiB).
        {"MAX_BUFFERED_REQUEST_BYTES", &C::max_buffered_request_bytes, 8 * 1024 * 1024},
    };
    return table;
}

class Applier {
public:
    Applier(RunnerConfig& config, const KeySpec& spec, const Value& value, std::string_view file)
        : config_(config), spec_(spec), v_(value), file_(file) {}

    void operator()(std::string RunnerConfig::*m) {
        if (v_.kind != Value::Kind::Str) mismatch("a str");
        if (spec_.bind_address && !is_bind_address(v_.s))
            fail(v_.line, key() + " expects an IPv4 address such as \"0.0.0.0\", or \"::\" (all IPv6 and IPv4 "
                              "addresses), got " + py::describe(v_));
        if (!spec_.choices.empty() &&
            std::find(spec_.choices.begin(), spec_.choices.end(), std::string_view(v_.s)) == spec_.choices.end()) {
            std::string allowed;
            for (std::string_view c : spec_.choices) allowed += (allowed.empty() ? "\"" : ", \"") + std::string(c) + "\"";
            fail(v_.line, key() + " must be one of " + allowed + ", got " + py::describe(v_));
        }
        config_.*m = v_.s;
    }

    void operator()(int RunnerConfig::*m) {
        if (v_.kind != Value::Kind::Int) mismatch("an int");  // True/False are Bool, so never ints here
        if (v_.i < spec_.min || v_.i > spec_.max) {
            std::string n = std::to_string(v_.i);
            if (spec_.min == kPortMin && spec_.max == kPortMax)
                fail(v_.line, key() + " must be a port number between 1 and 65535, got " + n);
            if (spec_.max == kIntMax)
                fail(v_.line, key() + " must be at least " + std::to_string(spec_.min) + ", got " + n);
            fail(v_.line, key() + " must be between " + std::to_string(spec_.min) + " and " +
                              std::to_string(spec_.max) + ", got " + n);
        }
        config_.*m = static_cast<int>(v_.i);
    }

    void operator()(bool RunnerConfig::*m) {
        if (v_.kind != Value::Kind::Bool) mismatch("True or False");
        config_.*m = v_.b;
    }

    void operator()(std::vector<std::string> RunnerConfig::*m) {
        if (v_.kind != Value::Kind::List && v_.kind != Value::Kind::Tuple) mismatch("a list of str");
        std::vector<std::string> out;
        for (std::size_t i = 0; i < v_.items.size(); ++i) {
            const Value& item = v_.items[i];
            if (item.kind != Value::Kind::Str)
                fail(item.line, key() + "[" + std::to_string(i) + "] expects a str, got " + py::describe(item));
            if (spec_.ip_networks && !net::parse_network(item.s))
                fail(item.line, key() + "[" + std::to_string(i) + "] expects an IP address or network such as "
                                "\"10.0.0.5\" or \"10.0.0.0/24\", got " + py::describe(item));
            out.push_back(item.s);
        }
        config_.*m = std::move(out);
    }

    void operator()(LogLevel RunnerConfig::*m) {
        std::optional<LogLevel> level;
        if (v_.kind == Value::Kind::LogLevelMember) level = log_level_from_string(v_.s);
        // Upstream's LogLevel is a str enum, so a plain string works there too.
        if (v_.kind == Value::Kind::Str) level = log_level_from_string(v_.s);
        if (!level)
            fail(v_.line, key() +
                              " expects LogLevel.FULL, LogLevel.DEBUG, LogLevel.INFO or LogLevel.WARNING "
                              "(or \"full\", \"debug\", \"info\", \"warning\"), got " + py::describe(v_));
        config_.*m = *level;
    }

private:
    std::string key() const { return std::string(spec_.name); }
    [[noreturn]] void fail(int line, std::string message) const {
        throw ConfigError(std::string(file_), line, std::move(message));
    }
    [[noreturn]] void mismatch(std::string_view expected) const {
        fail(v_.line, key() + " expects " + std::string(expected) + ", got " + py::describe(v_));
    }

    RunnerConfig& config_;
    const KeySpec& spec_;
    const Value& v_;
    std::string_view file_;
};

}  // namespace

std::vector<std::string> config_key_names() {
    std::vector<std::string> names;
    for (const KeySpec& spec : key_table()) names.emplace_back(spec.name);
    return names;
}

void apply_assignment(RunnerConfig& config, const py::Assignment& assignment, std::string_view file,
                      std::vector<std::string>& warnings) {
    if (assignment.name.empty() || assignment.name[0] == '_') return;
    for (const KeySpec& spec : key_table()) {
        if (spec.name == assignment.name) {
            std::visit(Applier(config, spec, assignment.value, file), spec.member);
            return;
        }
    }
    // Upstream ignores unknown names silently; a typo then silently keeps the
    // default, so we at least say so.
    warnings.push_back(std::string(file) + ":" + std::to_string(assignment.line) + ": unknown configuration key '" +
                       assignment.name + "' ignored");
}

}  // namespace kr::config
