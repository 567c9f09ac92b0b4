#!/usr/bin/env bash
# Manual check (issue 18): switch a node from the unmodified Python runner to
# this runner and back, with the unmodified upstream host. Not part of CI
# (the upstream source is not vendored here).
#
#   flock -x /tmp/kr-e2e.lock scripts/upstream-switch-interop.sh SRC [VENV]
#
# SRC: an upstream KohakuRiver source tree; VENV: a virtualenv that already
# has it installed (else one is made, as scripts/upstream-interop.sh does).
# The Python runner's startup check stops every kohakuriver-task-* container
# it does not know on this dockerd: hold the e2e lock EXCLUSIVELY.
# Needs dockerd, kr-test/busybox:test, kr-test/debian:bookworm and `ssh`.
#
# 1. Python runner up; a task `sleep 25; exit 7`, a long task and a Docker
#    VPS started through the host.
# 2. The switch: SIGKILL to the Python runner alone (what its unit's
#    KillMode=process does), this runner started on the same config file.
# 3. Under this runner: the adopted task's end, the VPS (SSH, the host's
#    restart), the long task killed through the host, a new long task.
# 4. Rollback: this runner stopped (SIGTERM), the Python runner started
#    again; what each side shows.
set -uo pipefail
SRC=${1:?path to an upstream KohakuRiver source tree}
VENV=${2:-}
cd "$(dirname "$0")/.."
BIN=$PWD/build/kohakuriver
W=$(mktemp -d /tmp/kr-switch.XXXX)
if [ -z "$VENV" ]; then
  python3 -m venv "$W/venv"
  "$W/venv/bin/pip" install -q "$SRC" "fastapi==0.115.12"
  VENV=$W/venv
fi
mkdir -p "$W/share/logs" "$W/share/shared_data" "$W/local" "$W/vm-instances" "$W/vm-images"
cat > "$W/host_config.py" <<PY
from kohakuengine import Config
HOST_BIND_IP = "127.0.0.1"
HOST_PORT = 18800
HOST_SSH_PROXY_PORT = 18802
SHARED_DIR = "$W/share"
DB_FILE = "$W/kr.db"
def config_gen():
    return Config.from_globals()
PY
# One file for both runners (STATE_DIR is ours; the Python runner ignores it).
cat > "$W/runner_config.py" <<PY
from kohakuengine import Config
RUNNER_PORT = 18801
HOST_ADDRESS = "127.0.0.1"
HOST_PORT = 18800
SHARED_DIR = "$W/share"
LOCAL_TEMP_DIR = "$W/local"
STATE_DIR = "$W/state"
TUNNEL_ENABLED = False
HEARTBEAT_INTERVAL_SECONDS = 5
VM_INSTANCES_DIR = "$W/vm-instances"
VM_IMAGES_DIR = "$W/vm-images"
def config_gen():
    return Config.from_globals()
PY
say() { echo "[$(date -u +%T)] $*"; }
"$VENV/bin/kohakuriver.host" --config "$W/host_config.py" > "$W/host.log" 2>&1 &
HOST_PID=$!
PY_PID=""; OUR_PID=""
trap 'kill $HOST_PID $PY_PID $OUR_PID 2>/dev/null || true' EXIT
sleep 6
start_python() { setsid "$VENV/bin/kohakuriver.runner" --config "$W/runner_config.py" >> "$W/py-runner.log" 2>&1 & PY_PID=$!; }
start_ours() { "$BIN" runner --config "$W/runner_config.py" >> "$W/runner.log" 2>&1 & OUR_PID=$!; }
wait_online() { for _ in $(seq 1 40); do curl -s 127.0.0.1:18800/api/nodes | grep -q '"status":"online"' && return 0; sleep 1; done; echo "node not online"; }
status() { curl -s "127.0.0.1:18800/api/status/$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d.get("exit_code"), repr(d.get("error_message")))'; }
field() { curl -s "127.0.0.1:18800/api/status/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$2"; }
submit() { curl -s -X POST 127.0.0.1:18800/api/submit -H 'content-type: application/json' -d "$1" |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["task_ids"][0])'; }
store() { python3 - "$W/local/.kohakuriver/runner-state.db" <<'PY'
import sqlite3, sys
try:
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    print(sorted(bytes(k).decode() for (k,) in db.execute("SELECT key FROM running_tasks")))
except Exception as e:
    print("unreadable:", e)
PY
}
containers() { docker ps -a --filter name=kohakuriver- --format '{{.Names}} {{.Status}}' | sort; }
ssh-keygen -q -t ed25519 -N "" -f "$W/id"
PUB=$(cat "$W/id.pub")
SSHO=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR -o IdentitiesOnly=yes)
login() { for _ in $(seq 1 100); do ssh "${SSHO[@]}" -i "$W/id" -p "$1" root@127.0.0.1 "$2" && return 0; sleep 0.3; done; echo "login failed"; }
NODE=$(hostname)

