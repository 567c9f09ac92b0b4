#!/usr/bin/env python3
"""Runner foundation benchmarks (issue: runner foundation).

Measures, against the fixture host on loopback:
  1. exec → host receives POST /api/register (median of N starts)
  2. idle RSS after --idle seconds with default intervals (5 s heartbeat)
  3. CPU time used over those idle seconds, as % of one core

Prints our numbers next to the upstream Python runner's reference numbers
(measured on a comparable 2-core machine: 91 MiB RSS, 0.77 % of a core idle,
1.42 s exec → online) and the ratios.

Usage: bench/foundation_bench.py [--binary build/kohakuriver] [--idle 60] [--starts 10]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from fixture_host import FixtureHost  # noqa: E402

UPSTREAM = {"rss_mib": 91.0, "cpu_pct": 0.77, "start_s": 1.42}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_config(tmp: Path, host_port: int, runner_port: int, interval: int) -> Path:
    cfg = tmp / "runner_config.py"
    cfg.write_text(
        f'RUNNER_PORT = {runner_port}\nHOST_ADDRESS = "127.0.0.1"\nHOST_PORT = {host_port}\n'
        f'SHARED_DIR = "{tmp}/share"\nLOCAL_TEMP_DIR = "{tmp}/local"\nSTATE_DIR = "{tmp}/state"\n'
        f'HEARTBEAT_INTERVAL_SECONDS = {interval}\nLOG_LEVEL = "warning"\n')
    return cfg


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    # schedstat has nanosecond run time per thread (stat's utime/stime tick
    # at 10 ms, too coarse for a budget of ~24 ms a minute).
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "build" / "kohakuriver"))
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--starts", type=int, default=10)
    args = ap.parse_args()

    host = FixtureHost().start()
    startup = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for _ in range(args.starts):
            cfg = write_config(tmp, host.port, free_port(), 5)
            n = len(host.of_kind("register"))
            t0 = time.monotonic()
            p = subprocess.Popen([args.binary, "runner", "--config", str(cfg)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            reg = host.wait_for("register", count=n + 1, timeout=10)[-1]
            startup.append(reg.at - t0)
            p.terminate()
            p.wait(5)

        cfg = write_config(tmp, host.port, free_port(), 5)
        p = subprocess.Popen([args.binary, "runner", "--config", str(cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host.wait_for("register", count=args.starts + 1, timeout=10)
        time.sleep(2)  # let start-up work settle before the idle window
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        time.sleep(args.idle)
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        rss = rss_kib(p.pid) / 1024
        beats = len(host.of_kind("heartbeat"))
        p.terminate()
        p.wait(5)
    host.stop()

    cpu_pct = (c1 - c0) / (t1 - t0) * 100
    start_med = statistics.median(startup)
    print(f"exec -> registration received: median {start_med * 1000:.1f} ms over {len(startup)} starts "
          f"(min {min(startup) * 1000:.1f}, max {max(startup) * 1000:.1f}); upstream {UPSTREAM['start_s'] * 1000:.0f} ms "
          f"-> {UPSTREAM['start_s'] / start_med:.0f}x faster; target <= 50 ms")
    print(f"idle RSS after {args.idle + 2} s: {rss:.2f} MiB; upstream {UPSTREAM['rss_mib']} MiB "
          f"-> {UPSTREAM['rss_mib'] / rss:.1f}x smaller; target <= 9 MiB")
    print(f"idle CPU over {args.idle} s ({beats} heartbeats): {cpu_pct:.4f} % of one core "
          f"({(c1 - c0) * 1000:.0f} ms); upstream {UPSTREAM['cpu_pct']} % "
          f"-> {UPSTREAM['cpu_pct'] / max(cpu_pct, 1e-6):.0f}x less; target <= 0.04 %")


if __name__ == "__main__":
    main()
