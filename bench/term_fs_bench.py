#!/usr/bin/env python3
"""Terminal and filesystem-API benchmarks (issue 7), measured side by side
in one run against real containers on the local dockerd:

  1. keystroke -> echo round trip through the runner's terminal WebSocket,
     median of --rounds, vs the same TTY exec driven directly through the
     Engine API (hijacked UNIX-socket connection); ratio of medians.
  2. filesystem write of 20 MB through POST /api/fs/{id}/write vs
     `docker cp` of the same file into the container; throughput ratio.
  3. filesystem read of 10 MiB through GET /api/fs/{id}/read vs
     `docker cp` out of the container; throughput ratio.
  4. watch latency: file created through the API -> change message, in
     inotify mode (Debian image) and polling mode (BusyBox image).

Usage (hold the e2e lock exclusively):
  flock -x /tmp/kr-e2e.lock bench/term_fs_bench.py [--rounds 50] [--fs-rounds 3]
      [--parts echo,write,read,watch]
The load average is printed before and after: the throughput ratios move
with it (docker cp and the API compete with whatever else runs). For the
write and read parts the CPU time per operation is printed too (runner,
this client process, the docker CLI, dockerd; from /proc and getrusage),
which the machine's load disturbs far less than wall time.
"""
import argparse
import base64
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from conftest import RunnerProcess  # noqa: E402
from fixture_host import FixtureHost  # noqa: E402
from taskutil import http, new_task_id, submit  # noqa: E402
from wsutil import connect, recv_json, send_json  # noqa: E402

DEBIAN = "kr-test/debian:bookworm"
BUSYBOX = "kr-test/busybox:test"
DOCKER_SOCK = "/var/run/docker.sock"


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True)


def wait_running(name):
    for _ in range(300):
        r = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", name], capture_output=True, text=True)
        if r.stdout.strip() == "running":
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} did not start")


