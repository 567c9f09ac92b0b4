#!/usr/bin/env bash
# Manual interoperability check against the unmodified upstream Python host.
# Not part of CI (the upstream source is not vendored here).
#
#   scripts/upstream-interop.sh /path/to/KohakuRiver-source
#
# Installs upstream into a throw-away venv, starts its host on 127.0.0.1:18800
# and this runner against it, then drives the host's own API: a registry-image
# task (container_name null), pause/resume/kill of a running task, and an
# environment task without tarball; then a Docker VPS (key mode upload):
# create, SSH login through the reported port, the host's restart (stop +
# create with ssh_key_mode none: snapshot restored, still key-only), stop;
# then the terminal, filesystem API and watch through the host's proxies.
# Needs dockerd, kr-test/busybox:test (tests/images/build-test-images.sh),
# kr-test/debian:bookworm (tests/images/build-debian-image.sh) and `ssh`.
# Hold the e2e lock exclusively: flock -x /tmp/kr-e2e.lock scripts/upstream-interop.sh SRC
#
# KR_INTEROP_IP=10.252.0.1 runs host and runner on that (non-loopback)
# address instead of 127.0.0.1, e.g. one on a veth made for the check, so
# that the runner sees the host's calls from a non-loopback source
# (source-address policy); KR_INTEROP_RUNNER_EXTRA adds lines to the
# runner's config (e.g. 'API_ALLOWED_CLIENTS = ["10.252.0.1"]').
set -euo pipefail
IP=${KR_INTEROP_IP:-127.0.0.1}
SRC=${1:?path to an upstream KohakuRiver source tree}
cd "$(dirname "$0")/.."
BIN=$PWD/build/kohakuriver
W=$(mktemp -d /tmp/kr-interop.XXXX)
python3 -m venv "$W/venv"
"$W/venv/bin/pip" install -q "$SRC" "fastapi==0.115.12"   # newer FastAPI dropped add_event_handler
mkdir -p "$W/share/logs" "$W/local"
cat > "$W/host_config.py" <<PY
from kohakuengine import Config
HOST_BIND_IP = "$IP"
HOST_PORT = 18800
HOST_SSH_PROXY_PORT = 18802
SHARED_DIR = "$W/share"
DB_FILE = "$W/kr.db"
def config_gen():
    return Config.from_globals()
PY
cat > "$W/runner_config.py" <<PY
RUNNER_PORT = 18801
HOST_ADDRESS = "$IP"
HOST_PORT = 18800
SHARED_DIR = "$W/share"
LOCAL_TEMP_DIR = "$W/local"
STATE_DIR = "$W/state"
${KR_INTEROP_RUNNER_EXTRA:-}
PY
"$W/venv/bin/kohakuriver.host" --config "$W/host_config.py" > "$W/host.log" 2>&1 &
HOST_PID=$!
trap 'kill $HOST_PID $RUNNER_PID 2>/dev/null || true' EXIT
sleep 6
"$BIN" runner --config "$W/runner_config.py" > "$W/runner.log" 2>&1 &
RUNNER_PID=$!
NODE=$(hostname)
for _ in $(seq 1 30); do
  curl -s $IP:18800/api/nodes | grep -q '"status":"online"' && break; sleep 1
