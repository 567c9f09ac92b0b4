#!/usr/bin/env bash
# Boots the test VM image (tests/images/build-vm-image.sh) under TCG inside a
# network namespace without an uplink (vm.md §15.4) with a NoCloud seed that
# carries the project's guest agent, and reports the seconds from launch to
# the agent's phone-home and first heartbeat. A stand-in HTTP server on the
# bridge gateway records the agent's requests. Nothing leaves the namespace.
#
# This is a manual check / measurement until the VM service exists (the seed
# here is written by this script, not by the runner). Needs root.
# Usage: bench/vm_boot_smoke.sh [timeout_seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${1:-900}
IMAGE=$(tests/images/build-vm-image.sh)
NS=krvm-$$
TASK=42
TAP=tap-1ef51593
MAC=52:54:00:1e:f5:15
work=$(mktemp -d /var/tmp/kr-vm-boot.XXXX)
cleanup() {
  [ -f "$work/qemu.pid" ] && kill -9 "$(cat "$work/qemu.pid")" 2>/dev/null || true
  [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  cp "$work/serial.log" /tmp/kr-vm-boot-serial.log 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add kohaku-br0 type bridge
ip -n "$NS" addr add 10.200.0.1/24 dev kohaku-br0
ip -n "$NS" link set kohaku-br0 up
ip -n "$NS" tuntap add dev "$TAP" mode tap
ip -n "$NS" link set "$TAP" master kohaku-br0
ip -n "$NS" link set "$TAP" up

mkdir -p "$work/seed" "$work/shared" "$work/local"
printf 'instance-id: "kohaku-vm-%s"\nlocal-hostname: "kohaku-vm-%s"\n' $TASK $TASK > "$work/seed/meta-data"
cat > "$work/seed/network-config" <<NET
ethernets:
  vmnic0:
    addresses: ["10.200.0.10/24"]
    match: {macaddress: "$MAC"}
    nameservers: {addresses: ["10.200.0.1"]}
    routes: [{to: default, via: 10.200.0.1}]
version: 2
NET
python3 - "$work/seed/user-data" "$TASK" <<'PY'
import sys, yaml
agent = open("src/vm/guest_agent.py").read()
unit = ("[Unit]\nDescription=KohakuRiver VM Agent\nAfter=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nType=simple\nExecStart=/usr/local/bin/kohakuriver-vm-agent\nRestart=always\nRestartSec=5\n"
        "Environment=KOHAKU_RUNNER_URL=http://10.200.0.1:8001\nEnvironment=KOHAKU_TASK_ID=%s\n"
        "Environment=KOHAKU_HEARTBEAT_INTERVAL=10\n\n[Install]\nWantedBy=multi-user.target\n") % sys.argv[2]
doc = {"write_files": [
          {"path": "/usr/local/bin/kohakuriver-vm-agent", "permissions": "0755", "content": agent},
          {"path": "/etc/systemd/system/kohakuriver-vm-agent.service", "content": unit}],
       "runcmd": ["systemctl daemon-reload", "systemctl enable --now kohakuriver-vm-agent"]}
open(sys.argv[1], "w").write("#cloud-config\n" + yaml.safe_dump(doc))
PY
genisoimage -quiet -output "$work/seed.iso" -volid cidata -joliet -rock \
  "$work/seed/meta-data" "$work/seed/user-data" "$work/seed/network-config"
qemu-img create -q -f qcow2 -b "$IMAGE" -F qcow2 "$work/root.qcow2"

# Stand-in runner on the gateway, logging each request with its arrival time.
ip netns exec "$NS" python3 -c '
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0")); self.rfile.read(n)
        print("%.1f %s" % (time.time(), self.path), flush=True)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
http.server.HTTPServer(("10.200.0.1", 8001), H).serve_forever()' > "$work/requests.log" 2>&1 &
srv=$!

start=$(date +%s.%N)
ip netns exec "$NS" qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp 1 -m 1024M \
  -daemonize -pidfile "$work/qemu.pid" \
  -drive "file=$work/root.qcow2,format=qcow2,if=virtio,cache=writeback" \
  -drive "file=$work/seed.iso,format=raw,if=virtio,media=cdrom,readonly=on" \
  -netdev "tap,id=net0,ifname=$TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=net0,mac=$MAC" \
  -serial "file:$work/serial.log" -display none -vga std \
  -fsdev "local,id=fs_shared,path=$work/shared,security_model=passthrough" \
  -device virtio-9p-pci,fsdev=fs_shared,mount_tag=kohaku_shared \
  -fsdev "local,id=fs_local,path=$work/local,security_model=passthrough" \
  -device virtio-9p-pci,fsdev=fs_local,mount_tag=kohaku_local
echo "vm_boot_smoke: QEMU started (TCG), waiting up to $LIMIT s for the agent"
while :; do
  now=$(date +%s.%N)
  if grep -q vm-heartbeat "$work/requests.log" 2>/dev/null; then break; fi
  if awk -v a="$now" -v b="$start" -v l="$LIMIT" 'BEGIN{exit !(a-b>l)}'; then
    echo "vm_boot_smoke: no heartbeat within $LIMIT s; serial log tail:"; tail -5 "$work/serial.log"; exit 1
  fi
  sleep 2
done
awk -v s="$start" '{printf "vm_boot_smoke: %s after %.0f s\n", $2, $1 - s}' "$work/requests.log" | head -3
