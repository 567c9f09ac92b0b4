#!/usr/bin/env python3
"""Docker VPS benchmarks (issue: Docker VPS sessions), measured side by side
in one run against the fixture host on loopback and the local dockerd:
  1. create -> first successful SSH login (key mode `upload`, the
     kr-test/debian:bookworm image, which has sshd): POST /api/vps/create
     until `ssh` with the key runs `true`, vs `docker run -d -p 0:22` of the
     same image starting sshd directly with the same key (same network),
     `docker port`, then the same login loop. --rounds each, interleaved;
     ratio of medians.
  2. memory: runner RSS idle vs with --many idle VPS tracked (disabled mode,
     busybox image); growth in MiB.

Run it alone (it holds many containers):
  flock -x /tmp/kr-e2e.lock unshare --uts sh -c 'hostname kr-bench && bench/vps_bench.py'
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from fixture_host import FixtureHost  # noqa: E402

DEBIAN = "kr-test/debian:bookworm"
BUSYBOX = "kr-test/busybox:test"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def ssh_ok(port, key):
    return subprocess.run(["ssh", *SSH_OPTS, "-i", str(key), "-p", str(port), "root@127.0.0.1", "true"],
                          capture_output=True).returncode == 0


def login_loop(port, key, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ssh_ok(port, key):
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"no login on port {port}")


class Runner:
    def __init__(self, tmp: Path, host: FixtureHost, binary: str):
        self.share, self.local = tmp / "share", tmp / "local"
        for d in (self.share / "shared_data", self.local):
            d.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cfg = tmp / "runner_config.py"
        cfg.write_text(f'RUNNER_PORT = {self.port}\nHOST_PORT = {host.port}\nSHARED_DIR = "{self.share}"\n'
                       f'LOCAL_TEMP_DIR = "{self.local}"\nSTATE_DIR = "{tmp}/state"\nLOG_LEVEL = "warning"\n'
                       'AUTO_SNAPSHOT_ON_STOP = False\nAUTO_RESTORE_ON_CREATE = False\nTUNNEL_ENABLED = False\n')
        self.proc = subprocess.Popen([binary, "runner", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        host.wait_for("register", timeout=10)
        self.next_id = 7_500_000_000_000_000_000 + (os.getpid() << 20)

    def call(self, method, path, body=None, timeout=180):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        return r.status, json.loads(raw) if raw else None

    def create(self, mode, key=None, image=DEBIAN):
        self.next_id += 1
        body = {"task_id": str(self.next_id), "required_cores": 0, "required_gpus": None,
                "required_memory_bytes": None, "target_numa_node_id": None, "container_name": "",
                "registry_image": image, "ssh_key_mode": mode, "ssh_public_key": key, "ssh_port": 40000,
                "reserved_ip": None, "vps_backend": "docker"}
        status, reply = self.call("POST", "/api/vps/create", body)
        assert status == 200, (status, reply)
        return self.next_id, reply

    def stop_vps(self, tid):
        status, reply = self.call("POST", f"/api/vps/stop/{tid}")
        assert status == 200, (status, reply)

    def rss_mib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def direct_round(i, key: Path, pub: str):
    name = f"kr-vps-bench-direct-{os.getpid()}-{i}"
    script = (f"mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh && printf '%s\\n' '{pub}' > "
              "/root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && exec /usr/sbin/sshd -D -e")
    t0 = time.monotonic()
    docker("run", "-d", "--name", name, "--network", "kohakuriver-net", "-p", "0:22", DEBIAN, "/bin/sh", "-c",
           script)
    port = int(docker("port", name, "22/tcp").splitlines()[0].rsplit(":", 1)[1])
    t1 = login_loop(port, key)
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return t1 - t0


def runner_round(runner: Runner, key: Path, pub: str):
    t0 = time.monotonic()
    tid, reply = runner.create("upload", pub)
    t1 = login_loop(reply["ssh_port"], key)
    runner.stop_vps(tid)
    return t1 - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--many", type=int, default=50)
    ap.add_argument("--binary", default=str(REPO / "build" / "kohakuriver"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kr-vps-bench-"))
    key = tmp / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = (tmp / "id.pub").read_text().strip()
    host = FixtureHost().start()
    runner = Runner(tmp, host, args.binary)
    try:
        runner_round(runner, key, pub)  # warm-up (network, page cache)
        direct_round(-1, key, pub)
        ours, direct = [], []
        for i in range(args.rounds):
            ours.append(runner_round(runner, key, pub))
            direct.append(direct_round(i, key, pub))
        mo, md = statistics.median(ours), statistics.median(direct)
        print(f"create -> first SSH login, median of {args.rounds}: runner {mo:.3f} s, "
              f"docker run -p 0:22 + sshd {md:.3f} s, ratio {mo / md:.2f}")
        print(f"  runner rounds: {', '.join(f'{x:.3f}' for x in ours)}")
        print(f"  direct rounds: {', '.join(f'{x:.3f}' for x in direct)}")

        time.sleep(3)
        idle = runner.rss_mib()
        ids = [runner.create("disabled", image=BUSYBOX)[0] for _ in range(args.many)]
        time.sleep(5)  # a few heartbeats with all of them listed
        loaded = runner.rss_mib()
        print(f"RSS: idle {idle:.2f} MiB, with {args.many} idle VPS {loaded:.2f} MiB, "
              f"growth {loaded - idle:.2f} MiB")
        for tid in ids:
            runner.stop_vps(tid)
    finally:
        runner.stop()
        host.stop()
        out = subprocess.run(["docker", "ps", "-aq", "--filter", "name=kr-vps-bench-direct-"],
                             capture_output=True, text=True).stdout.split()
        if out:
            subprocess.run(["docker", "rm", "-f", *out], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
