"""Helpers for the QEMU VM end-to-end tests: a network namespace of the
test's own with a veth link to this machine's namespace and no default route
(so nothing inside can reach a public address, vm.md §15.4), the real
runner started inside it, and an "agent" client that calls the runner from
a VM's address inside that namespace."""
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import BINARY


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


class VmNetns:
    """ip netns + a veth pair: OUTER (this machine's side) / INNER."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.name = f"krvm-{tag}"
        self.veth = f"krv{tag}"
        octet = int(tag[:2], 16)
        self.outer_ip = f"10.251.{octet}.1"
        self.inner_ip = f"10.251.{octet}.2"

    def __enter__(self):
        sh("ip", "netns", "add", self.name)
        try:
            self.exec("ip", "link", "set", "lo", "up")
            sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "inner0", "netns", self.name)
            sh("ip", "addr", "add", f"{self.outer_ip}/30", "dev", self.veth)
            sh("ip", "link", "set", self.veth, "up")
            self.exec("ip", "addr", "add", f"{self.inner_ip}/30", "dev", "inner0")
            self.exec("ip", "link", "set", "inner0", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        sh("ip", "netns", "del", self.name, check=False)  # takes the veth pair with it
        sh("ip", "link", "del", self.veth, check=False)

    def exec(self, *args, check=True):
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def popen(self, *args):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def link_exists(self, name):
        return self.exec("ip", "link", "show", name, check=False).returncode == 0


def start_in_netns(runner, ns: VmNetns):
    """Starts a RunnerProcess (made with start=False) inside the namespace."""
    runner.log = open(runner.log_path, "ab")
    runner.started_at = time.monotonic()
    runner.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, str(BINARY), "runner", "--config",
                                    str(runner.config_path), *runner.args],
                                   stdout=runner.log, stderr=subprocess.STDOUT, env=runner.env)
    runner.url = lambda path: f"http://{ns.inner_ip}:{runner.port}{path}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if runner.proc.poll() is not None:
            raise AssertionError(f"runner exited with {runner.proc.returncode}:\n{runner.output()}")
        try:
            with socket.create_connection((ns.inner_ip, runner.port), timeout=0.3):
                return runner
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"runner did not listen:\n{runner.output()}")


AGENT_CALL = r"""
import json, sys, urllib.request
src, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
import http.client
host, port = url.split("/")[2].split(":")
path = "/" + url.split("/", 3)[3]
c = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(src, 0))
data = body.encode() if body else None
headers = {"Content-Type": "application/json"} if body else {}
c.request("POST", path, body=data, headers=headers)
r = c.getresponse()
print(json.dumps({"status": r.status, "body": r.read().decode()}))
"""


def agent_call(ns: VmNetns, source_ip, url, body=None):
    """POSTs from `source_ip` (an address inside the namespace) like the guest agent."""
    out = ns.exec("python3", "-c", AGENT_CALL, source_ip, url, json.dumps(body) if body is not None else "")
    res = json.loads(out.stdout)
    return res["status"], json.loads(res["body"]) if res["body"] else None


def qemu_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def kill_qemus_of(instances_dir: Path):
    """Test cleanup: SIGKILL the QEMUs whose pid files are in our instances dir."""
    for pid_file in instances_dir.glob("*/qemu.pid"):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if qemu_alive(pid) and str(instances_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


FREEZER = Path("/sys/fs/cgroup/freezer")


class Frozen:
    """A process put into a frozen cgroup-v1 freezer group of its own: it
    does not run, answers nothing, and a SIGKILL stays pending (the process
    does not die) until thaw(). How a QEMU that will not die is made."""

    def __init__(self, pid):
        if not (FREEZER / "cgroup.procs").exists():
            raise AssertionError(f"this test needs the cgroup-v1 freezer at {FREEZER}")
        self.pid = pid
        self.dir = FREEZER / f"kr-test-{secrets.token_hex(3)}"

    def __enter__(self):
        self.dir.mkdir()
        (self.dir / "cgroup.procs").write_text(str(self.pid))
        (self.dir / "freezer.state").write_text("FROZEN")
        wait_until(lambda: (self.dir / "freezer.state").read_text().strip() == "FROZEN", 10, "the freezer")
        return self

    def thaw(self):
        (self.dir / "freezer.state").write_text("THAWED")

    def __exit__(self, *exc):
        self.thaw()
        for pid in (self.dir / "cgroup.procs").read_text().split():
            try:
                (FREEZER / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # exited meanwhile
        deadline = time.monotonic() + 10
        while True:
            try:
                self.dir.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def sigkill_pending(pid):
    """A SIGKILL sent to the process and not yet acted on (ShdPnd bit 9)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("ShdPnd:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGKILL - 1)))
    except OSError:
        pass
    return False
