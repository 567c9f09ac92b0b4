#!/usr/bin/env python3
"""VXLAN overlay benchmarks (issue 9), measured side by side in one run.

Builds the namespace topology of tests/e2e/test_overlay.py (hub netns doing
what the upstream host does, a scripted second runner side with one
"container" netns), starts our runner in the root namespace against the
fixture host, runs one real Docker container through it, then measures:

  1. TCP throughput container -> remote container across the overlay
     (Docker container on kohaku-overlay -> vxlan0 -> hub -> vxlan0 -> netns),
     against the same two network namespaces joined by a plain veth pair
     (no VXLAN, no hub); ratio overlay/direct. Python sender/receiver
     (1 MiB writes), --seconds per run, --rounds rounds interleaved, medians.
  2. Time from registration reply to overlay ready (healthz last_apply_ms):
     first configuration (devices, rules and Docker network created) and the
     idempotent check on a runner restart; --restarts fresh cold runs each
     (cleanup in between).

Changes host-wide links, routes, iptables rules and a Docker network: hold
the e2e lock exclusively:
    E2E_EXCLUSIVE=1 flock -x /tmp/kr-e2e.lock bench/overlay_bench.py
(or `flock -x /tmp/kr-e2e.lock bench/overlay_bench.py`). Cleans up after
itself. Usage: bench/overlay_bench.py [--seconds 3] [--rounds 3] [--restarts 3]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import test_overlay as topo  # noqa: E402
from conftest import BINARY, RunnerProcess  # noqa: E402
from fixture_host import FixtureHost  # noqa: E402
from taskutil import IMAGE, docker, http, new_task_id, submit, wait_until  # noqa: E402

RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0; t0 = None
while True:
    k = c.recv_into(buf)
    if not k: break
    if t0 is None: t0 = time.monotonic()
    n += k
print(n / (time.monotonic() - t0), flush=True)
"""

SENDER = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
data = bytes(1 << 20); end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end: c.sendall(data)
c.close()
"""


def throughput(sender_netns_path, receiver_ns, addr, seconds, port=5201):
    rx = subprocess.Popen(["ip", "netns", "exec", receiver_ns, sys.executable, "-c", RECEIVER, addr, str(port)],
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    subprocess.run(["nsenter", f"--net={sender_netns_path}", sys.executable, "-c", SENDER, addr, str(port),
                    str(seconds)], check=True, timeout=seconds + 30)
    out = rx.stdout.readline().strip()
    rx.wait(timeout=30)
    return float(out) * 8 / 1e9  # Gbit/s


def start(runner):
    runner.start()
    runner.wait_listening()


def wait_ready(runner, pred=None, timeout=60):
    last = {}

    def ok():
        nonlocal last
        _, body = http("GET", runner.url("/healthz"))
        last = body.get("overlay", {})
        return last.get("state") == "ready" and "last_apply_ms" in last and (pred is None or pred(last))
    wait_until(ok, timeout=timeout, what="overlay ready")
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--restarts", type=int, default=3)
    args = ap.parse_args()

    topo.build_topology()
    host = FixtureHost(bind=topo.RUNNER_PHYS).start()
    host.overlay = topo.allocation(1)
    tmp = Path(tempfile.mkdtemp(prefix="kr-overlay-bench-"))
    runner = RunnerProcess(tmp, host, {"HOST_ADDRESS": topo.RUNNER_PHYS, "LOG_LEVEL": "info"}, [], None)
    cleanup = [str(BINARY), "overlay", "cleanup", "--config", str(runner.config_path)]
    container = None
    try:
        subprocess.run(cleanup, capture_output=True)
        cold, warm = [], []
        for _ in range(args.restarts):
            start(runner)
            cold.append(wait_ready(runner)["last_apply_ms"])
            runner.stop()
            start(runner)
            st = wait_ready(runner)
            assert st["last_changes"] == [], st
            warm.append(st["last_apply_ms"])
            runner.stop()
            subprocess.run(cleanup, capture_output=True, check=True)
        start(runner)
        wait_ready(runner)

        tid = new_task_id()
        container = f"kohakuriver-task-{tid}"
        submit(runner, tid, "sleep 3600", registry_image=IMAGE)
        wait_until(lambda: docker("inspect", "-f", "{{.State.Pid}}", container, check=False).stdout.strip()
                   not in ("", "0"), timeout=60, what="container running")
        pid = docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
        netns = f"/proc/{pid}/ns/net"
        # The direct path: the same two namespaces joined by one veth pair.
        topo.sh("ip", "link", "add", "kro-bA", "type", "veth", "peer", "name", "kro-bB", "netns", "kro-c2")
        topo.sh("ip", "link", "set", "kro-bA", "netns", pid)
        topo.sh("nsenter", f"--net={netns}", "ip", "addr", "add", "10.99.0.1/30", "dev", "kro-bA")
        topo.sh("nsenter", f"--net={netns}", "ip", "link", "set", "kro-bA", "up")
        topo.ns("kro-c2", "ip", "addr", "add", "10.99.0.2/30", "dev", "kro-bB")
        topo.ns("kro-c2", "ip", "link", "set", "kro-bB", "up")

        overlay, direct = [], []
        for _ in range(args.rounds):
            overlay.append(throughput(netns, "kro-c2", "10.128.128.2", args.seconds))
            direct.append(throughput(netns, "kro-c2", "10.99.0.2", args.seconds))
        o, d = statistics.median(overlay), statistics.median(direct)
        print(json.dumps({
            "throughput_gbit_s": {"overlay": [round(x, 2) for x in overlay], "direct_veth": [round(x, 2) for x in direct],
                                  "median_overlay": round(o, 2), "median_direct": round(d, 2),
                                  "ratio_overlay_over_direct": round(o / d, 3)},
            "registration_to_ready_ms": {"first_configuration": cold, "median_first": statistics.median(cold),
                                         "restart_verify": warm, "median_restart": statistics.median(warm)},
        }, indent=2))
    finally:
        if container:
            docker("rm", "-f", container, check=False)
        if runner.proc and runner.proc.poll() is None:
            runner.stop()
        subprocess.run(cleanup, capture_output=True)
        host.stop()
        topo.teardown_topology()


if __name__ == "__main__":
    main()
