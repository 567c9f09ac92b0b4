#!/usr/bin/env python3
"""The portable release binary against the Debian-linked build on the
figures that need Docker (issue 17), side by side in one run: both runners
run at the same time (each with its own fixture host, directories and
tunnel-client) and every round measures both, in alternating order
(A B / B A), with the direct reference measured in the same round:

  dispatch  POST /api/execute of `true` -> final report received, over the
            same container created, started and waited for directly through
            the Engine API (bench/tasks_bench.py's part 1); per round
            runner/direct.
  tunnel    one stream: a --size-mb file fetched through /ws/forward by
            build/tunnel_bench_client, over the same file fetched directly
            from the container (bench/tunnel_bench.py's part 1); per round
            tunnel/direct (each build serves from its own container, running
            its own tunnel-client).
  write     POST /api/fs/{id}/write of --write-mb MB, over `docker cp` of the
            same file into the same container (bench/term_fs_bench.py's
            part 2); per round the throughput ratio cp_time/api_time.

Prints, per figure and build, the median of --runs rounds with min-max, and
the release/Debian ratio of the medians. The last line is one JSON object.
Hold the e2e lock exclusively (flock -x /tmp/kr-e2e.lock).

Usage: bench/release_compare_bench.py [--runs 10] [--parts dispatch,tunnel,write]
         [--debian build/kohakuriver] [--debian-tunnel build/tunnel-client]
         [--release dist/release/x86_64/kohakuriver] [--release-tunnel dist/release/x86_64/tunnel-client]
         [--size-mb 100] [--write-mb 20]
"""
import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
from conftest import RunnerProcess  # noqa: E402
from fixture_host import FixtureHost  # noqa: E402
from tasks_bench import Runner as TaskRunner, direct_run  # noqa: E402
from taskutil import docker  # noqa: E402
from tunnel_bench import container_ip, cpp_client, ensure_bench_client  # noqa: E402
from tunnelutil import BUSYBOX, BUSYBOX_MOUNT, share_dir, start_service, stop_service, wait_port_in_container  # noqa: E402

MB = 1 << 20