say "== 1. the Python runner"
start_python; wait_online
T1=$(submit '{"command":"sh","arguments":["-c","echo before; sleep 25; echo after; exit 7"],"registry_image":"kr-test/busybox:test","required_cores":0,"targets":["'"$NODE"'"]}')
T2=$(submit '{"command":"sleep","arguments":["600"],"registry_image":"kr-test/busybox:test","required_cores":0,"targets":["'"$NODE"'"]}')
V=$(curl -s -X POST 127.0.0.1:18800/api/vps/create -H 'content-type: application/json' \
  -d '{"ssh_key_mode":"upload","ssh_public_key":"'"$PUB"'","registry_image":"kr-test/debian:bookworm","target_hostname":"'"$NODE"'","required_cores":1}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
sleep 8
P1=$(field "$V" ssh_port)
say "task T1 $T1: $(status "$T1")"; say "task T2 $T2: $(status "$T2")"; say "VPS V $V: $(status "$V") ssh_port $P1"
say "VPS login: $(login "$P1" 'echo made-under-python > /root/switch.txt; echo ok')"
say "Python store keys: $(store)"
say "containers:"; containers

say "== 2. the switch: SIGKILL to the Python runner alone (KillMode=process)"
kill -KILL "$PY_PID"; wait "$PY_PID" 2>/dev/null; PY_PID=""
say "containers after:"; containers
start_ours; sleep 3; wait_online
say "our runner log (adoption):"; grep -E "First start|Python runner state store|Adopted|recovered|Removed the|reconciliation done" "$W/runner.log"

say "== 3. under this runner"
for _ in $(seq 1 60); do [ "$(field "$T1" status)" != running ] && break; sleep 1; done
say "task T1 $T1: $(status "$T1") / stdout: $(tr '\n' ' ' < "$W/share/logs/$T1/stdout.log")"
say "VPS V: $(status "$V"), login: $(login "$(field "$V" ssh_port)" 'cat /root/switch.txt')"
curl -s -X POST "127.0.0.1:18800/api/vps/restart/$V" >/dev/null
for _ in $(seq 1 60); do sleep 1; [ "$(field "$V" status)" = running ] && [ "$(field "$V" ssh_port)" != "$P1" ] && break; done
say "VPS after the host's restart: $(status "$V") ssh_port $(field "$V" ssh_port), file: $(login "$(field "$V" ssh_port)" 'cat /root/switch.txt')"
curl -s -X POST "127.0.0.1:18800/api/kill/$T2" >/dev/null; sleep 3
say "task T2 killed through the host: $(status "$T2")"
T3=$(submit '{"command":"sleep","arguments":["600"],"registry_image":"kr-test/busybox:test","required_cores":0,"targets":["'"$NODE"'"]}')
sleep 5
say "task T3 $T3 (started by this runner): $(status "$T3")"
say "Python store keys now: $(store)"

say "== 4. rollback: this runner stopped (SIGTERM), the Python runner started again"
kill -TERM "$OUR_PID"; wait "$OUR_PID" 2>/dev/null; OUR_PID=""
say "containers:"; containers
start_python; sleep 3; wait_online; sleep 12
say "Python runner log (startup check):"; grep -iE "startup|orphan|stale|adopt|recover|not in store|kohakuriver-task|kohakuriver-vps" "$W/py-runner.log" | tail -20
say "task T1: $(status "$T1")"; say "task T2: $(status "$T2")"; say "task T3: $(status "$T3")"
say "VPS V: $(status "$V"), login: $(login "$(field "$V" ssh_port)" 'cat /root/switch.txt')"
say "containers:"; containers

say "== cleanup"
curl -s -X POST "127.0.0.1:18800/api/vps/stop/$V" >/dev/null; sleep 5
curl -s -X DELETE "127.0.0.1:18801/api/vps/snapshots/$V" >/dev/null
docker rm -f "kohakuriver-task-$T3" "kohakuriver-vps-$V" >/dev/null 2>&1
docker images --format '{{.Repository}}:{{.Tag}}' "kohakuriver-snapshot/vps-$V" | xargs -r docker rmi -f >/dev/null 2>&1
say "work dir: $W"
