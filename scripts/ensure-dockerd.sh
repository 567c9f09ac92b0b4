#!/usr/bin/env bash
# Starts dockerd when none answers on /var/run/docker.sock (CI machines have
# the package but no running daemon). Waits until it answers /_ping.
set -euo pipefail
SOCK=${DOCKER_SOCKET:-/var/run/docker.sock}
ping_docker() {
  python3 - "$SOCK" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
try:
    s.connect(sys.argv[1]); s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    sys.exit(0 if b"OK" in s.recv(4096) else 1)
except OSError:
    sys.exit(1)
PY
}
if ping_docker; then exit 0; fi
# A dockerd that is still shutting down (it stops running containers for up
# to 15 s) holds its pid file: a second one started now would exit at once
# with "pid file found". Wait for it to answer or to be gone.
for _ in $(seq 1 120); do
  pgrep -x dockerd >/dev/null || break
  if ping_docker; then exit 0; fi
  sleep 0.5
done
if pgrep -x dockerd >/dev/null; then
  echo "ensure-dockerd: a dockerd process exists but does not answer on $SOCK" >&2
  exit 1
fi
# A pid file left by a dockerd that died without removing it.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi
echo "ensure-dockerd: starting dockerd (log: /var/log/kr-dockerd.log)"
nohup dockerd >/var/log/kr-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if ping_docker; then echo "ensure-dockerd: dockerd is up"; exit 0; fi
  sleep 0.5
done
echo "ensure-dockerd: dockerd did not come up; last log lines:" >&2
tail -20 /var/log/kr-dockerd.log >&2
exit 1