class BinaryRunner(RunnerProcess):
    """conftest's runner, started from a given binary (not KR_BINARY)."""

    def __init__(self, binary: str, tmp: Path, host: FixtureHost, overrides: dict):
        super().__init__(tmp, host, overrides, [], None)
        self.binary = binary

    def start(self):
        self.log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([self.binary, "runner", "--config", str(self.config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s: dict, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    return (f"{s['median'] * scale:.{digits}f}{unit} ({s['min'] * scale:.{digits}f}-"
            f"{s['max'] * scale:.{digits}f})")


def orders(runs: int, names: list[str]):
    for i in range(runs):
        yield i, (names if i % 2 == 0 else list(reversed(names)))


def bench_dispatch(builds: dict, runs: int, root: Path) -> dict:
    hosts, runners = {}, {}
    try:
        for name, b in builds.items():
            hosts[name] = FixtureHost().start()
            tmp = root / f"dispatch-{name}"
            tmp.mkdir()
            runners[name] = TaskRunner(tmp, hosts[name], b["binary"])
            runners[name].next_id += len(runners) * 10**9  # task ids (container names) apart
        for name, r in runners.items():  # warm-up: network, image cache, first connections
            r.wait_final([r.submit()])
            direct_run(f"krrel-warm-{name}", r.share, r.local, r.share / "logs" / "warm")
        samples = {name: {"runner_ms": [], "direct_ms": [], "ratio": []} for name in builds}
        for i, order in orders(runs, list(builds)):
            for name in order:
                r = runners[name]
                t0 = time.monotonic()
                tid = r.submit()
                ours = r.wait_final([tid]) - t0
                direct = direct_run(f"krrel-d{i}-{name}", r.share, r.local, r.share / "logs" / f"d{i}")
                s = samples[name]
                s["runner_ms"].append(ours * 1000)
                s["direct_ms"].append(direct * 1000)
                s["ratio"].append(ours / direct)
        return {name: {k: summary(v) for k, v in s.items()} for name, s in samples.items()}
    finally:
        for r in runners.values():
            r.stop()
        for h in hosts.values():
            h.stop()


def bench_tunnel_write(builds: dict, runs: int, root: Path, parts: set, size_mb: int, write_mb: int) -> dict:
    hosts, runners, services = {}, {}, {}
    out = {}
    try:
        for name, b in builds.items():
            hosts[name] = FixtureHost().start()
            tmp = root / f"tunnel-{name}"
            tmp.mkdir()
            r = BinaryRunner(b["binary"], tmp, hosts[name], {
                "LOG_LEVEL": "info", "TUNNEL_CLIENT_PATH": b["tunnel"], "ADDITIONAL_MOUNTS": [BUSYBOX_MOUNT]})
            runners[name] = r.start()
            r.wait_listening()
            hosts[name].wait_for("register", timeout=10)
        # Services only once both runners run: a runner starting stops the
        # task containers of this node it does not know (R-ORPHANSTOP).
        for name, r in runners.items():
            www = share_dir(r) / "www"
            www.mkdir()
            with open(www / "big.bin", "wb") as f:
                f.write(os.urandom(size_mb * MB))
            tid, cname = start_service(r, hosts[name], f"{BUSYBOX} httpd -f -p 8080 -h /shared/www")
            services[name] = (tid, cname)
        for name in builds:
            wait_port_in_container(services[name][1], 8080)
        ips = {name: container_ip(services[name][1]) for name in builds}

        if "tunnel" in parts:
            want = {name: cpp_client("direct", ips[name], 8080, "/big.bin")["bytes"] for name in builds}
            samples = {name: {"tunnel_MBps": [], "direct_MBps": [], "ratio": []} for name in builds}
            for _, order in orders(runs, list(builds)):
                for name in order:
                    d = cpp_client("direct", ips[name], 8080, "/big.bin")
                    t = cpp_client("tunnel", runners[name].port, services[name][1], 8080, "/big.bin")
                    assert d["bytes"] == t["bytes"] == want[name], (d, t, want[name])
                    s = samples[name]
                    s["tunnel_MBps"].append(t["MBps"])
                    s["direct_MBps"].append(d["MBps"])
                    s["ratio"].append(t["MBps"] / d["MBps"])
            out["tunnel"] = {name: {k: summary(v) for k, v in s.items()} for name, s in samples.items()}

        if "write" in parts:
            data = os.urandom(write_mb * 1000 * 1000)
            src = root / "w.bin"
            src.write_bytes(data)
            body = json.dumps({"path": "/tmp/w.bin", "content": base64.b64encode(data).decode(),
                               "encoding": "base64"}).encode()
            samples = {name: {"api_MBps": [], "cp_MBps": [], "ratio": []} for name in builds}
            mb = len(data) / 1e6
            for _, order in orders(runs, list(builds)):
                for name in order:
                    tid, cname = services[name]
                    req = urllib.request.Request(runners[name].url(f"/api/fs/{tid}/write"), data=body,
                                                 method="POST", headers={"Content-Type": "application/json"})
                    t0 = time.perf_counter()
                    with urllib.request.urlopen(req, timeout=120) as resp:
                        assert resp.status == 200, resp.status
                    api = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    docker("cp", str(src), f"{cname}:/tmp/w2.bin")
                    cp = time.perf_counter() - t0
                    s = samples[name]
                    s["api_MBps"].append(mb / api)
                    s["cp_MBps"].append(mb / cp)
                    s["ratio"].append(cp / api)
            out["write"] = {name: {k: summary(v) for k, v in s.items()} for name, s in samples.items()}
        return out
    finally:
        for name, (tid, cname) in services.items():
            stop_service(runners[name], tid)
        for r in runners.values():
            r.stop()
        for h in hosts.values():
            h.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--debian", default=str(REPO / "build" / "kohakuriver"))
    ap.add_argument("--debian-tunnel", default=str(REPO / "build" / "tunnel-client"))
    ap.add_argument("--release", default=str(REPO / "dist" / "release" / "x86_64" / "kohakuriver"))
    ap.add_argument("--release-tunnel", default=str(REPO / "dist" / "release" / "x86_64" / "tunnel-client"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--parts", default="dispatch,tunnel,write")
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--write-mb", type=int, default=20)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - {"dispatch", "tunnel", "write"}:
        ap.error(f"unknown parts: {sorted(parts - {'dispatch', 'tunnel', 'write'})}")
    builds = {"debian": {"binary": args.debian, "tunnel": args.debian_tunnel},
              "release": {"binary": args.release, "tunnel": args.release_tunnel}}
    for b in builds.values():
        for p in b.values():
            if not Path(p).is_file():
                ap.error(f"{p} does not exist")
    if parts & {"tunnel"}:
        ensure_bench_client()
    load_before = os.getloadavg()
    results = {}
    root = Path(tempfile.mkdtemp(prefix="kr-release-cmp."))
    try:
        if "dispatch" in parts:
            results["dispatch"] = bench_dispatch(builds, args.runs, root)
        if parts & {"tunnel", "write"}:
            results.update(bench_tunnel_write(builds, args.runs, root, parts, args.size_mb, args.write_mb))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    labels = {"dispatch": ("runner_ms", " ms", "direct_ms"), "tunnel": ("tunnel_MBps", " MB/s", "direct_MBps"),
              "write": ("api_MBps", " MB/s", "cp_MBps")}
    print(f"{'figure':<34} {'Debian-linked':>26} {'release':>26} {'rel/Deb':>8}")
    for fig in ("dispatch", "tunnel", "write"):
        if fig not in results:
            continue
        own, unit, ref = labels[fig]
        r = results[fig]
        for key, u in ((own, unit), (ref, unit), ("ratio", "")):
            d, rel = r["debian"][key], r["release"][key]
            print(f"{fig + ' ' + key:<34} {fmt(d, u):>26} {fmt(rel, u):>26} {rel['median'] / d['median']:>8.3f}")
    print("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f"
          % (*results["load_average"]["before"], *results["load_average"]["after"]))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
