#!/usr/bin/env bash
# Manual check (issue 18): switch a node from the unmodified Python runner to
# this runner and back, with the unmodified upstream host. Not part of CI
# (the upstream source is not vendored here). Results: docs/interop.md.
#
#   flock -x /tmp/kr-e2e.lock scripts/upstream-switch-interop.sh SRC [VENV]
#
# SRC: an upstream KohakuRiver source tree; VENV: a virtualenv that already
# has it installed (else one is made, as scripts/upstream-interop.sh does).
# The Python runner's startup check stops every kohakuriver-task-* container
# it does not know on this dockerd: hold the e2e lock EXCLUSIVELY.
# Needs dockerd, kr-test/busybox:test, kr-test/debian:bookworm and `ssh`.
#
# Tasks and the VPS name an environment (`container_name`), not a
# `registry_image`: for a registry image the upstream host sends
# `container_name: null`, which the upstream runner's request model rejects
# (422; the task stays `assigning` at the host). The environments are the
# local test images tagged `kohakuriver/<env>:base` (no tarball in the shared
# directory: both runners then use the local image). The Python runner's
# VPS command runs `apt update && apt install -y openssh-server` first (the
# Debian mirror must be reachable from a container; sshd is already in the
# image).
#
# 1. Python runner up; a Docker VPS (SSH, terminal, filesystem API), then a
#    task `sleep 25; exit 7` and a long task, started through the host.
# 2. The switch, as the Python unit's KillMode=process stops it: SIGTERM to
#    the runner process alone, SIGKILL to it alone after 10 s (the unit's
#    TimeoutStopSec shortened); this runner started on the same config file.
# 3. Under this runner: the adopted task's end, the VPS (SSH, terminal,
#    filesystem API, the host's restart), the long task killed through the
#    host, a task that runs to its end (drained) and a long one (not drained).
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
docker tag kr-test/busybox:test kohakuriver/kr-busybox:base
docker tag kr-test/debian:bookworm kohakuriver/kr-debian:base
NET_BEFORE=$(docker network ls -q --filter name='^kohakuriver-net$')
# The Python runner makes the VM NAT bridge and its (uncommented) rules at
# every start, VMs or not; removed at the end unless they were there before.
BR_BEFORE=$(ip -o link show kohaku-br0 2>/dev/null)
HOST_PID=""; PY_PID=""; OUR_PID=""; T1=""; T2=""; T3=""; T4=""; V=""
cleanup() {
  kill $PY_PID $OUR_PID 2>/dev/null; wait $PY_PID $OUR_PID 2>/dev/null
  for t in $T1 $T2 $T3 $T4; do docker rm -f "kohakuriver-task-$t" >/dev/null 2>&1; done
  [ -n "$V" ] && docker rm -f "kohakuriver-vps-$V" >/dev/null 2>&1
  # Newest first: a snapshot of a restored VPS is a child of the older one.
  for _ in 1 2 3; do
    [ -n "$V" ] && docker images -q "kohakuriver-snapshot/vps-$V" | awk '!s[$0]++' | xargs -r docker rmi -f >/dev/null 2>&1
  done
  docker rmi kohakuriver/kr-busybox:base kohakuriver/kr-debian:base >/dev/null 2>&1
  [ -z "$NET_BEFORE" ] && docker network rm kohakuriver-net >/dev/null 2>&1
  if [ -z "$BR_BEFORE" ]; then
    iptables -D FORWARD -d 10.200.0.0/24 -j ACCEPT 2>/dev/null
    iptables -D FORWARD -s 10.200.0.0/24 -j ACCEPT 2>/dev/null
    iptables -t nat -D POSTROUTING -s 10.200.0.0/24 ! -d 10.200.0.0/24 -j MASQUERADE 2>/dev/null
    ip link del kohaku-br0 2>/dev/null
  fi
  kill $HOST_PID 2>/dev/null; wait $HOST_PID 2>/dev/null
  return 0
}
trap cleanup EXIT
"$VENV/bin/kohakuriver.host" --config "$W/host_config.py" > "$W/host.log" 2>&1 &
HOST_PID=$!
sleep 6
start_python() { setsid "$VENV/bin/kohakuriver.runner" --config "$W/runner_config.py" >> "$W/py-runner.log" 2>&1 & PY_PID=$!; }
start_ours() { "$BIN" runner --config "$W/runner_config.py" >> "$W/runner.log" 2>&1 & OUR_PID=$!; }
wait_online() { for _ in $(seq 1 40); do curl -s 127.0.0.1:18800/api/nodes | grep -q '"status":"online"' && return 0; sleep 1; done; echo "node not online"; }
status() { curl -s "127.0.0.1:18800/api/status/$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d.get("exit_code"), repr(d.get("error_message")))'; }
field() { curl -s "127.0.0.1:18800/api/status/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$2"; }
wait_status() { for _ in $(seq 1 "$3"); do [ "$(field "$1" status)" = "$2" ] && return 0; sleep 1; done; return 1; }
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
containers() { docker ps -a --filter name=kohakuriver- --format '{{.Names}} {{.Status}} labels={{.Labels}}' | sort | sed 's/^/    /'; }
ssh-keygen -q -t ed25519 -N "" -f "$W/id"
PUB=$(cat "$W/id.pub")
SSHO=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR -o IdentitiesOnly=yes)
login() { for _ in $(seq 1 100); do ssh "${SSHO[@]}" -i "$W/id" -p "$1" root@127.0.0.1 "$2" 2>/dev/null && return 0; sleep 0.3; done; echo "login failed"; }
# The VPS's terminal and filesystem API through the host's proxies.
vps_check() { "$VENV/bin/python" - "$1" "$2" <<'PY'
import asyncio, json, sys, urllib.request
import websockets
tid, mark = sys.argv[1], sys.argv[2]
H = "127.0.0.1:18800"
def api(method, path, body=None):
    req = urllib.request.Request(f"http://{H}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200]
async def terminal():
    async with websockets.connect(f"ws://{H}/ws/task/{tid}/terminal") as ws:
        # The Python runner takes the first message as the initial resize
        # (and drops it if it is anything else): resize first, as its web UI.
        await ws.send(json.dumps({"type": "resize", "rows": 30, "cols": 90}))
        await ws.send(json.dumps({"type": "input", "data": "echo term-$((40+2)) $(cat /root/switch.txt)\n"}))
        out = ""
        while "term-42" not in out:
            out += json.loads(await asyncio.wait_for(ws.recv(), 20)).get("data", "")
        return "term-42 seen"
try:
    t = asyncio.run(terminal())
except Exception as e:
    t = f"FAILED {e!r}"
w = api("POST", f"/api/fs/{tid}/write", {"path": f"/root/fs-{mark}.txt", "content": mark})
r = api("GET", f"/api/fs/{tid}/read?path=/root/fs-{mark}.txt")
ok = r[0] == 200 and r[1].get("content") == mark
print(f"terminal: {t}; fs write {w[0]}, read back {r[0]} {'same' if ok else r[1]}")
PY
}
NODE=$(hostname)
ENVT='"container_name":"kr-busybox","required_cores":0,"targets":["'"$NODE"'"]'

say "== 1. the Python runner"
start_python; wait_online
V=$(curl -s -X POST 127.0.0.1:18800/api/vps/create -H 'content-type: application/json' \
  -d '{"ssh_key_mode":"upload","ssh_public_key":"'"$PUB"'","container_name":"kr-debian","target_hostname":"'"$NODE"'","required_cores":1}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
wait_status "$V" running 60
P1=$(field "$V" ssh_port)
say "VPS V $V: $(status "$V") ssh_port $P1"
say "VPS login: $(login "$P1" 'echo made-under-python > /root/switch.txt; echo ok')"
say "VPS $(vps_check "$V" python)"
T1=$(submit '{"command":"sh","arguments":["-c","echo before; sleep 25; echo after; exit 7"],'"$ENVT"'}')
T2=$(submit '{"command":"sleep","arguments":["600"],'"$ENVT"'}')
wait_status "$T1" running 30; wait_status "$T2" running 30
say "task T1 $T1: $(status "$T1")"; say "task T2 $T2: $(status "$T2")"
say "Python store keys: $(store)"
say "containers:"; containers

say "== 2. the switch: SIGTERM, then SIGKILL after 10 s, to the Python runner alone (KillMode=process)"
kill -TERM "$PY_PID"
for _ in $(seq 1 10); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 1; done
if kill -0 "$PY_PID" 2>/dev/null; then say "still up after SIGTERM: SIGKILL"; kill -KILL "$PY_PID"; else say "exited on SIGTERM"; fi
wait "$PY_PID" 2>/dev/null; PY_PID=""
say "containers after:"; containers
start_ours; sleep 3; wait_online
say "our runner log (adoption):"; grep -E "First start|Python runner state store|Adopted|adopt|recovered|Removed the|Could not remove|reconciliation done" "$W/runner.log" | sed 's/^/    /'

say "== 3. under this runner"
for _ in $(seq 1 60); do [ "$(field "$T1" status)" != running ] && break; sleep 1; done
say "task T1 $T1: $(status "$T1") / stdout: $(tr '\n' ' ' < "$W/share/logs/$T1/stdout.log")"
say "VPS V: $(status "$V"), login: $(login "$(field "$V" ssh_port)" 'cat /root/switch.txt')"
say "VPS $(vps_check "$V" ours)"
curl -s -X POST "127.0.0.1:18800/api/vps/restart/$V" >/dev/null
for _ in $(seq 1 60); do sleep 1; [ "$(field "$V" status)" = running ] && [ "$(field "$V" ssh_port)" != "$P1" ] && break; done
say "VPS after the host's restart: $(status "$V") ssh_port $(field "$V" ssh_port), file: $(login "$(field "$V" ssh_port)" 'cat /root/switch.txt')"
say "VPS $(vps_check "$V" restarted)"
say "VPS sshd after the restart from the snapshot: $(login "$(field "$V" ssh_port)" '/usr/sbin/sshd -T | grep -iE "^(passwordauthentication|permitemptypasswords) " | tr "\n" " "; passwd -S root')"
curl -s -X POST "127.0.0.1:18800/api/kill/$T2" >/dev/null; sleep 3
say "task T2 killed through the host: $(status "$T2")"
T3=$(submit '{"command":"sleep","arguments":["600"],'"$ENVT"'}')
T4=$(submit '{"command":"sh","arguments":["-c","sleep 2; exit 3"],'"$ENVT"'}')
wait_status "$T3" running 30; wait_status "$T4" failed 30
say "task T3 $T3 (started by this runner, still running at rollback): $(status "$T3")"
say "task T4 $T4 (started by this runner, drained: ended before rollback): $(status "$T4")"
say "Python store keys now: $(store)"

say "== 4. rollback: this runner stopped (SIGTERM), the Python runner started again"
kill -TERM "$OUR_PID"; wait "$OUR_PID" 2>/dev/null; OUR_PID=""
say "containers:"; containers
start_python; sleep 3; wait_online; sleep 15
say "Python runner log (second start):"
sed -n '/Startup check\|startup check/,$p' "$W/py-runner.log" | grep -iE "startup|orphan|stale|adopt|recover|not in store|kohakuriver-task|kohakuriver-vps|Reporting status|Task [0-9]" | grep -v heartbeat | tail -20 | sed 's/^/    /'
say "task T1: $(status "$T1")"; say "task T2: $(status "$T2")"
say "task T3: $(status "$T3")"; say "task T4: $(status "$T4")"
say "VPS V: $(status "$V") ssh_port $(field "$V" ssh_port), login: $(login "$(field "$V" ssh_port)" 'cat /root/switch.txt')"
say "VPS $(vps_check "$V" rollback)"
say "Python store keys: $(store)"
say "containers:"; containers
curl -s -X POST "127.0.0.1:18800/api/kill/$T3" >/dev/null; sleep 3
say "task T3 killed through the host after rollback: $(status "$T3")"
curl -s -X POST "127.0.0.1:18800/api/vps/stop/$V" >/dev/null; sleep 8
say "VPS stopped through the host under the Python runner: $(status "$V") / containers: $(docker ps -a -q --filter name="kohakuriver-vps-$V" | wc -l)"
say "work dir: $W"
