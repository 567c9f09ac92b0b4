"""Helpers for the port-forwarding tests: service tasks whose containers
run our tunnel-client, and memory probes of the runner."""
import os
import shutil
import time
from pathlib import Path

from taskutil import IMAGE, docker, http, new_task_id, submit, wait_until

REPO = Path(__file__).resolve().parents[2]
TUNNEL_CLIENT = Path(os.environ.get("KR_TUNNEL_CLIENT", REPO / "build" / "tunnel-client"))
DEBIAN = "kr-test/debian:bookworm"
# Service containers run the Debian test image: upstream's start line needs
# `nohup`, which Debian's busybox-static (kr-test/busybox) lacks. The host's
# static busybox is mounted in for httpd and nc.
BUSYBOX = "/opt/busybox"
BUSYBOX_MOUNT = f"{shutil.which('busybox') or '/bin/busybox'}:{BUSYBOX}:ro"


def runner_overrides():
    return {"TUNNEL_CLIENT_PATH": str(TUNNEL_CLIENT), "ADDITIONAL_MOUNTS": [BUSYBOX_MOUNT]}


def tunnel_runner(host, make_runner, **overrides):
    if not TUNNEL_CLIENT.exists():
        raise AssertionError(f"{TUNNEL_CLIENT} not built (run scripts/build.sh)")
    runner = make_runner(host, TUNNEL_CLIENT_PATH=str(TUNNEL_CLIENT), **overrides)
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    return runner


def start_service(runner, host, command, image=DEBIAN):
    """A command task that runs `command` (a service); returns (tid, container)."""
    tid = new_task_id()
    submit(runner, tid, command, registry_image=image)
    host.wait_for("update", timeout=60,
                  pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    return tid, f"kohakuriver-task-{tid}"


def stop_service(runner, tid):
    http("POST", runner.url("/api/kill"), {"task_id": tid, "container_name": f"kohakuriver-task-{tid}"})
    docker("rm", "-f", f"kohakuriver-task-{tid}", check=False)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_port_in_container(container, port, timeout=60, udp=False):
    """Until something listens on (or, UDP, is bound to) port inside the container."""
    tables = "/proc/net/udp /proc/net/udp6" if udp else "/proc/net/tcp /proc/net/tcp6"

    def listening():
        r = docker("exec", container, "sh", "-c", f"grep -qi ':{port:04X} ' {tables}", check=False)
        return r.returncode == 0
    try:
        wait_until(listening, timeout=timeout, what=f"port {port} listening in {container}")
    except AssertionError as e:
        # Say what the container was doing (a slow start on a loaded machine
        # and a crashed service look the same otherwise).
        ps = docker("exec", container, "ps", "-eo", "pid,stat,time,args", check=False)
        state = docker("inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}}", container, check=False)
        tables_now = docker("exec", container, "cat", *tables.split(), check=False)
        raise AssertionError(f"{e}\nstate: {state.stdout.strip()} {state.stderr.strip()}\n"
                             f"ps:\n{ps.stdout}{ps.stderr}\nsockets:\n{tables_now.stdout}") from None


def share_dir(runner):
    d = Path(runner.config["SHARED_DIR"]) / "shared_data"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sleep_until(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False
