#!/usr/bin/env python3
"""Cross-node overlay figures on the cluster of `scripts/cluster.sh up`
(issue 19): TCP throughput and round-trip time between a container on node
1 and one on node 2 over the runners' VXLAN overlay (through the host's
hub), against the same two node namespaces talking directly over the
underlay bridge, side by side in one run.

    bench/cluster_overlay_bench.py [--mib 200] [--rounds 3]

TCP: busybox wget of a file from busybox httpd (the same file, the same
tools on both paths). RTT: busybox ping, 20 probes. Last line: one JSON
object."""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from clusterutil import CLUSTER, node_docker, overlay_ip  # noqa: E402

DIR = Path("/run/krc/bench")
IMAGE = "kohakuriver/krcbox:base"  # loaded by the runners from the shared tarball
NET = "kohakuriver-overlay"


def sh(*args, timeout=300):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=True).stdout


def timed(*args) -> float:
    t = time.monotonic()
    sh(*args)
    return time.monotonic() - t


def ping_avg(out: str) -> float:
    return float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    DIR.mkdir(parents=True, exist_ok=True)
    sh("dd", "if=/dev/urandom", f"of={DIR}/f", "bs=1M", f"count={args.mib}", "status=none")
    for k in (1, 2):
        if node_docker(k, "image", "inspect", IMAGE, check=False).returncode != 0:
            sys.exit(f"{IMAGE} not on node {k}: run one task there first (the runner loads it)")
    node_docker(2, "run", "-d", "--rm", "--name", "krc-bench-srv", "--network", NET, "-v", f"{DIR}:/w:ro", IMAGE,
                "httpd", "-f", "-p", "5900", "-h", "/w")
    node_docker(1, "run", "-d", "--rm", "--name", "krc-bench-cli", "--network", NET, IMAGE, "sleep", "3600")
    # In node 2's namespaces and cgroup, so `cluster.sh down` ends it if we do not.
    direct = subprocess.Popen([str(CLUSTER), "exec", "2", "busybox", "httpd", "-f", "-p", "5900", "-h", str(DIR)])
    try:
        srv = overlay_ip(2, "krc-bench-srv")
        time.sleep(1)
        dock = ["docker", "-H", "unix:///run/krc/n1/docker.sock", "exec", "krc-bench-cli"]
        ov, di = [], []
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            ov.append(timed(*dock, "wget", "-q", "-O", "/dev/null", f"http://{srv}:5900/f"))
            di.append(timed("ip", "netns", "exec", "krc-n1", "busybox", "wget", "-q", "-O", "/dev/null",
                            "http://10.233.19.12:5900/f"))
        rtt_ov = ping_avg(sh(*dock, "ping", "-c", "20", "-i", "0.2", srv))
        rtt_di = ping_avg(sh("ip", "netns", "exec", "krc-n1", "ping", "-c", "20", "-i", "0.2", "10.233.19.12"))
    finally:
        direct.terminate()
        direct.wait()
        node_docker(2, "rm", "-f", "krc-bench-srv", check=False)
        node_docker(1, "rm", "-f", "krc-bench-cli", check=False)
        (DIR / "f").unlink(missing_ok=True)
    mib_s = lambda ts: round(args.mib / statistics.median(ts), 1)  # noqa: E731
    result = {"mib": args.mib, "rounds": args.rounds, "overlay_mib_s": mib_s(ov), "direct_mib_s": mib_s(di),
              "overlay_over_direct": round(mib_s(ov) / mib_s(di), 2), "overlay_rtt_ms": rtt_ov,
              "direct_rtt_ms": rtt_di}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
