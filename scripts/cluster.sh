#!/usr/bin/env bash
# A whole KohakuRiver cluster on this machine (issue 19), root only:
#
#   scripts/cluster.sh up [N]      N nodes (default 3); exits 0 once all are online at the host
#   scripts/cluster.sh status      one line per node; non-zero when one is not online
#   scripts/cluster.sh down        removes everything (also after an interrupted up/run)
#   fault helpers (used by tests/e2e/test_cluster.py and bench/cluster_soak.py):
#   scripts/cluster.sh runner-kill K | runner-start K | dockerd-restart K
#   scripts/cluster.sh link K down|up | host-stop | host-start | exec K CMD...
#
# Layout (every name starts with krc-, so it never meets the main test suite):
#   netns krc-ul     the underlay "switch": bridge br0, 10.233.19.0/24
#   netns krc-host   the fixture host (tests/e2e/cluster_host.py) at .1:8000,
#                    doing the VXLAN hub like upstream's host
#   netns krc-nK     node K at .(10+K): its own UTS namespace (hostname krc-nK)
#                    and mount namespace, held by an anchor process; inside it
#                    its own containerd and dockerd (own sockets, roots,
#                    pidfile, cgroup parent /krc-nK) and its runner
#                    (build/kohakuriver) with its own DOCKER_SOCKET,
#                    STATE_DIR, LOCAL_TEMP_DIR, VM dirs and HOME
#   root ns          veth krc-root at .254 on the switch, so tests can reach
#                    the host's control API and the runners; nothing else
# Every process of a node (daemons, shims, containers) is in the v1 pids
# cgroup /krc-nK (Docker's --cgroup-parent), which is how `down` finds and
# ends them all. Data: /var/lib/krc, runtime: /run/krc (both removed by down).
# Environment images: a busybox image saved once to the shared directory
# /var/lib/krc/shared/kohakuriver-containers/krcbox-<ts>.tar; each runner
# loads it into its node's Docker the way host environments are loaded.
# KRC_HB_TIMEOUT / KRC_HB_CHECK / KRC_RUNNER_HB: the host's heartbeat timeout
# and check interval and the runners' heartbeat interval (seconds; defaults
# 12/2/2 for test speed; upstream 30/10/5).
# KRC_UPSTREAM=/path/to/KohakuRiver-source: the unmodified upstream host
# instead of the fixture host (by hand; not in CI), installed once into the
# venv /var/cache/krc-upstream/venv, with its own timings (heartbeat 5 s x 6)
# and the overlay enabled; its API at http://10.233.19.1:8000/api/..., its
# SSH proxy at :8002. Set it for `up` only: later commands read the kind
# from /run/krc/host-kind. The test suite and the soak need the fixture host.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${KR_BINARY:-$REPO/build/kohakuriver}
DATA=/var/lib/krc
RUN=/run/krc
NET=10.233.19
HOST_IP=$NET.1
HOST_PORT=8000
RUNNER_PORT=8001
HB_TIMEOUT=${KRC_HB_TIMEOUT:-12}
HB_CHECK=${KRC_HB_CHECK:-2}
RUNNER_HB=${KRC_RUNNER_HB:-2}
ENV_NAME=krcbox
CG=/sys/fs/cgroup

log() { echo "cluster: $*" >&2; }
node_ip() { echo "$NET.$((10 + $1))"; }
nodes() { cat "$RUN/nodes" 2>/dev/null || true; }

# Becomes CMD with its process in pids cgroup /krc-$1 (so down can end it);
# `exec`s, so call it as `( in_cgroup … )` or in a background job, whose $!
# is then CMD's pid (ip netns exec, unshare, nsenter and setsid all exec).
in_cgroup() {
  local cg=$1; shift
  exec sh -c 'echo $$ > "$0/tasks" && exec "$@"' "$CG/pids/$cg" "$@"
}

# Becomes CMD inside node K's namespaces (net, mount, UTS) and cgroup.
in_node() {
  local k=$1; shift
  local anchor; anchor=$(cat "$RUN/n$k/anchor.pid")
  in_cgroup "krc-n$k" nsenter -t "$anchor" -n -m -u -- "$@"
}

docker_n() { local k=$1; shift; docker -H "unix://$RUN/n$k/docker.sock" "$@"; }

wait_for() {  # wait_for SECONDS WHAT CMD...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.3
  done
}

host_kind() { cat "$RUN/host-kind" 2>/dev/null || echo fixture; }

