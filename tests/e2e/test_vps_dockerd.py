"""A Docker VPS across a dockerd restart (R-STALEPORT, D-SSHPORT): Docker's
restart policy brings the VPS back on a new host port (the old one is held
by this test), and the runner reports the new ssh_port without a restart
of its own. Restarts dockerd: run with the e2e lock held exclusively
(E2E_EXCLUSIVE=1 /work/wt/e2e.sh tests/e2e/test_vps_dockerd.py)."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from taskutil import docker, new_task_id, wait_until
from vpsutil import cleanup_vps, create, make_key, ssh_until, vps_body

REPO = Path(__file__).resolve().parents[2]


def test_new_port_after_dockerd_restart_is_reported(host, make_runner, tmp_path):
    cleanup_vps()
    (tmp_path / "share").mkdir(exist_ok=True)
    (tmp_path / "local").mkdir(exist_ok=True)
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, TUNNEL_ENABLED=False, AUTO_SNAPSHOT_ON_STOP=False)
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    key, pub = make_key(tmp_path)
    t = new_task_id()
    old_port = create(runner, vps_body(t, "upload", pub))["ssh_port"]
    ssh_until(old_port, "true", key)
    blocker = None
    try:
        pid = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
        # Stop dockerd, occupy the old port while it is down, start it again.
        systemd = subprocess.run(["systemctl", "is-active", "--quiet", "docker"],
                                 capture_output=True).returncode == 0
        if systemd:
            subprocess.run(["systemctl", "stop", "docker"], check=True)
        else:
            os.kill(int(pid[0]), 15)
            for _ in range(600):  # shutdown stops running containers first
                if not os.path.exists(f"/proc/{pid[0]}"):
                    break
                time.sleep(0.1)
        wait_until(lambda: _port_free(old_port), timeout=20, what="old port released")
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("0.0.0.0", old_port))
        blocker.listen(1)
        if systemd:
            subprocess.run(["systemctl", "start", "docker"], check=True)
        else:
            subprocess.run([str(REPO / "scripts" / "ensure-dockerd.sh")], check=True)

        def new_port():
            ups = [u for u in host.updates_for(t) if u["status"] == "running" and u["ssh_port"]]
            return ups[-1]["ssh_port"] if ups and ups[-1]["ssh_port"] != old_port else None
        wait_until(lambda: new_port() is not None, timeout=90, what=f"new ssh_port reported\n{runner.output()[-3000:]}")
        port = new_port()
        actual = int(docker("port", f"kohakuriver-vps-{t}", "22/tcp").stdout.splitlines()[0].rsplit(":", 1)[1])
        assert port == actual
        assert ssh_until(port, "echo back", key).stdout.strip() == "back"
        assert runner.proc.poll() is None
    finally:
        if blocker:
            blocker.close()
        cleanup_vps([t])


def _port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False