done
status() { curl -s "$IP:18800/api/status/$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["exit_code"], d["error_message"])'; }
submit() { curl -s -X POST $IP:18800/api/submit -H 'content-type: application/json' -d "$1" |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["task_ids"][0])'; }
T1=$(submit '{"command":"echo","arguments":["hello"],"registry_image":"kr-test/busybox:test","required_cores":0,"targets":["'"$NODE"'"]}')
T2=$(submit '{"command":"sleep","arguments":["300"],"registry_image":"kr-test/busybox:test","required_cores":0,"targets":["'"$NODE"'"]}')
T3=$(submit '{"command":"echo","arguments":["x"],"required_cores":0,"targets":["'"$NODE"'"]}')
sleep 6
echo "registry task:  $(status "$T1") / stdout: $(cat "$W/share/logs/$T1/stdout.log")"
curl -s -X POST "$IP:18800/api/command/$T2/pause" >/dev/null; echo "paused task:    $(status "$T2")"
curl -s -X POST "$IP:18800/api/command/$T2/resume" >/dev/null; echo "resumed task:   $(status "$T2")"
curl -s -X POST "$IP:18800/api/kill/$T2" >/dev/null; sleep 2; echo "killed task:    $(status "$T2")"
echo "no-tarball env: $(status "$T3")"

# ---- Docker VPS through the host's own API
ssh-keygen -q -t ed25519 -N "" -f "$W/id"
PUB=$(cat "$W/id.pub")
SSHO=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR -o IdentitiesOnly=yes)
vps_field() { curl -s "$IP:18800/api/status/$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1]))' "$2"; }
login() { for _ in $(seq 1 100); do ssh "${SSHO[@]}" -i "$W/id" -p "$1" root@127.0.0.1 "$2" && return 0; sleep 0.2; done; return 1; }
V=$(curl -s -X POST $IP:18800/api/vps/create -H 'content-type: application/json' \
  -d '{"ssh_key_mode":"upload","ssh_public_key":"'"$PUB"'","registry_image":"kr-test/debian:bookworm","target_hostname":"'"$NODE"'","required_cores":1}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
sleep 2
P1=$(vps_field "$V" ssh_port)
echo "vps created:    $(status "$V") / ssh_port $P1"
echo "vps login:      $(login "$P1" 'echo interop-file > /root/interop.txt; echo ok')"
curl -s -X POST "$IP:18800/api/vps/restart/$V" >/dev/null
for _ in $(seq 1 60); do sleep 1; [ "$(vps_field "$V" status)" = running ] && [ "$(vps_field "$V" ssh_port)" != "$P1" ] && break; done
P2=$(vps_field "$V" ssh_port)
echo "vps restarted:  $(status "$V") / ssh_port $P2"
echo "after restart:  file: $(login "$P2" 'cat /root/interop.txt') / $(login "$P2" '/usr/sbin/sshd -T | grep -i ^passwordauthentication')"
echo "snapshots:      $(curl -s "$IP:18801/api/vps/snapshots/$V" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
curl -s -X POST "$IP:18800/api/vps/stop/$V" >/dev/null; sleep 3
echo "vps stopped:    $(status "$V") / container: $(docker ps -a --filter "name=kohakuriver-vps-$V" -q | wc -l)"
curl -s -X DELETE "localhost:18801/api/vps/snapshots/$V" >/dev/null   # leave no snapshot images behind

# Terminal, filesystem API and watch through the host's proxies (issue 7).
T4=$(submit '{"command":"sleep","arguments":["300"],"registry_image":"kr-test/debian:bookworm","required_cores":0,"targets":["'"$NODE"'"]}')
sleep 6
echo "debian task:    $(status "$T4")"
"$W/venv/bin/python" - "$T4" <<'PY'
import asyncio, base64, json, os, sys, urllib.request
import websockets
tid = sys.argv[1]
H = "127.0.0.1:18800"

def api(method, path, body=None):
    req = urllib.request.Request(f"http://{H}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

async def terminal():
    async with websockets.connect(f"ws://{H}/ws/task/{tid}/terminal") as ws:
        await ws.send(json.dumps({"type": "input", "data": "stty size; echo ok-$((40+2))\n"}))
        await ws.send(json.dumps({"type": "resize", "rows": 30, "cols": 90}))
        out = ""
        while "ok-42" not in out:
            m = json.loads(await asyncio.wait_for(ws.recv(), 20))
            out += m.get("data", "")
        print("terminal:      ", "early input ran; ok-42 seen;", "frames were text/JSON")

async def watch():
    async with websockets.connect(f"ws://{H}/ws/fs/{tid}/watch?paths=/shared") as ws:
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "ping"}))
        pong = json.loads(await ws.recv())
        st, _ = api("POST", f"/api/fs/{tid}/write", {"path": "/shared/watched.txt", "content": "x"})
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if m.get("type") == "change" and m["path"] == "/shared/watched.txt":
                break
        print("watch:         ", hello["method"], pong, m)

asyncio.run(terminal())
data = os.urandom(3 * 1024 * 1024)
st, rep = api("POST", f"/api/fs/{tid}/write", {"path": "/tmp/interop dir/blob.bin",
              "content": base64.b64encode(data).decode(), "encoding": "base64"})
print("fs write 3 MiB:", st, rep)
st, rep = api("GET", f"/api/fs/{tid}/read?path=/tmp/interop%20dir/blob.bin&encoding=base64")
print("fs read back:  ", st, "byte-exact" if base64.b64decode(rep["content"]) == data else "DIFFERENT", rep["size"])
# The documented 50 MiB limit, exactly, and one byte over (issue 16 item 6).
big = os.urandom(50 * 1024 * 1024)
st, rep = api("POST", f"/api/fs/{tid}/write", {"path": "/tmp/interop dir/max.bin",
              "content": base64.b64encode(big).decode(), "encoding": "base64"})
print("fs write 50 MiB:", st, rep)
st, rep = api("POST", f"/api/fs/{tid}/write", {"path": "/tmp/interop dir/over.bin",
              "content": base64.b64encode(big + b"x").decode(), "encoding": "base64"})
print("fs write +1 B: ", st, rep)
del big
st, rep = api("GET", f"/api/fs/{tid}/list?path=/tmp/interop%20dir")
print("fs list:       ", st, [(e["name"], e["size"]) for e in rep["entries"]])
st, rep = api("GET", f"/api/fs/{tid}/stat?path=//proc/self/environ")
print("fs //proc:     ", st, rep)
st, rep = api("DELETE", f"/api/fs/{tid}/delete?path=/&recursive=true")
print("fs delete /:   ", st, rep)
asyncio.run(watch())
PY
curl -s -X POST "localhost:18800/api/kill/$T4" >/dev/null
echo "work dir: $W"