host_state() {  # the fixture host's /cluster/state, or the upstream host's /api/nodes
  local path=/cluster/state
  [ "$(host_kind)" = upstream ] && path=/api/nodes
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://$HOST_IP:$HOST_PORT$path" 2>/dev/null
}

UPSTREAM_VENV=/var/cache/krc-upstream/venv

upstream_venv() {  # installs the given upstream source once (keyed by its path and commit)
  local src=$1 key
  key="$src $(git -C "$src" rev-parse HEAD 2>/dev/null || echo unversioned)"
  if [ "$(cat "$UPSTREAM_VENV/.krc-source" 2>/dev/null)" != "$key" ]; then
    rm -rf "$UPSTREAM_VENV"
    mkdir -p "$(dirname "$UPSTREAM_VENV")"
    python3 -m venv "$UPSTREAM_VENV"
    # Newer FastAPI dropped add_event_handler, which upstream's host uses.
    "$UPSTREAM_VENV/bin/pip" install -q "$src" "fastapi==0.115.12" >&2
    echo "$key" >"$UPSTREAM_VENV/.krc-source"
  fi
}

start_upstream_host() {
  cat >"$DATA/host_config.py" <<HOSTCFG
from kohakuengine import Config

HOST_BIND_IP = "$HOST_IP"
HOST_PORT = $HOST_PORT
HOST_SSH_PROXY_PORT = $((HOST_PORT + 2))
HOST_REACHABLE_ADDRESS = "$HOST_IP"
SHARED_DIR = "$DATA/shared"
DB_FILE = "$DATA/host.db"
OVERLAY_ENABLED = True


def config_gen():
    return Config.from_globals()
HOSTCFG
  in_cgroup krc-host ip netns exec krc-host setsid "$UPSTREAM_VENV/bin/kohakuriver.host" \
    --config "$DATA/host_config.py" >>"$DATA/host.log" 2>&1 &
  echo $! >"$RUN/host.pid"
  wait_for 60 "the upstream host" host_state
}

start_daemons() {  # containerd + dockerd of node K
  local k=$1 d=$DATA/n$1 r=$RUN/n$1
  rm -f "$r/containerd.sock" "$r/docker.sock" "$r/docker.pid"
  in_node "$k" setsid containerd --config "$r/containerd.toml" >>"$d/containerd.log" 2>&1 &
  echo $! >"$r/containerd.pid"
  wait_for 30 "containerd of node $k" test -S "$r/containerd.sock"
  start_dockerd "$k"
}

start_dockerd() {
  local k=$1 d=$DATA/n$1 r=$RUN/n$1
  in_node "$k" setsid dockerd --config-file "$r/daemon.json" --containerd "$r/containerd.sock" \
    --data-root "$d/docker" --exec-root "$r/dx" --pidfile "$r/docker.pid" -H "unix://$r/docker.sock" \
    --cgroup-parent "/krc-n$k" --exec-opt native.cgroupdriver=cgroupfs >>"$d/dockerd.log" 2>&1 &
  wait_for 60 "dockerd of node $k" docker_n "$k" version
  wait_for 10 "dockerd's pidfile" test -s "$r/docker.pid"
}

start_runner() {
  local k=$1 d=$DATA/n$1
  in_node "$k" env HOME="$d/home" setsid "$BIN" runner --config "$d/runner_config.py" >>"$d/runner.log" 2>&1 &
  echo $! >"$RUN/n$k/runner.pid"
}

alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

stop_pidfile() {  # stop_pidfile FILE SIGNAL [SECONDS]: then SIGKILL, and wait until it is gone
  [ -f "$1" ] || return 0
  local pid i; pid=$(cat "$1")
  kill "-$2" "$pid" 2>/dev/null || true
  for i in $(seq 1 $((${3:-10} * 10))); do alive "$pid" || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  rm -f "$1"
}

start_host() {
  if [ "$(host_kind)" = upstream ]; then start_upstream_host; return; fi
  in_cgroup krc-host ip netns exec krc-host setsid python3 "$REPO/tests/e2e/cluster_host.py" \
    --bind "$HOST_IP" --port "$HOST_PORT" --local-ip "$HOST_IP" --state-file "$DATA/host-state.json" \
    --overlay --heartbeat-timeout "$HB_TIMEOUT" --check-interval "$HB_CHECK" >>"$DATA/host.log" 2>&1 &
  echo $! >"$RUN/host.pid"
  wait_for 20 "the fixture host" host_state
}

