#!/usr/bin/env python3
"""Request-path benchmark (issue 6): did the request limits cost latency or
idle memory? Runs two runner binaries side by side (interleaved rounds,
same machine, same config, no host) and prints each one's numbers and the
ratio:
  1. GET /healthz on a kept-alive connection (median µs of N)
  2. GET /healthz on a new connection each time (connect + request)
  3. POST /api/kill with an invalid body (the 422 path)
  4. POST /api/execute with a 1 MiB body missing its fields (read + 422)
  5. RSS after start-up and after the requests

Usage: bench/request_bench.py --binary build/kohakuriver --baseline /work/main/build/kohakuriver [--n 2000]
"""
import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from foundation_bench import free_port, rss_kib  # noqa: E402


def start(binary: str, tmp: Path):
    port = free_port()
    cfg = tmp / "runner_config.py"
    cfg.write_text(f'RUNNER_PORT = {port}\nHOST_ADDRESS = "127.0.0.1"\nHOST_PORT = {free_port()}\n'
                   f'SHARED_DIR = "{tmp}/share"\nLOCAL_TEMP_DIR = "{tmp}/local"\nSTATE_DIR = "{tmp}/state"\n'
                   f'LOG_LEVEL = "warning"\n')
    for d in ("share", "local"):
        (tmp / d).mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, "runner", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    time.sleep(1.0)
    return proc, port


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e6)
    return statistics.median(out)


def measure(port, n):
    keep = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def keepalive():
        keep.request("GET", "/healthz")
        keep.getresponse().read()

    def fresh():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/healthz")
        c.getresponse().read()
        c.close()

    bad_kill = json.dumps({"task_id": "x", "container_name": 5})

    def kill422():
        keep.request("POST", "/api/kill", body=bad_kill, headers={"Content-Type": "application/json"})
        keep.getresponse().read()

    big = json.dumps({"command": "x" * (1 << 20)})

    def exec422():
        keep.request("POST", "/api/execute", body=big, headers={"Content-Type": "application/json"})
        keep.getresponse().read()

    r = {"healthz keep-alive (µs)": timed(keepalive, n), "healthz new connection (µs)": timed(fresh, n // 2),
         "kill 422 (µs)": timed(kill422, n), "execute 1 MiB 422 (µs)": timed(exec422, max(20, n // 50))}
    keep.close()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "build" / "kohakuriver"))
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results = {"this": [], "baseline": []}
    rss = {"this": [], "baseline": []}
    for _ in range(args.rounds):
        for name, binary in (("this", args.binary), ("baseline", args.baseline)):
            with tempfile.TemporaryDirectory() as d:
                proc, port = start(binary, Path(d))
                try:
                    idle = rss_kib(proc.pid) / 1024
                    results[name].append(measure(port, args.n))
                    rss[name].append((idle, rss_kib(proc.pid) / 1024))
                finally:
                    proc.terminate()
                    proc.wait(10)
    keys = results["this"][0].keys()
    print(f"{'metric':32} {'this':>10} {'baseline':>10} {'ratio':>7}")
    for k in keys:
        a = statistics.median(r[k] for r in results["this"])
        b = statistics.median(r[k] for r in results["baseline"])
        print(f"{k:32} {a:10.1f} {b:10.1f} {a / b:7.3f}")
    for i, label in ((0, "RSS after start (MiB)"), (1, "RSS after requests (MiB)")):
        a = statistics.median(x[i] for x in rss["this"])
        b = statistics.median(x[i] for x in rss["baseline"])
        print(f"{label:32} {a:10.2f} {b:10.2f} {a / b:7.3f}")


if __name__ == "__main__":
    main()
