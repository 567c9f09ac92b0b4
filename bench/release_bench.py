#!/usr/bin/env python3
"""The portable release binary against the Debian-linked build, side by side
in one run (issue 17), against the fixture host on loopback:

  1. exec -> registration received by the host
  2. idle RSS (and its anonymous part) after --idle seconds, default intervals
  3. stripped binary size (the Debian-linked one stripped into a temporary copy)

Runs alternate between the two binaries (A B A B ...), --runs of each;
prints medians with min-max spread and the release/Debian ratio of the
medians. The last line is one JSON object.

Usage: bench/release_bench.py [--debian build/kohakuriver]
         [--release dist/release/x86_64/kohakuriver] [--runs 10] [--idle 20]
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
from fixture_host import FixtureHost  # noqa: E402
from foundation_bench import free_port, rss_kib, write_config  # noqa: E402


def rss_anon_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def one_run(binary: str, host: FixtureHost, tmp: Path, idle: float) -> dict:
    cfg = write_config(tmp, host.port, free_port(), 5)
    n = len(host.of_kind("register"))
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "runner", "--config", str(cfg)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reg = host.wait_for("register", count=n + 1, timeout=20)[-1]
        start = reg.at - t0
        time.sleep(idle)
        return {"start_ms": start * 1000, "rss_mib": rss_kib(p.pid) / 1024, "anon_mib": rss_anon_kib(p.pid) / 1024}
    finally:
        p.terminate()
        p.wait(10)


def stripped_size(binary: str, tmp: Path) -> int:
    copy = tmp / "stripped"
    shutil.copyfile(binary, copy)
    subprocess.run(["strip", "-s", str(copy)], check=True)
    return copy.stat().st_size


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--debian", default=str(REPO / "build" / "kohakuriver"))
    ap.add_argument("--release", default=str(REPO / "dist" / "release" / "x86_64" / "kohakuriver"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle", type=float, default=20)
    args = ap.parse_args()
    binaries = {"debian": args.debian, "release": args.release}
    host = FixtureHost().start()
    samples = {k: [] for k in binaries}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for i in range(args.runs):
            order = list(binaries) if i % 2 == 0 else list(reversed(binaries))
            for name in order:
                samples[name].append(one_run(binaries[name], host, tmp, args.idle))
        sizes = {k: stripped_size(b, tmp) for k, b in binaries.items()}
    host.stop()
    out = {"runs": args.runs, "idle_s": args.idle}
    for name in binaries:
        out[name] = {m: summary([s[m] for s in samples[name]]) for m in ("start_ms", "rss_mib", "anon_mib")}
        out[name]["stripped_bytes"] = sizes[name]
    for m, unit in (("start_ms", "ms"), ("rss_mib", "MiB"), ("anon_mib", "MiB")):
        d, r = out["debian"][m], out["release"][m]
        print(f"{m:9s} debian {d['median']:8.2f} {unit} ({d['min']:.2f}-{d['max']:.2f})   "
              f"release {r['median']:8.2f} {unit} ({r['min']:.2f}-{r['max']:.2f})   "
              f"release/debian {r['median'] / d['median']:.2f}")
    print(f"stripped  debian {sizes['debian'] / 1e6:.2f} MB   release {sizes['release'] / 1e6:.2f} MB")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
