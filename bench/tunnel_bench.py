#!/usr/bin/env python3
"""Port-forwarding benchmarks (issue: port forwarding), side by side in one
run against the real runner, a real container running our static
tunnel-client, and the fixture host:

  1. one stream: a --size-mb file fetched through /ws/forward vs plain TCP
     from the same client (this script) to the container's address; MB/s
     and the ratio (goal >= 0.5).
  2. 16 parallel streams, same comparison (aggregate MB/s).
  3. added latency: --rounds small request/response round trips (64 bytes
     to an echo service) through the tunnel vs direct; median and p99.
  4. runner RSS with 200 open forwarded connections (before/after).
  5. tunnel-client: static binary size and idle RSS inside the container.

Two user sides, each used for both paths of its comparison:
  * "cpp": build/tunnel_bench_client (bench/tunnel_bench_client.cpp, built
    here on demand): 4 MiB reads, frame headers parsed in place, payload
    never copied. This is the number for the ratio goal: the Python client
    itself caps the tunnel side (it parses every frame in Python and hands
    each message to the consumer through a queue).
  * "python": tests/e2e/wsclient.py, kept for continuity with earlier runs.
The load average before and after is printed with the results.

Usage: bench/tunnel_bench.py [--size-mb 200] [--parallel 16] [--rounds 500]
Needs: build/kohakuriver, build/tunnel-client, dockerd, kr-test/busybox:test
and kr-test/debian:bookworm. Hold the e2e lock exclusively.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from conftest import RunnerProcess  # noqa: E402
from fixture_host import FixtureHost  # noqa: E402
from taskutil import docker  # noqa: E402
from tunnelutil import (BUSYBOX, DEBIAN, TUNNEL_CLIENT, rss_kib, runner_overrides, share_dir, start_service,  # noqa: E402
                        stop_service, wait_port_in_container)
from wsclient import CLOSE, CONNECTED, DATA, Forward  # noqa: E402

MB = 1 << 20


BENCH_CLIENT = REPO / "build" / "tunnel_bench_client"


def ensure_bench_client():
    if not BENCH_CLIENT.exists():
        subprocess.run(["cmake", "--build", str(REPO / "build"), "--target", "tunnel_bench_client"], check=True)


def cpp_client(*args):
    out = subprocess.run([str(BENCH_CLIENT), *map(str, args)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def cpp_compare(ip, runner_port, name, path, streams, rounds, want_bytes):
    """Best MB/s of `rounds` alternating direct/tunnel fetches (C++ client)."""
    tun, dire = [], []
    for _ in range(rounds):
        d = cpp_client("direct", ip, 8080, path, streams)
        t = cpp_client("tunnel", runner_port, name, 8080, path, streams)
        assert d["bytes"] == t["bytes"] == want_bytes, (d, t, want_bytes)
        dire.append(d["MBps"])
        tun.append(t["MBps"])
    # Each pair ran back to back: its ratio compares the two paths under the
    # same machine state; the median of the pairs is the robust figure on a
    # shared machine, best/best the optimistic one for each side.
    pairs = sorted(t / d for t, d in zip(tun, dire))
    return {"tunnel": max(tun), "direct": max(dire), "ratio": max(tun) / max(dire),
            "median_pair_ratio": statistics.median(pairs), "pair_ratios": [round(p, 3) for p in pairs],
            "tunnel_runs": tun, "direct_runs": dire}


def container_ip(name):
    out = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name).stdout
    return out.split()[0]


def direct_get(ip, path, port=8080):
    s = socket.create_connection((ip, port))
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    n = 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        n += len(b)
    s.close()
    return n


def tunnel_get(fwd, cid, path):
    fwd.connect(cid, 8080)
    fwd.send(cid, f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    n = 0
    q = fwd.q(cid)
    while True:
        mtype, payload = q.get(timeout=300)
        if mtype == DATA:
            n += len(payload)
        elif mtype == CONNECTED:
            continue
        else:
            return n


def timed(fn):
    t0 = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0


def parallel(fn, k):
    res = [0] * k
    def run(i):
        res[i] = fn(i)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(res), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--cpp-rounds", type=int, default=5)
    a = ap.parse_args()
    ensure_bench_client()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="kr-tunnel-bench."))
    host = FixtureHost().start()
    runner = RunnerProcess(tmp, host, dict(runner_overrides(), LOG_LEVEL="info"), [], None)
    runner.start()
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    time.sleep(1)
    fresh_rss = rss_kib(runner.proc.pid)
    www = share_dir(runner) / "www"
    www.mkdir()
    with open(www / "big.bin", "wb") as f:
        f.write(os.urandom(a.size_mb * MB))
    per = max(1, a.size_mb // a.parallel)
    with open(www / "part.bin", "wb") as f:
        f.write(os.urandom(per * MB))
    tids = []
    results = {}
    try:
        tid, name = start_service(runner, host, f"{BUSYBOX} httpd -f -p 8080 -h /shared/www")
        tids.append(tid)
        wait_port_in_container(name, 8080)
        etid, echo = start_service(
            runner, host,
            "perl -MIO::Socket::INET -e '$l=IO::Socket::INET->new(LocalPort=>7007,Listen=>256,ReuseAddr=>1) or die;"
            "while($c=$l->accept){ if(!fork){ while(sysread($c,$b,65536)){ syswrite($c,$b) } exit } close $c }'",
            image=DEBIAN)
        tids.append(etid)
        wait_port_in_container(echo, 7007)
        ip, eip = container_ip(name), container_ip(echo)

        # 5. tunnel-client size and idle RSS in the container (before any traffic)
        out = docker("exec", name, "sh", "-c", "cat /proc/$(pidof tunnel-client)/status").stdout
        rss = [l for l in out.splitlines() if l.startswith("VmRSS:")][0].split()[1]
        results["tunnel_client"] = {"size_bytes": TUNNEL_CLIENT.stat().st_size,
                                    "size_MiB": TUNNEL_CLIENT.stat().st_size / MB,
                                    "idle_rss_KiB_in_container": int(rss)}

        # 1-2 with the C++ user side (HTTP/1.0 response: headers + body)
        want_big = cpp_client("direct", ip, 8080, "/big.bin")["bytes"]
        want_part = cpp_client("direct", ip, 8080, "/part.bin", a.parallel)["bytes"]
        assert want_big > a.size_mb * MB, want_big  # body + HTTP head
        results["cpp_client"] = {
            "one_stream_MBps": cpp_compare(ip, runner.port, name, "/big.bin", 1, a.cpp_rounds, want_big),
            f"{a.parallel}_streams_MBps": cpp_compare(ip, runner.port, name, "/part.bin", a.parallel, a.cpp_rounds,
                                                      want_part),
        }

        # 1. one stream, alternating, best of 3 each (Python user side)
        fwd = Forward(runner.port, name, 8080)
        tun, dire = [], []
        for i in range(3):
            n, t = timed(lambda: direct_get(ip, "/big.bin"))
            dire.append(n / t / 1e6)
            n, t = timed(lambda: tunnel_get(fwd, 100 + i, "/big.bin"))
            tun.append(n / t / 1e6)
        results["python_client_one_stream_MBps"] = {"tunnel": max(tun), "direct": max(dire), "ratio": max(tun) / max(dire)}

        # 2. parallel streams (one forward session per stream, like separate CLI connections? no:
        #    the CLI multiplexes; use one session for all, as `kohakuriver forward` does)
        n, t = parallel(lambda i: direct_get(ip, "/part.bin"), a.parallel)
        d_par = n / t / 1e6
        n, t = parallel(lambda i: tunnel_get(fwd, 1000 + i, "/part.bin"), a.parallel)
        t_par = n / t / 1e6
        results[f"python_client_{a.parallel}_streams_MBps"] = {"tunnel": t_par, "direct": d_par, "ratio": t_par / d_par}
        fwd.close()

        # 3. latency of a 64-byte request/response
        efwd = Forward(runner.port, echo, 7007)
        efwd.connect(1, 7007)
        msg = b"x" * 64
        lat_t, lat_d = [], []
        s = socket.create_connection((eip, 7007))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        q = efwd.q(1)
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < len(msg):
                got += len(s.recv(4096))
            lat_d.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            efwd.send(1, msg)
            got = 0
            while got < len(msg):
                mtype, p = q.get(timeout=10)
                if mtype == DATA:
                    got += len(p)
            lat_t.append(time.perf_counter() - t0)
        s.close()
        efwd.close()
        med = lambda v: statistics.median(v) * 1e6  # noqa: E731
        p99 = lambda v: sorted(v)[int(len(v) * 0.99) - 1] * 1e6  # noqa: E731
        results["latency_us"] = {"tunnel_median": med(lat_t), "direct_median": med(lat_d),
                                 "added_median": med(lat_t) - med(lat_d),
                                 "tunnel_p99": p99(lat_t), "direct_p99": p99(lat_d)}

        # 4. runner RSS with N open forwarded connections
        pid = runner.proc.pid
        time.sleep(1)
        before = rss_kib(pid)
        sessions = [Forward(runner.port, echo, 7007) for _ in range(4)]
        per_s = a.conns // len(sessions)
        for si, fs in enumerate(sessions):
            for cid in range(1, per_s + 1):
                fs.connect(cid, 7007)
        for fs in sessions:
            for cid in range(1, per_s + 1):
                fs.send(cid, b"ping")
        for fs in sessions:
            for cid in range(1, per_s + 1):
                while fs.q(cid).get(timeout=30)[0] != DATA:
                    pass
        time.sleep(1)
        during = rss_kib(pid)
        for fs in sessions:
            fs.close()
        results["runner_rss_MiB"] = {"fresh": fresh_rss / 1024, "before_after_transfers": before / 1024, f"with_{a.conns}_connections": during / 1024,
                                     "per_connection_KiB": (during - before) / a.conns}

    finally:
        for t in tids:
            stop_service(runner, t)
        runner.stop()
        host.stop()
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
