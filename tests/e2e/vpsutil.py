"""Helpers for the Docker VPS end-to-end tests: create bodies as the host
sends them, a real `ssh` client, and cleanup of this node's VPS containers
and snapshot images only."""
import socket
import subprocess
import time

from taskutil import docker, http

DEBIAN = "kr-test/debian:bookworm"
BUSYBOX = "kr-test/busybox:test"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]


def vps_body(task_id, mode="upload", key=None, image=DEBIAN, container_name="", **fields):
    """The keys the host's send_vps_task_to_runner sends (task_id as string)."""
    body = {
        "task_id": str(task_id), "required_cores": 1, "required_gpus": [], "required_memory_bytes": None,
        "target_numa_node_id": None, "container_name": container_name, "registry_image": image,
        "ssh_key_mode": mode, "ssh_public_key": key, "ssh_port": 40000, "reserved_ip": None,
        "vps_backend": "docker",
    }
    body.update(fields)
    return body


def create(runner, body, expect=200):
    status, reply = http("POST", runner.url("/api/vps/create"), body, timeout=180)
    assert status == expect, (status, reply, runner.output()[-3000:])
    return reply


def make_key(tmp_path, name="id"):
    path = tmp_path / name
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path, (tmp_path / f"{name}.pub").read_text().strip()


def ssh(port, command, key=None, extra=(), timeout=10):
    args = ["ssh", *SSH_OPTS, "-p", str(port), *extra]
    if key:
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    else:
        args += ["-o", "PubkeyAuthentication=no"]
    args += ["root@127.0.0.1", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def ssh_until(port, command, key=None, timeout=30):
    """Logs in as soon as sshd answers; returns the successful result."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = ssh(port, command, key)
        if last.returncode == 0:
            return last
        time.sleep(0.1)
    raise AssertionError(f"ssh to port {port} failed: {last.stderr if last else ''}")


def node_name():
    return socket.gethostname()


def cleanup_vps(ids=()):
    """Removes this node's VPS containers and the snapshots of `ids`."""
    out = docker("ps", "-aq", "--filter", "name=kohakuriver-vps-", "--filter",
                 f"label=kohakuriver.node={node_name()}", check=False).stdout.split()
    if out:
        docker("rm", "-f", *out, check=False)
    for tid in ids:
        tags = docker("images", "-q", f"kohakuriver-snapshot/vps-{tid}", check=False).stdout.split()
        refs = docker("images", "--format", "{{.Repository}}:{{.Tag}}", f"kohakuriver-snapshot/vps-{tid}",
                      check=False).stdout.split()
        if refs:
            docker("rmi", "-f", *refs, check=False)
        del tags


def wait_ready_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no sshd on port {port}")
