#!/usr/bin/env bash
# Manual interoperability check of QEMU VM VPSes (issue 10) against the
# unmodified upstream Python host. Not part of CI (the upstream source is not
# vendored here). Run as root (network namespace, TAP, bridge):
#
#   scripts/upstream-vm-interop.sh /path/to/KohakuRiver-source
#
# Safety (vm.md §15.4): the runner, and so every QEMU it starts, runs inside
# a network namespace of this script's own with no default route; a veth
# pair links it to this machine (OUTER on this side, INNER inside). The
# upstream host runs here, bound to OUTER; the runner's HOST_ADDRESS is
# OUTER and it registers with INNER (the source address towards the host),
# which is where the host then calls it.
#
# Through the host's own API: the node's vm_capable and images, a VPS with
# vps_backend "qemu" and an uploaded key, the host's status until "running"
# (the guest agent's phone-home, relayed by the runner), SSH login through
# the host's SSH proxy (REQUEST_TUNNEL protocol, as `kohakuriver ssh` does)
# and directly on the runner's ssh_port, the terminal, the filesystem API and
# a forwarded TCP port through the host's proxies, the host's VM instance
# list, the host's restart (QMP reset) and stop; then that no QEMU, TAP or
# QMP socket is left in the namespace.
#
# Needs qemu-system-x86_64, qemu-img, genisoimage or mkisofs (as the
# runner's VM tests), `ssh`, and the test image that
# tests/images/build-vm-image.sh builds (KR_VM_IMAGE, default
# /var/cache/kr-test/vm-images/debian-12-kr.qcow2). Runs under TCG: a boot
# takes minutes. KR_BINARY picks the runner binary (default build/kohakuriver);
# KR_INTEROP_VENV reuses a venv that already has upstream installed.
set -euo pipefail
SRC=${1:?path to an upstream KohakuRiver source tree}
cd "$(dirname "$0")/.."
BIN=${KR_BINARY:-$PWD/build/kohakuriver}
IMAGE=${KR_VM_IMAGE:-/var/cache/kr-test/vm-images/debian-12-kr.qcow2}
BOOT_LIMIT=${KR_VM_BOOT_LIMIT:-1500}
W=$(mktemp -d /tmp/kr-vm-interop.XXXX)
TAG=$(printf '%04x' $((RANDOM % 65536)))
NS=krvmi-$TAG VETH=krvi$TAG
OUTER=10.254.$((0x${TAG:0:2})).1 INNER=10.254.$((0x${TAG:0:2})).2
HP=18900 RP=18901 PP=18902
H=$OUTER:$HP

if [ -n "${KR_INTEROP_VENV:-}" ]; then
  VENV=$KR_INTEROP_VENV
else
  VENV=$W/venv
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$SRC" "fastapi==0.115.12"   # newer FastAPI dropped add_event_handler
fi

