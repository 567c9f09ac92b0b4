#!/usr/bin/env python3
"""Command-task benchmarks (issue: command tasks on the real Docker Engine).

All measured side by side in one run, against the fixture host on loopback
and the local dockerd:
  1. dispatch overhead: POST /api/execute -> final report received, vs the
     same container created, started and waited for directly through the
     Engine API (median of --rounds each, interleaved); ratio of medians.
  2. burst: --burst tasks accepted at once, time until every final report
     arrived, vs --burst direct create+start+wait with the same parallelism;
     throughput ratio.
  3. memory: runner RSS before and after --many short tasks (in waves of
     --wave), growth in MiB.
  4. kill latency: POST /api/kill of a running `sleep 300` task -> the
     container no longer running, and -> the container removed (median of
     --kills rounds).

Usage: bench/tasks_bench.py [--rounds 10] [--burst 100] [--many 2000] [--wave 50] [--kills 10]
                            [--parts dispatch,burst,memory,kill]
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from fixture_host import FixtureHost  # noqa: E402

IMAGE = "kr-test/busybox:test"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def engine(method, target, body=None, sock="/var/run/docker.sock"):
    conn = UnixHTTPConnection(sock)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, "/v1.41" + target, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    if r.status >= 400:
        raise RuntimeError(f"{method} {target}: {r.status} {raw[:200]}")
    return json.loads(raw) if raw else None


def engine_json(method, target):
    conn = UnixHTTPConnection("/var/run/docker.sock")
    conn.request(method, target)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, (json.loads(raw) if raw else None)


def direct_run(name, share: Path, local: Path, out_dir: Path):
    """What the runner asks Docker for, done by hand: create, start, wait."""
    out_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "Image": IMAGE,
        "Cmd": ["/bin/sh", "-c", f"exec true > /kohakuriver-logs/{out_dir.name}/stdout.log 2> /kohakuriver-logs/{out_dir.name}/stderr.log"],
        "HostConfig": {"Mounts": [
            {"Type": "bind", "Source": str(share / "shared_data"), "Target": "/shared"},
            {"Type": "bind", "Source": str(share / "logs"), "Target": "/kohakuriver-logs"},
            {"Type": "bind", "Source": str(local), "Target": "/local_temp"}],
            "NetworkMode": "kohakuriver-net", "CapAdd": ["SYS_NICE"]},
    }
    t0 = time.monotonic()
    engine("POST", f"/containers/create?name={name}", body)
    engine("POST", f"/containers/{name}/start")
    engine("POST", f"/containers/{name}/wait?condition=not-running")
    dt = time.monotonic() - t0
    engine("DELETE", f"/containers/{name}?force=1")
    return dt


class Runner:
    def __init__(self, tmp: Path, host: FixtureHost, binary: str):
        self.tmp = tmp
        self.share, self.local = tmp / "share", tmp / "local"
        for d in (self.share / "shared_data", self.share / "logs", self.local):
            d.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cfg = tmp / "runner_config.py"
        cfg.write_text(f'RUNNER_PORT = {self.port}\nHOST_PORT = {host.port}\nSHARED_DIR = "{self.share}"\n'
                       f'LOCAL_TEMP_DIR = "{self.local}"\nSTATE_DIR = "{tmp}/state"\nLOG_LEVEL = "warning"\n')
        # Warnings and errors only (LOG_LEVEL above): kept for explaining failed tasks.
        self.log = open(tmp / "runner.log", "wb")
        self.proc = subprocess.Popen([binary, "runner", "--config", str(cfg)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        host.wait_for("register", timeout=10)
        self.host = host
        self.seen = 0
        self.finished = set()
        self.next_id = 7_400_000_000_000_000_000 + (os.getpid() << 20)

    def submit(self, command="true"):
        self.next_id += 1
        tid = self.next_id
        body = {"task_id": str(tid), "command": command, "arguments": [], "env_vars": {}, "required_cores": 0,
                "required_gpus": [], "required_memory_bytes": None, "target_numa_node_id": None,
                "container_name": None, "registry_image": IMAGE, "working_dir": "/shared",
                "stdout_path": f"{self.share}/logs/{tid}/stdout.log", "stderr_path": f"{self.share}/logs/{tid}/stderr.log",
                "reserved_ip": None}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", "/api/execute", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        conn.close()
        assert r.status == 200, r.status
        return tid

    def wait_final(self, tids, timeout=600):
        """Returns when every task's final report arrived (scanning only the
        requests that came in since the last look)."""
        want = set(tids)
        finals = {"completed", "failed", "killed_oom", "stopped"}
        deadline = time.monotonic() + timeout
        with self.host.cond:
            while True:
                while self.seen < len(self.host.requests):
                    r = self.host.requests[self.seen]
                    self.seen += 1
                    if r.path.startswith("/api/update"):
                        body = r.json()
                        if body["status"] in finals:
                            self.finished.add(body["task_id"])
                if want <= self.finished:
                    return time.monotonic()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(want - self.finished)} tasks without a final report")
                self.host.cond.wait(left)

    def rss_mib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "build" / "kohakuriver"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--many", type=int, default=2000)
    ap.add_argument("--wave", type=int, default=50)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--parts", default="dispatch,burst,memory,kill")
    args = ap.parse_args()
    parts = set(args.parts.split(","))

    host = FixtureHost().start()
    tmp = Path(tempfile.mkdtemp(prefix="kr-bench-"))
    runner = Runner(tmp, host, args.binary)
    try:
        # Warm-up (network creation, image cache, first connections).
        runner.wait_final([runner.submit()])
        direct_run("krbench-warm", runner.share, runner.local, runner.share / "logs" / "warm")

        # 1. dispatch overhead, interleaved.
        ours, theirs = [], []
        for i in range(args.rounds if "dispatch" in parts else 0):
            t0 = time.monotonic()
            tid = runner.submit()
            ours.append(runner.wait_final([tid]) - t0)
            theirs.append(direct_run(f"krbench-d{i}", runner.share, runner.local, runner.share / "logs" / f"d{i}"))
        if ours:
          mo, mt = statistics.median(ours), statistics.median(theirs)
          print(f"dispatch: runner execute->final report median {mo * 1000:.0f} ms, direct Engine API "
              f"create+start+wait median {mt * 1000:.0f} ms over {args.rounds} rounds -> ratio {mo / mt:.3f} "
              f"(target <= 1.10; upstream measured 1.72)")

        # 2. burst.
        n = args.burst if "burst" in parts else 0
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(n, 32))) as pool:
            tids = list(pool.map(lambda _: runner.submit(), range(n)))
        t_ours = runner.wait_final(tids) - t0
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(n, 1)) as pool:
            list(pool.map(lambda i: direct_run(f"krbench-b{i}", runner.share, runner.local,
                                               runner.share / "logs" / f"b{i}"), range(n)))
        t_direct = time.monotonic() - t0
        if n:
          print(f"burst of {n}: runner {t_ours:.2f} s to all final reports ({n / t_ours:.1f} tasks/s), direct "
              f"Engine API {t_direct:.2f} s ({n / t_direct:.1f}/s) -> throughput ratio {t_direct / t_ours:.2f} "
              f"(target >= 0.9; upstream 20 tasks took 9.6 s vs 3.6 s = 0.38)")

        # 3. memory over many short tasks.
        time.sleep(1)
        before = runner.rss_mib()
        done = 0 if "memory" in parts else args.many
        t0 = time.monotonic()
        while done < args.many:
            k = min(args.wave, args.many - done)
            with ThreadPoolExecutor(max_workers=16) as pool:
                tids = list(pool.map(lambda _: runner.submit(), range(k)))
            runner.wait_final(tids)
            done += k
        time.sleep(2)
        after = runner.rss_mib()
        if "memory" in parts:
          print(f"memory: RSS {before:.2f} MiB before, {after:.2f} MiB after {args.many} tasks "
              f"({time.monotonic() - t0:.0f} s) -> growth {after - before:+.2f} MiB (target <= 2 MiB)")

        # 4. kill latency.
        stopped, removed = [], []
        for i in range(args.kills if "kill" in parts else 0):
            tid = runner.submit("sleep 300")
            name = f"kohakuriver-task-{tid}"
            while True:
                st, info = engine_json("GET", f"/containers/{name}/json")
                if st == 200 and info["State"]["Running"]:
                    break
                time.sleep(0.02)
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=30)
            conn.request("POST", "/api/kill", json.dumps({"task_id": tid, "container_name": name}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            conn.close()
            assert r.status == 200, r.status
            t_stop = None
            while True:
                st, info = engine_json("GET", f"/containers/{name}/json")
                now = time.monotonic()
                if t_stop is None and (st == 404 or not info["State"]["Running"]):
                    t_stop = now
                if st == 404:
                    break
                time.sleep(0.005)
            stopped.append(t_stop - t0)
            removed.append(now - t0)
        if stopped:
            print(f"kill latency: POST /api/kill -> container stopped median {statistics.median(stopped) * 1000:.0f} ms, "
                  f"-> container removed median {statistics.median(removed) * 1000:.0f} ms over {len(stopped)} kills")
    finally:
        runner.stop()
        host.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
