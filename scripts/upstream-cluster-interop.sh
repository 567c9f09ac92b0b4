#!/usr/bin/env bash
# Manual check (issue 19): the three-node cluster of scripts/cluster.sh with
# the unmodified upstream host instead of the fixture host. Not part of CI
# (the upstream source is not vendored here).
#
#   flock -x /tmp/kr-e2e.lock scripts/upstream-cluster-interop.sh /path/to/KohakuRiver-source
#
# Drives the host's own API only: every node online; an environment task on
# each node (the busybox tarball in the shared directory, loaded by each
# node's runner into its own dockerd); a task on node 2 serving 20 MB and a
# task on node 1 fetching it by overlay address (byte-exact) and pinging it;
# a Docker VPS on node 3 reached over the overlay from node 1; node 1's
# runner SIGKILLed while a `sleep 20; exit 3` task runs there and started
# again (the host ends with failed/3); kill and VPS stop through the host;
# `down` leaves nothing. Prints one line per step; exits non-zero on the
# first failed step.
#
# Where the upstream host's overlay cannot start (it creates a `dummy`
# interface; a machine without that kernel module answers EOPNOTSUPP), its
# /api/overlay/status says so and the overlay steps are skipped with a loud
# line; every other step still runs. The runner SIGKILL hits the node that
# runs the Docker VPS and a task, so both are checked across it.
set -euo pipefail
SRC=${1:?path to an upstream KohakuRiver source tree}
cd "$(dirname "$0")/.."
H=http://10.233.19.1:8000
OUT=/var/lib/krc/shared/shared_data/krc-up
export KRC_UPSTREAM=$SRC