HOST_PID= RUNNER_PID=
cleanup() {
  set +e
  [ -n "$RUNNER_PID" ] && kill "$RUNNER_PID" 2>/dev/null
  [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null
  for f in "$W"/vm-instances/*/qemu.pid; do     # only QEMUs of this work dir
    [ -f "$f" ] || continue
    p=$(cat "$f"); grep -qa "$W" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p"
  done
  sleep 1
  ip netns del "$NS" 2>/dev/null; ip link del "$VETH" 2>/dev/null
  echo "work dir: $W"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip link add "$VETH" type veth peer name inner0 netns "$NS"
ip addr add "$OUTER/30" dev "$VETH"; ip link set "$VETH" up
ip netns exec "$NS" ip addr add "$INNER/30" dev inner0
ip netns exec "$NS" ip link set inner0 up
echo "namespace:      $NS ($OUTER <-> $INNER), routes inside: $(ip netns exec "$NS" ip -4 route | tr '\n' ';')"

mkdir -p "$W/share/logs" "$W/local" "$W/home" "$W/vm-images" "$W/vm-instances" "$W/vm-run"
ln -s "$IMAGE" "$W/vm-images/debian-12-kr.qcow2"
cat > "$W/host_config.py" <<PY
from kohakuengine import Config
HOST_BIND_IP = "$OUTER"
HOST_PORT = $HP
HOST_SSH_PROXY_PORT = $PP
SHARED_DIR = "$W/share"
DB_FILE = "$W/kr.db"
def config_gen():
    return Config.from_globals()
PY
cat > "$W/runner_config.py" <<PY
RUNNER_PORT = $RP
HOST_ADDRESS = "$OUTER"
HOST_PORT = $HP
SHARED_DIR = "$W/share"
LOCAL_TEMP_DIR = "$W/local"
STATE_DIR = "$W/state"
VM_QEMU_ACCEL = "tcg"
VM_FIRMWARE = ""
VM_IMAGES_DIR = "$W/vm-images"
VM_INSTANCES_DIR = "$W/vm-instances"
VM_RUN_DIR = "$W/vm-run"
VM_CLOUD_INIT_TIMEOUT_SECONDS = $BOOT_LIMIT
VM_POWERDOWN_TIMEOUT_SECONDS = 60
PY
"$VENV/bin/kohakuriver.host" --config "$W/host_config.py" > "$W/host.log" 2>&1 &
HOST_PID=$!
for _ in $(seq 1 30); do curl -s -o /dev/null "$H/api/nodes" && break; sleep 1; done
HOME=$W/home ip netns exec "$NS" "$BIN" runner --config "$W/runner_config.py" > "$W/runner.log" 2>&1 &
RUNNER_PID=$!
for _ in $(seq 1 30); do
  curl -s "$H/api/nodes" | grep -q '"status":"online"' && break; sleep 1
done
NODE=$(hostname)
py() { "$VENV/bin/python" -c "$@"; }
# The host takes vm_capable from heartbeats only (its /api/register has no
# such field): until the first one it answers a qemu create with 503.
for _ in $(seq 1 30); do curl -s "$H/api/nodes" | grep -q '"vm_capable":true' && break; sleep 1; done
echo "node:           $(curl -s "$H/api/nodes" | py 'import json,sys
for n in json.load(sys.stdin): print(n["hostname"], n["url"], n["status"], "vm_capable=%s" % n.get("vm_capable"), "vfio_gpus=%s" % n.get("vfio_gpus"))')"
echo "vm images:      $(curl -s "$H/api/vm/images/$NODE")"

ssh-keygen -q -t ed25519 -N "" -f "$W/id"
PUB=$(cat "$W/id.pub")
cat > "$W/proxy.py" <<'PY'
# ProxyCommand speaking the host SSH proxy's protocol (what `kohakuriver ssh`'s
# client proxy sends): "REQUEST_TUNNEL <task_id>\n", then "SUCCESS\n" or "ERROR ...".
import os, select, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(f"REQUEST_TUNNEL {sys.argv[3]}\n".encode())
line = b""
while not line.endswith(b"\n"):
    c = s.recv(1)
    if not c: break
    line += c
if not line.startswith(b"SUCCESS"):
    sys.stderr.write(f"host proxy: {line!r}\n"); sys.exit(1)
s.settimeout(None)
while True:
    r, _, _ = select.select([0, s], [], [])
    if 0 in r:
        d = os.read(0, 65536)
        if not d: s.shutdown(socket.SHUT_WR)
        else: s.sendall(d)
    if s in r:
        d = s.recv(65536)
        if not d: break
        os.write(1, d)
PY
SSHO=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR -o IdentitiesOnly=yes -i "$W/id")
field() { curl -s "$H/api/status/$1" | py 'import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1]))' "$2"; }

# ---- create through the host
T0=$(date +%s)
REPLY=$(curl -s -w ' HTTP %{http_code}' -X POST "$H/api/vps/create" -H 'content-type: application/json' \
  -d '{"vps_backend":"qemu","vm_image":"debian-12-kr","vm_disk_size":"4G","memory_mb":1024,"ssh_key_mode":"upload","ssh_public_key":"'"$PUB"'","target_hostname":"'"$NODE"'","required_cores":1}')
echo "vps create:     $REPLY ($(( $(date +%s) - T0 )) s)"
V=$(echo "$REPLY" | sed 's/ HTTP [0-9]*$//' | py 'import json,sys; print(json.load(sys.stdin)["task_id"])')
echo "status after:   $(field "$V" status) / ssh_port $(field "$V" ssh_port) / vm_ip $(field "$V" vm_ip)"
# The host shows "running" a few seconds after QEMU starts: it promotes an
# "assigning" task listed in the runner's heartbeat running_tasks (vm.md §9
# "host interplay"); the provisioning message stays until the phone-home.
for _ in $(seq 1 120); do
  s=$(field "$V" status); [ "$s" = running ] || [ "$s" = failed ] || [ "$s" = stopped ] && break; sleep 1
done
echo "host status:    $(field "$V" status) after $(( $(date +%s) - T0 )) s / error_message: $(field "$V" error_message)"
for _ in $(seq 1 "$BOOT_LIMIT"); do
  s=$(field "$V" status); m=$(field "$V" error_message)
  { [ "$s" = running ] && [[ "$m" != Provisioning* ]]; } || [ "$s" = failed ] || [ "$s" = stopped ] && break; sleep 1
done
echo "phone-home:     host status $(field "$V" status) / error_message: $(field "$V" error_message) after $(( $(date +%s) - T0 )) s"
SP=$(field "$V" ssh_port)
login_proxy() {
  ssh "${SSHO[@]}" -o ProxyCommand="$VENV/bin/python $W/proxy.py $OUTER $PP $V" -p "$SP" "$1@vps-$V" "$2"
}
ok=
for _ in $(seq 1 60); do login_proxy root true 2>/dev/null && ok=1 && break; sleep 3; done
echo "ssh via host:   $(login_proxy root 'echo $(hostname) $(id -un)' 2>&1) ($(( $(date +%s) - T0 )) s after create)"
echo "ssh kohaku:     $(login_proxy kohaku 'id -un' 2>&1)"
echo "ssh direct:     $(ssh "${SSHO[@]}" -p "$SP" "root@$INNER" 'uname -r' 2>&1) (runner's ssh_port on $INNER)"
share() { tr '\0' '\n' < "/proc/$(cat "$W/vm-instances/$V/qemu.pid")/cmdline" | grep fs_local; }
echo "9p share:       $(share) (issue 16: in the instance dir)"
echo "guest share:    $(login_proxy root "grep -c ' /local_temp 9p ' /proc/mounts; echo interop > /local_temp/interop.txt" 2>&1)" \
     "/ on the node: $(cat "$W/vm-instances/$V/local_temp/interop.txt" 2>&1) / in LOCAL_TEMP_DIR: $(ls "$W/local" | tr '\n' ' ')"
echo "runner vm:      $(curl -s "$INNER:$RP/api/vps/$V/vm-status")"

# ---- terminal, filesystem API and a forwarded port through the host's proxies
"$VENV/bin/python" - "$H" "$V" "$W/id" "$OUTER" "$PP" "$W/proxy.py" "$VENV/bin/python" <<'PY'
import asyncio, base64, json, os, struct, subprocess, sys, urllib.request
import websockets
H, tid, key, outer, pp, proxy, vpy = sys.argv[1:8]

def api(method, path, body=None):
    req = urllib.request.Request(f"http://{H}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()[:300]

async def terminal():
    async with websockets.connect(f"ws://{H}/ws/task/{tid}/terminal") as ws:
        await ws.send(json.dumps({"type": "resize", "rows": 30, "cols": 90}))
        await ws.send(json.dumps({"type": "input", "data": "echo T-$(hostname)-$(stty size | tr ' ' x)\n"}))
        out = ""
        while f"T-kohaku-vm-" not in out or "-30x90" not in out.split("T-kohaku-vm-")[-1]:
            m = json.loads(await asyncio.wait_for(ws.recv(), 60))
            out += m.get("data", "")
        line = [l for l in out.splitlines() if l.startswith("T-kohaku-vm-")][-1]
        print("terminal:      ", repr(line.strip()))

ECHO = ("import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 7000)); s.listen(4)\nwhile True:\n    c, _ = s.accept()\n"
        "    d = c.recv(65536)\n    c.sendall(b'guest:' + d)\n    c.close()\n")

async def forward():
    async with websockets.connect(f"ws://{H}/ws/forward/{tid}/7000?proto=tcp") as ws:
        first = await asyncio.wait_for(ws.recv(), 30)
        # tunnel frames: type, proto, client id, port (tunnel-overlay.md §1)
        await ws.send(struct.pack(">BBIH", 1, 0, 1, 7000))
        got = []
        while True:
            m = await asyncio.wait_for(ws.recv(), 30)
            t = m[0]
            got.append(t)
            if t == 2:
                await ws.send(struct.pack(">BBIH", 3, 0, 1, 7000) + b"hello")
            elif t == 3:
                print("forward tcp:   ", repr(first), "then CONNECTED; reply", repr(m[8:]))
                return
            elif t in (4, 5):
                print("forward tcp:   ", repr(first), "frames", got, repr(m[8:]))
                return

try:
    asyncio.run(terminal())
except Exception as e:
    print("terminal:       FAILED", type(e).__name__, e)
st, rep = api("POST", f"/api/fs/{tid}/write", {"path": "/root/kr/interop.txt", "content": "through the host\n"})
print("fs write:      ", st, rep)
st, rep = api("GET", f"/api/fs/{tid}/read?path=/root/kr/interop.txt")
print("fs read:       ", st, rep if st != 200 else repr(rep["content"]))
data = os.urandom(1024 * 1024)
st, rep = api("POST", f"/api/fs/{tid}/write", {"path": "/root/kr/blob.bin",
              "content": base64.b64encode(data).decode(), "encoding": "base64"})
st2, rep2 = api("GET", f"/api/fs/{tid}/read?path=/root/kr/blob.bin&encoding=base64")
print("fs 1 MiB:      ", st, st2, "byte-exact" if st2 == 200 and base64.b64decode(rep2["content"]) == data else rep2)
st, rep = api("GET", f"/api/fs/{tid}/list?path=/root/kr")
print("fs list:       ", st, sorted((e["name"], e["size"]) for e in rep["entries"]) if st == 200 else rep)
ssh = ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
       "-o", "LogLevel=ERROR", "-o", f"ProxyCommand={vpy} {proxy} {outer} {pp} {tid}", f"root@vps-{tid}"]
r = subprocess.run(ssh + ["cat /root/kr/interop.txt"], capture_output=True, text=True, timeout=60)
print("fs via ssh:    ", repr(r.stdout), r.stderr.strip())
st, _ = api("POST", f"/api/fs/{tid}/write", {"path": "/root/kr/echo.py", "content": ECHO})
r = subprocess.run(ssh + ["nohup python3 /root/kr/echo.py >/dev/null 2>&1 & sleep 2; echo started"],
                   capture_output=True, text=True, timeout=60)
try:
    asyncio.run(forward())
except Exception as e:
    print("forward tcp:    FAILED", type(e).__name__, e)
PY

echo "vm-instances:   $(curl -s "$H/api/vps/vm-instances" | head -c 700)"

# ---- restart through the host (QMP reset on the runner's side)
N_BEFORE=$(grep -c "phoned home" "$W/runner.log" || true)
T1=$(date +%s)
echo "vps restart:    $(curl -s -w ' HTTP %{http_code}' -X POST "$H/api/vps/restart/$V")"
for _ in $(seq 1 "$BOOT_LIMIT"); do
  [ "$(grep -c "phoned home" "$W/runner.log" || true)" -gt "$N_BEFORE" ] && break; sleep 1
done
echo "after restart:  host status $(field "$V" status); phone-home again after $(( $(date +%s) - T1 )) s"
for _ in $(seq 1 60); do login_proxy root true 2>/dev/null && break; sleep 3; done
echo "ssh again:      $(login_proxy root 'cat /root/kr/interop.txt' 2>&1)"
echo "share again:    $(share) / guest: $(login_proxy root 'cat /local_temp/interop.txt' 2>&1)"

# ---- stop through the host; nothing left in the namespace
PID=$(cat "$W"/vm-instances/"$V"/qemu.pid 2>/dev/null || echo none)
echo "vps stop:       $(curl -s -w ' HTTP %{http_code}' -X POST "$H/api/vps/stop/$V")"
for _ in $(seq 1 120); do [ -d "/proc/$PID" ] || break; sleep 1; done
sleep 2
echo "host status:    $(field "$V" status) / error: $(field "$V" error_message)"
echo "left behind:    qemu pid $PID alive: $([ -d "/proc/$PID" ] && echo yes || echo no);" \
     "taps: $(ip netns exec "$NS" ip -br link | awk '$1 ~ /^tap/' | wc -l);" \
     "qmp sockets: $(ls "$W/vm-run" | wc -l); instance dir: $(ls "$W/vm-instances/$V" 2>/dev/null | tr '\n' ' ')"
echo "instance del:   $(curl -s -w ' HTTP %{http_code}' -X DELETE "$H/api/vps/vm-instances/$V") / dir left: $([ -e "$W/vm-instances/$V" ] && echo yes || echo no)"
echo "runner log (VM lines):"; grep -iE "vm|qemu|phone|heartbeat" "$W/runner.log" | tail -25 | sed 's/^/  /'