def engine(method, target, body=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(DOCKER_SOCK)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} /v1.41{target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    raw = b""
    while chunk := s.recv(65536):
        raw += chunk
    s.close()
    head, _, body_raw = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body_raw
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body_raw = out
    return json.loads(body_raw) if body_raw.strip() else None


def direct_exec_echo(container, rounds):
    """TTY exec of /bin/bash driven through the Engine API directly."""
    ex = engine("POST", f"/containers/{container}/exec",
                {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": True, "Cmd": ["/bin/bash"]})
    s = socket.socket(socket.AF_UNIX)
    s.connect(DOCKER_SOCK)
    body = b'{"Detach":false,"Tty":true}'
    s.sendall(f"POST /v1.41/exec/{ex['Id']}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
              f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    time.sleep(0.5)
    s.setblocking(False)
    try:
        while s.recv(65536):
            pass
    except BlockingIOError:
        pass
    s.setblocking(True)
    times = []
    for i in range(rounds):
        ch = random.choice("abcdefghijklmnopqrstuvwxyz").encode()
        t0 = time.perf_counter()
        s.sendall(ch)
        got = b""
        while ch not in got:
            got += s.recv(4096)
        times.append(time.perf_counter() - t0)
    s.sendall(b"\x15exit\n")
    s.close()
    return times


def runner_echo(runner, tid, rounds):
    ws = connect(runner, f"/ws/task/{tid}/terminal")
    send_json(ws, {"type": "resize", "rows": 24, "cols": 80})
    ack = recv_json(ws)
    assert ack == {"type": "output", "data": ""}, ack
    time.sleep(0.5)
    ws.settimeout(0.2)
    try:
        while True:
            ws.recv()
    except Exception:
        pass
    ws.settimeout(10)
    times = []
    for _ in range(rounds):
        ch = random.choice("abcdefghijklmnopqrstuvwxyz")
        t0 = time.perf_counter()
        send_json(ws, {"type": "input", "data": ch})
        got = ""
        while ch not in got:
            got += recv_json(ws)["data"]
        times.append(time.perf_counter() - t0)
    send_json(ws, {"type": "input", "data": "\x15exit\n"})
    ws.close()
    return times


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """User+system CPU seconds of process `pid` (all its threads), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def dockerd_pid():
    r = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True)
    return int(r.stdout.split()[0]) if r.returncode == 0 and r.stdout.split() else None


class CpuMeter:
    """CPU seconds spent per operation by: the runner, this (client) process,
    child processes (the docker CLI) and dockerd."""

    def __init__(self, runner_pid):
        self.pids = {"runner": runner_pid, "dockerd": dockerd_pid()}
        self.totals = {}

    def sample(self):
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_child = resource.getrusage(resource.RUSAGE_CHILDREN)
        s = {"client": ru_self.ru_utime + ru_self.ru_stime, "docker CLI": ru_child.ru_utime + ru_child.ru_stime}
        for k, pid in self.pids.items():
            v = proc_cpu(pid) if pid else None
            if v is not None:
                s[k] = v
        return s

    def measure(self, label, fn):
        before = self.sample()
        dt = timed(fn)
        after = self.sample()
        acc = self.totals.setdefault(label, {"n": 0})
        acc["n"] += 1
        for k in after:
            if k in before:
                acc[k] = acc.get(k, 0.0) + after[k] - before[k]
        return dt

    def report(self, label):
        acc = self.totals.get(label)
        if not acc:
            return
        n = acc["n"]
        parts = [f"{k} {acc[k] / n * 1000:.0f} ms" for k in ("runner", "client", "docker CLI", "dockerd") if k in acc]
        print(f"  CPU per operation, {label}: " + ", ".join(parts))


def watch_latency(runner, tid, method, rounds):
    out = []
    for _ in range(rounds):
        ws = connect(runner, f"/ws/fs/{tid}/watch?paths=/shared")
        hello = recv_json(ws)
        assert hello["method"] == method, hello
        time.sleep(0.3 if method == "inotify" else 2.5)  # watches established / first snapshot taken
        target = f"/shared/lat-{random.randrange(10**9)}"
        t0 = time.perf_counter()
        st, rep = http("POST", runner.url(f"/api/fs/{tid}/write"), {"path": target, "content": "x"})
        assert st == 200, rep
        t_written = time.perf_counter()
        while True:
            msg = recv_json(ws, timeout=30)
            if msg.get("type") == "change" and msg["path"] == target:
                break
        out.append((time.perf_counter() - t_written, time.perf_counter() - t0))
        ws.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--fs-rounds", type=int, default=3)
    ap.add_argument("--watch-rounds", type=int, default=5)
    ap.add_argument("--parts", default="echo,write,read,watch",
                    help="comma-separated subset of echo,write,read,watch")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg(), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="kr-termfs-bench-"))
    host = FixtureHost().start()
    runner = RunnerProcess(tmp, host, {"LOG_LEVEL": "info"}, [], None).start()
    runner.wait_listening()
    cpu = CpuMeter(runner.proc.pid)
    deb, bb = new_task_id(), new_task_id()
    submit(runner, deb, "sleep 3600", registry_image=DEBIAN)
    submit(runner, bb, "sleep 3600", registry_image=BUSYBOX)
    cdeb, cbb = f"kohakuriver-task-{deb}", f"kohakuriver-task-{bb}"
    try:
        wait_running(cdeb)
        wait_running(cbb)

        # 1. keystroke echo, interleaved in blocks of 10
        via_runner, direct = [], []
        for _ in range(max(1, args.rounds // 10) if "echo" in parts else 0):
            via_runner += runner_echo(runner, deb, 10)
            direct += direct_exec_echo(cdeb, 10)
        if via_runner:
            m_r, m_d = statistics.median(via_runner) * 1000, statistics.median(direct) * 1000
            print(f"keystroke echo (median of {len(via_runner)}): runner {m_r:.2f} ms, "
                  f"direct Engine API {m_d:.2f} ms, ratio {m_r / m_d:.2f}")

        if "write" in parts:
            # 2. write 20 MB
            data = os.urandom(20 * 1000 * 1000)
            (tmp / "w.bin").write_bytes(data)
            body = json.dumps({"path": "/tmp/w.bin", "content": base64.b64encode(data).decode(),
                               "encoding": "base64"}).encode()
            api_w, cp_w = [], []
            for _ in range(args.fs_rounds):
                def api_write():
                    req = urllib.request.Request(runner.url(f"/api/fs/{deb}/write"), data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=120) as r:
                        assert r.status == 200
                api_w.append(cpu.measure("API write", api_write))
                cp_w.append(cpu.measure("docker cp in", lambda: docker("cp", str(tmp / "w.bin"), f"{cdeb}:/tmp/w2.bin")))
            mb = len(data) / 1e6
            a, c = statistics.median(api_w), statistics.median(cp_w)
            print(f"write 20 MB: API {mb / a:.1f} MB/s ({a * 1000:.0f} ms), docker cp {mb / c:.1f} MB/s "
                  f"({c * 1000:.0f} ms), throughput ratio {c / a:.2f}")
            cpu.report("API write")
            cpu.report("docker cp in")

        if "read" in parts:
            # 3. read 10 MiB
            rdata = os.urandom(10 * 1024 * 1024)
            (tmp / "r.bin").write_bytes(rdata)
            docker("cp", str(tmp / "r.bin"), f"{cdeb}:/tmp/r.bin")
            api_r, cp_r = [], []
            for _ in range(args.fs_rounds):
                def api_read():
                    with urllib.request.urlopen(runner.url(f"/api/fs/{deb}/read?path=/tmp/r.bin&encoding=base64"),
                                                timeout=120) as r:
                        assert base64.b64decode(json.loads(r.read())["content"]) == rdata
                api_r.append(cpu.measure("API read", api_read))
                cp_r.append(cpu.measure("docker cp out", lambda: docker("cp", f"{cdeb}:/tmp/r.bin", str(tmp / "r-out.bin"))))
            mb = len(rdata) / 1e6
            a, c = statistics.median(api_r), statistics.median(cp_r)
            print(f"read 10 MiB: API {mb / a:.1f} MB/s ({a * 1000:.0f} ms, incl. base64+JSON decode in the client), "
                  f"docker cp {mb / c:.1f} MB/s ({c * 1000:.0f} ms), throughput ratio {c / a:.2f}")
            cpu.report("API read")
            cpu.report("docker cp out")

        if "watch" in parts:
            # 4. watch latency
            for tid, method in ((deb, "inotify"), (bb, "polling")):
                lat = watch_latency(runner, tid, method, args.watch_rounds)
                after = statistics.median(x for x, _ in lat) * 1000
                total = statistics.median(y for _, y in lat) * 1000
                print(f"watch latency {method} (median of {len(lat)}): {after:.0f} ms after the write returned "
                      f"({total:.0f} ms from the write request)")
        print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        subprocess.run(["docker", "rm", "-f", cdeb, cbb], capture_output=True)
        runner.stop()
        host.stop()


if __name__ == "__main__":
    main()