write_node_config() {
  local k=$1 d=$DATA/n$1 r=$RUN/n$1
  cat >"$r/containerd.toml" <<EOF
version = 2
root = "$d/containerd"
state = "$r/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$r/containerd.sock"
[ttrpc]
  address = "$r/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
  echo '{}' >"$r/daemon.json"
  cat >"$d/runner_config.py" <<EOF
"""cluster node $k (scripts/cluster.sh)"""
from kohakuengine import Config

RUNNER_BIND_IP = "0.0.0.0"
RUNNER_PORT = $RUNNER_PORT
HOST_ADDRESS = "$HOST_IP"
HOST_PORT = $HOST_PORT
SHARED_DIR = "$DATA/shared"
LOCAL_TEMP_DIR = "$d/local"
STATE_DIR = "$d/state"
DOCKER_SOCKET = "$r/docker.sock"
HEARTBEAT_INTERVAL_SECONDS = $RUNNER_HB
OVERLAY_ENABLED = True
VM_IMAGES_DIR = "$d/vm-images"
VM_INSTANCES_DIR = "$d/vm-instances"
VM_RUN_DIR = "$r/vm"
# KVM guests hang on these build machines: TCG, with SeaBIOS (the test image
# boots either way), and a cloud-init wait that allows for a loaded 2-core box.
VM_QEMU_ACCEL = "${KRC_VM_ACCEL:-tcg}"
VM_FIRMWARE = "${KRC_VM_FIRMWARE:-}"
VM_CLOUD_INIT_TIMEOUT_SECONDS = 1500
LOG_LEVEL = "info"


def config_gen():
    return Config.from_globals()
EOF
}

make_env_tarball() {  # the busybox environment, saved like a host environment
  local dir=$DATA/shared/kohakuriver-containers root
  mkdir -p "$dir"
  ls "$dir"/$ENV_NAME-*.tar >/dev/null 2>&1 && return 0
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/shared" "$root/root"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker_n 1 import -c 'ENV PATH=/bin' - "krc/$ENV_NAME:src" >/dev/null
  rm -rf "$root"
  docker_n 1 save -o "$dir/$ENV_NAME-$(date +%s).tar" "krc/$ENV_NAME:src"
  docker_n 1 rmi "krc/$ENV_NAME:src" >/dev/null
}

cmd_up() {
  local n=${1:-3}
  [ -x "$BIN" ] || { log "$BIN is not built (scripts/build.sh)"; exit 1; }
  command -v busybox >/dev/null || { log "busybox is not installed"; exit 1; }
  cmd_down
  mkdir -p "$DATA/shared" "$RUN"
  seq 1 "$n" >"$RUN/nodes"
  if [ -n "${KRC_UPSTREAM:-}" ]; then
    upstream_venv "$KRC_UPSTREAM"
    echo upstream >"$RUN/host-kind"
  fi
  ip netns add krc-ul
  ip -n krc-ul link set lo up
  ip -n krc-ul link add br0 type bridge
  ip -n krc-ul link set br0 up
  ip link add krc-root type veth peer name root netns krc-ul
  ip -n krc-ul link set root master br0 up
  ip addr add "$NET.254/24" dev krc-root
  ip link set krc-root up
  # The host.
  ip netns add krc-host
  ip link add krc-h0 type veth peer name host netns krc-ul
  ip link set krc-h0 netns krc-host
  ip -n krc-host link set krc-h0 name eth0
  ip -n krc-host addr add "$HOST_IP/24" dev eth0
  ip -n krc-host link set eth0 up
  ip -n krc-host link set lo up
  ip -n krc-ul link set host master br0 up
  mkdir -p "$CG/pids/krc-host"
  start_host
  for k in $(nodes); do
    local d=$DATA/n$k r=$RUN/n$k
    mkdir -p "$d/home" "$d/local" "$d/state" "$d/vm-images" "$d/vm-instances" "$r/vm"
    ip netns add "krc-n$k"
    ip link add "krc-v$k" type veth peer name "n$k" netns krc-ul
    ip link set "krc-v$k" netns "krc-n$k"
    ip -n "krc-n$k" link set "krc-v$k" name eth0
    ip -n "krc-n$k" addr add "$(node_ip "$k")/24" dev eth0
    ip -n "krc-n$k" link set eth0 up
    ip -n "krc-n$k" link set lo up
    ip -n "krc-n$k" route add default via "$HOST_IP"
    ip -n krc-ul link set "n$k" master br0 up
    mkdir -p "$CG/pids/krc-n$k"
    # The anchor holds the node's mount and UTS namespaces: a private
    # hostname, and a sysfs of the node's netns with the cgroup tree kept
    # (what `ip netns exec` does, minus losing /sys/fs/cgroup, which dockerd
    # needs).
    mkdir -p "$r/cg"
    in_cgroup "krc-n$k" nsenter --net="/run/netns/krc-n$k" -- unshare --mount --uts --propagation slave -- \
      sh -c "hostname krc-n$k && mount --rbind $CG $r/cg && mount -t sysfs sysfs /sys &&
             mount --move $r/cg $CG && exec sleep infinity" </dev/null >>"$d/anchor.log" 2>&1 &
    echo $! >"$r/anchor.pid"
    wait_for 10 "node $k's anchor" sh -c "[ \"\$(nsenter -t $(cat "$r/anchor.pid") -u hostname)\" = krc-n$k ]"
    write_node_config "$k"
    start_daemons "$k"
  done
  make_env_tarball
  for k in $(nodes); do start_runner "$k"; done
  wait_for 90 "every node online at the host" cmd_status_quiet
  cmd_status
}