step() { echo "[$(date +%T)] $*"; }
fail() { echo "FAILED: $*" >&2; scripts/cluster.sh status >&2 || true; exit 1; }
api() {  # api METHOD PATH [JSON]
  curl -sf -X "$1" "$H$2" -H 'content-type: application/json' ${3:+-d "$3"}
}
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1]))' "$1"; }
submit() {  # submit NODE SCRIPT -> task id
  api POST /api/submit '{"command":"sh","arguments":["-c",'"$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")"'],"container_name":"krcbox","required_cores":0,"targets":["'"$1"'"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["task_ids"][0])'
}
status_of() { api GET "/api/status/$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["exit_code"])'; }
wait_status() {  # wait_status ID "STATUS EXIT" SECONDS
  local i s
  for i in $(seq 1 "$3"); do s=$(status_of "$1"); [ "$s" = "$2" ] && return 0; sleep 1; done
  fail "task $1: wanted '$2', have '$s'"
}
overlay_ip_of() {  # overlay_ip_of NODE CONTAINER
  scripts/cluster.sh docker "$1" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$2"
}

step "cluster up with the upstream host ($SRC @ $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo ?))"
scripts/cluster.sh up 3 || fail "cluster up"
scripts/cluster.sh status
mkdir -p "$OUT"; rm -f "$OUT"/*

for k in 1 2 3; do
  t=$(submit krc-n$k "hostname > /shared/krc-up/hello-$k")
  wait_status "$t" "completed 0" 120
  step "environment task on krc-n$k: completed 0, ran on $(cat "$OUT/hello-$k")"
done

overlay=$(api GET /api/overlay/status | python3 -c 'import json,sys; d=json.load(sys.stdin); print("on" if d.get("enabled") and not d.get("error") and d.get("allocations") else "off: %s" % json.dumps(d)[:200])')
srv=$(submit krc-n2 "mkdir -p /tmp/w && head -c 20000000 /dev/urandom > /tmp/w/f && md5sum /tmp/w/f | cut -c1-32 > /shared/krc-up/srv.md5 && exec httpd -f -p 5000 -h /tmp/w")
wait_status "$srv" "running None" 120
for _ in $(seq 1 60); do [ -s "$OUT/srv.md5" ] && break; sleep 1; done
if [ "$overlay" = on ]; then
  ip2=$(overlay_ip_of 2 "kohakuriver-task-$srv")
  cli=$(submit krc-n1 "ping -c 2 -W 5 $ip2 && for i in \$(seq 30); do wget -q -O /tmp/f http://$ip2:5000/f && break; sleep 1; done && md5sum /tmp/f | cut -c1-32 > /shared/krc-up/got.md5")
  wait_status "$cli" "completed 0" 300
  [ "$(cat "$OUT/got.md5")" = "$(cat "$OUT/srv.md5")" ] || fail "20 MB over the overlay differ"
  step "overlay: krc-n1 -> krc-n2 ($ip2): ping ok, 20 MB byte-exact (md5 $(cat "$OUT/got.md5"))"
else
  step "OVERLAY STEPS SKIPPED: the upstream host's overlay is not running (/api/overlay/status: $overlay)"
fi

vps=$(api POST /api/vps/create '{"vps_backend":"docker","container_name":"krcbox","ssh_key_mode":"disabled","target_hostname":"krc-n3","required_cores":0}' |
  field task_id)
wait_status "$vps" "running None" 180
vps_port=$(api GET "/api/status/$vps" | field ssh_port)
vps_cid=$(scripts/cluster.sh docker 3 ps -q --no-trunc --filter "name=kohakuriver-vps-$vps")
[ -n "$vps_cid" ] || fail "no VPS container on krc-n3"
if [ "$overlay" = on ]; then
  ip3=$(overlay_ip_of 3 "kohakuriver-vps-$vps")
  cli=$(submit krc-n1 "ping -c 2 -W 5 $ip3")
  wait_status "$cli" "completed 0" 120
  step "Docker VPS $vps on krc-n3 ($ip3, ssh_port $vps_port): reached from krc-n1 over the overlay"
else
  step "Docker VPS $vps on krc-n3: running at the host, ssh_port $vps_port, container ${vps_cid:0:12}"
fi

long=$(submit krc-n3 "sleep 20; exit 3")
wait_status "$long" "running None" 120
scripts/cluster.sh runner-kill 3
sleep 3
scripts/cluster.sh docker 3 ps -q --filter "name=kohakuriver-task-$long" | grep -q . || fail "task container died with the runner"
scripts/cluster.sh runner-start 3
wait_status "$long" "failed 3" 120
[ "$(scripts/cluster.sh docker 3 ps -q --no-trunc --filter "name=kohakuriver-vps-$vps")" = "$vps_cid" ] || fail "VPS container changed across the runner SIGKILL"
wait_status "$vps" "running None" 60
step "runner SIGKILL on krc-n3 during 'sleep 20; exit 3': task container kept running, restarted runner reported failed 3; VPS $vps same container, still running at the host"

api POST "/api/kill/$srv" >/dev/null
for _ in $(seq 1 30); do [ -z "$(scripts/cluster.sh docker 2 ps -q --filter "name=kohakuriver-task-$srv")" ] && break; sleep 1; done
[ -z "$(scripts/cluster.sh docker 2 ps -q --filter "name=kohakuriver-task-$srv")" ] || fail "killed task still runs"
step "kill through the host: $(status_of "$srv"), container gone"
api POST "/api/vps/stop/$vps" >/dev/null
for _ in $(seq 1 60); do [ -z "$(scripts/cluster.sh docker 3 ps -q --filter "name=kohakuriver-vps-$vps")" ] && break; sleep 1; done
[ -z "$(scripts/cluster.sh docker 3 ps -q --filter "name=kohakuriver-vps-$vps")" ] || fail "stopped VPS still runs"
step "VPS stop through the host: $(status_of "$vps"), container gone"

scripts/cluster.sh down
left=$(ip netns list | grep -c '^krc-' || true)
[ "$left" = 0 ] && [ ! -e /var/lib/krc ] && ! ip link show krc-root >/dev/null 2>&1 || fail "down left things behind"
step "down: no krc-* namespace, link or directory left"
