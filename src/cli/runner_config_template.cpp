// The file written by `kohakuriver init config --runner`. It keeps the shape
// of upstream's generated runner_config.py (docstring, the two imports, typed
// module-level assignments, config_gen()) so the same file also works with
// the Python runner; only the wording and our extra keys differ. The
// values must equal RunnerConfig's defaults (a unit test loads it back).
#include "cli/init_commands.hpp"

namespace kr::cli {

std::string runner_config_template() {
    return R"PY("""
Runner settings for a KohakuRiver compute node.

Start the runner with this file:
    kohakuriver runner --config /path/to/runner_config.py

Without --config, ~/.kohakuriver/runner_config.py is read when it exists.

Only plain values are understood here (strings, numbers, True/False, lists
of strings and LogLevel members): the file is read, not executed. Edit the
values below; every setting shows its default.
"""
from kohakuengine import Config

from kohakuriver.models.enums import LogLevel

# =============================================================================
# Network
# =============================================================================

# Address the runner's API listens on (an IPv4 address; 0.0.0.0 = all)
RUNNER_BIND_IP: str = "0.0.0.0"

# Port of the runner's API; the host reaches the runner here
RUNNER_PORT: int = 8001

# Address (IP or name) of the KohakuRiver host
HOST_ADDRESS: str = "127.0.0.1"

# Port of the KohakuRiver host
HOST_PORT: int = 8000

# Who may use the runner's control API (addresses or networks, e.g.
# ["10.0.0.5", "10.0.1.0/24"]); empty = every client, as upstream. Loopback
# is always allowed; containers and VMs of this node never are (they reach
# only /healthz, their own tunnel and VM agent endpoints).
API_ALLOWED_CLIENTS: list[str] = []

# Who may scrape /metrics; empty = the same clients as API_ALLOWED_CLIENTS
METRICS_ALLOWED_CLIENTS: list[str] = []

# Request bodies held in memory at once, over all connections (bytes); a
# request that does not fit waits up to 10 s for room, then gets 503
MAX_BUFFERED_REQUEST_BYTES: int = 268435456

# =============================================================================
# Paths
# =============================================================================

# Cluster-wide shared storage; must be the same path the host uses
SHARED_DIR: str = "/mnt/cluster-share"

# Node-local scratch space, mounted at /local_temp in containers
LOCAL_TEMP_DIR: str = "/tmp/kohakuriver"

# Where environment image tarballs are kept
# (empty = SHARED_DIR/kohakuriver-containers)
CONTAINER_TAR_DIR: str = ""

# numactl binary; kept for compatibility (NUMA nodes are read from sysfs and
# tasks are pinned with cpusets)
NUMACTL_PATH: str = ""

# Also append the log to this file (empty = stderr only, i.e. the journal
# under systemd)
RUNNER_LOG_FILE: str = ""

# Directory for the runner's own durable state (must not be inside any
# container mount)
STATE_DIR: str = "/var/lib/kohakuriver"

# =============================================================================
# Timing
# =============================================================================

# Seconds between heartbeats sent to the host
HEARTBEAT_INTERVAL_SECONDS: int = 5

# Kept for compatibility; not used
RESOURCE_CHECK_INTERVAL_SECONDS: int = 1

# =============================================================================
# Execution
# =============================================================================

# Kept for compatibility; containers run as their image's user
RUNNER_USER: str = ""

# Kept for compatibility; the working directory comes with each task
DEFAULT_WORKING_DIR: str = "/shared"

# =============================================================================
# Docker
# =============================================================================

# Unix socket of the Docker Engine API
DOCKER_SOCKET: str = "/var/run/docker.sock"

# Seconds allowed for re-pulling a `:latest` (or untagged) registry image
# that is already present; when it fails the local copy runs, with a warning
DOCKER_REGISTRY_REFRESH_TIMEOUT: int = 30

# Run tasks and VPS containers with --privileged (otherwise only SYS_NICE
# is added); think twice before enabling
TASKS_PRIVILEGED: bool = False

# Extra bind mounts for every task and VPS container
# Format: ["host_path:container_path", "host_path:container_path:ro", ...]
ADDITIONAL_MOUNTS: list[str] = []

# Seconds allowed for loading an environment image from shared storage
DOCKER_IMAGE_SYNC_TIMEOUT: int = 600

# =============================================================================
# Docker network
# =============================================================================

# Bridge network the containers join (created when missing)
DOCKER_NETWORK_NAME: str = "kohakuriver-net"

# Subnet of that network
DOCKER_NETWORK_SUBNET: str = "172.30.0.0/16"

# Gateway of that network; containers reach the runner through it
DOCKER_NETWORK_GATEWAY: str = "172.30.0.1"

# =============================================================================
# Port-forwarding tunnel
# =============================================================================

# Start the tunnel client inside containers so ports can be forwarded
TUNNEL_ENABLED: bool = True

# tunnel-client binary (empty = search the usual places)
TUNNEL_CLIENT_PATH: str = ""

# =============================================================================
# Logging
# =============================================================================

# How much the runner logs: FULL, DEBUG, INFO or WARNING
LOG_LEVEL: LogLevel = LogLevel.INFO


# =============================================================================
# Entry point used by KohakuEngine (leave as is)
# =============================================================================

def config_gen():
    """Return the settings above as a KohakuEngine Config."""
    return Config.from_globals()
)PY";
}

}  // namespace kr::cli