cmd_status_quiet() { cmd_status >/dev/null 2>&1; }

cmd_status() {
  local state rc=0
  state=$(host_state) || { echo "host: not reachable at $HOST_IP:$HOST_PORT"; return 1; }
  for k in $(nodes); do
    local line
    line=$(python3 - "$state" "krc-n$k" <<'EOF'
import json, sys, time
s = json.loads(sys.argv[1])
name = sys.argv[2]
if isinstance(s, list):  # the upstream host's /api/nodes
    n = next((x for x in s if x.get("hostname") == name), None)
    if not n:
        print(f"{name} not-registered")
        sys.exit(1)
    print(f"{name} {n['status']} {n['url']} last_heartbeat={n.get('last_heartbeat')} (upstream host)")
    sys.exit(0 if n["status"] == "online" else 1)
n = s["nodes"].get(name)
if not n:
    print(f"{name} not-registered")
    sys.exit(1)
ran = sum(1 for t in s["tasks"].values() if t["node"] == name and t["status"] == "running")
age = time.time() - n["last_heartbeat"]
print(f"{name} {n['status']} {n['url']} runner_id={n['runner_id']} heartbeat_age={age:.1f}s running={ran}")
sys.exit(0 if n["status"] == "online" else 1)
EOF
) || rc=1
    echo "$line"
  done
  [ -n "$(nodes)" ] || { echo "no cluster (scripts/cluster.sh up)"; rc=1; }
  return $rc
}

kill_cgroup() {  # ends every process in pids cgroup $1 (and below)
  local dir=$CG/pids/$1 pids
  [ -d "$dir" ] || return 0
  for _ in $(seq 1 50); do
    pids=$(find "$dir" -name tasks -exec cat {} + 2>/dev/null | sort -u)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
}

cmd_down() {
  local cg
  for cg in "$CG"/pids/krc-*; do [ -d "$cg" ] && kill_cgroup "$(basename "$cg")"; done
  # Docker's per-container cgroups exist in every v1 hierarchy.
  find "$CG" -maxdepth 2 -name 'krc-*' -type d 2>/dev/null | while read -r d; do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # Mounts live in the nodes' private mount namespaces and went with their
  # processes; any that leaked to the root namespace are lifted here.
  awk '$2 ~ "^(/var/lib/krc|/run/krc)" {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  for ns in $(ip netns list | awk '$1 ~ /^krc-/ {print $1}'); do ip netns del "$ns"; done
  ip link del krc-root 2>/dev/null || true
  rm -rf "$RUN" "$DATA"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  runner-kill) stop_pidfile "$RUN/n$2/runner.pid" KILL ;;
  runner-start) start_runner "$2" ;;
  dockerd-restart)
    # dockerd stops its containers first (10 s grace each, in parallel).
    stop_pidfile "$RUN/n$2/docker.pid" TERM 60
    start_dockerd "$2" ;;
  link) ip -n krc-ul link set "n$2" "$3" ;;
  host-stop) stop_pidfile "$RUN/host.pid" KILL ;;
  host-start) start_host ;;
  exec) k=$2; shift 2; in_node "$k" "$@" ;;  # exec: the script becomes CMD
  docker) k=$2; shift 2; docker_n "$k" "$@" ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
