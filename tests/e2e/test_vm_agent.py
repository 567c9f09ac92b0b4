"""The VM guest agent (vm.md §8), run on this machine against a stand-in
runner on loopback: phone-home once per start without a body, then
heartbeats with the §8.3 body, urllib-style requests.

The agent is the file embedded into the runner (src/vm/guest_agent.py; a
unit test checks the embedded copy is byte-identical)."""
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port

AGENT = Path(__file__).resolve().parents[2] / "src" / "vm" / "guest_agent.py"


class Recorder:
    def __init__(self, fail_phone_home=False):
        self.requests = []
        self.cond = threading.Condition()
        self.fail_phone_home = fail_phone_home

    def handler(self):
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n) if n else b""
                with rec.cond:
                    rec.requests.append((self.path, dict(self.headers.items()), body))
                    rec.cond.notify_all()
                status = 500 if (rec.fail_phone_home and self.path.endswith("vm-phone-home")) else 200
                out = b'{"status": "ok"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        return H

    def wait_for(self, count, timeout=20):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"only {len(self.requests)} requests arrived: {self.requests}")
                self.cond.wait(left)
            return list(self.requests)


@pytest.fixture
def stand_in():
    def make(**kw):
        rec = Recorder(**kw)
        port = free_port()
        server = ThreadingHTTPServer(("127.0.0.1", port), rec.handler())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return rec, f"http://127.0.0.1:{port}"

    servers = []
    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def start_agent(url, task_id="42", interval="0.3"):
    env = dict(os.environ, KOHAKU_RUNNER_URL=url, KOHAKU_TASK_ID=task_id, KOHAKU_HEARTBEAT_INTERVAL=interval)
    return subprocess.Popen([sys.executable, str(AGENT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=10)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0].decode()


def test_phone_home_once_then_heartbeats(stand_in):
    rec, url = stand_in()
    proc = start_agent(url)
    try:
        reqs = rec.wait_for(4)
    finally:
        stop(proc)
    path, headers, body = reqs[0]
    assert path == "/api/vps/42/vm-phone-home"
    assert headers.get("Content-Length") == "0"
    assert "Content-Type" not in headers
    assert body == b""
    assert headers.get("Connection") == "close"
    assert headers.get("User-Agent", "").startswith("Python-urllib/3.")
    assert headers.get("Accept-Encoding") == "identity"

    assert [r[0] for r in reqs[1:]] == ["/api/vps/42/vm-heartbeat"] * (len(reqs) - 1)
    _, hb_headers, hb_body = reqs[1]
    assert hb_headers.get("Content-Type") == "application/json"
    hb = json.loads(hb_body)
    assert list(hb.keys()) == ["task_id", "timestamp", "gpus", "system", "status"]
    assert hb["task_id"] == 42 and isinstance(hb["task_id"], int)
    assert isinstance(hb["timestamp"], float) and abs(hb["timestamp"] - time.time()) < 60
    assert hb["gpus"] == []  # no NVML here
    assert hb["status"] == "healthy"
    system = hb["system"]
    assert list(system.keys()) == ["memory_total_bytes", "memory_used_bytes", "disk_total_bytes",
                                   "disk_used_bytes", "load_1m"]
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert system["memory_total_bytes"] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert 0 < system["memory_used_bytes"] < system["memory_total_bytes"]
    st = os.statvfs("/")
    assert system["disk_total_bytes"] == st.f_blocks * st.f_frsize
    assert 0 < system["disk_used_bytes"] <= system["disk_total_bytes"]
    assert isinstance(system["load_1m"], float)
    # Only one phone-home per start.
    assert sum(1 for r in reqs if r[0].endswith("vm-phone-home")) == 1


def test_failed_phone_home_is_not_retried(stand_in):
    rec, url = stand_in(fail_phone_home=True)
    proc = start_agent(url)
    try:
        reqs = rec.wait_for(3)
    finally:
        out = stop(proc)
    assert [r[0] for r in reqs[:3]] == ["/api/vps/42/vm-phone-home", "/api/vps/42/vm-heartbeat",
                                         "/api/vps/42/vm-heartbeat"]
    assert "phone-home failed" in out


def test_unreachable_runner_keeps_the_loop_going(stand_in):
    port = free_port()  # nobody listens
    proc = start_agent(f"http://127.0.0.1:{port}", interval="0.2")
    time.sleep(2)
    assert proc.poll() is None
    out = stop(proc)
    assert "phone-home failed" in out and "heartbeat failed" in out


def test_restart_phones_home_again(stand_in):
    rec, url = stand_in()
    first = start_agent(url, task_id="7")
    rec.wait_for(1)
    stop(first)
    second = start_agent(url, task_id="7")
    try:
        deadline = time.time() + 20
        while sum(1 for r in rec.requests if r[0] == "/api/vps/7/vm-phone-home") < 2:
            assert time.time() < deadline, rec.requests
            time.sleep(0.05)
    finally:
        stop(second)


@pytest.mark.parametrize("task_id", ["", "abc"])
def test_bad_task_id_exits_1(task_id):
    env = dict(os.environ, KOHAKU_RUNNER_URL="http://127.0.0.1:9", KOHAKU_TASK_ID=task_id)
    r = subprocess.run([sys.executable, str(AGENT)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "KOHAKU_TASK_ID" in r.stdout
