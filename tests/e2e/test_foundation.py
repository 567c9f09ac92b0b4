"""End-to-end tests of the runner foundation: the real binary against the
fixture host (registration, heartbeat, retries, shutdown, CLI overrides)."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from conftest import BINARY, free_port
from fixture_host import Behaviour, FixtureHost

HEARTBEAT_KEYS = {"running_tasks", "killed_tasks", "cpu_percent", "memory_percent", "memory_used_bytes",
                  "memory_total_bytes", "current_avg_temp", "current_max_temp", "gpu_info", "vm_capable",
                  "vfio_gpus", "runner_version"}


def http(method, url, body=None, timeout=5):
    req = urllib.request.Request(url, method=method, data=body)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def meminfo_total_bytes():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024


def test_registration_body(host, make_runner):
    runner = make_runner(host)
    reg = host.wait_for("register", timeout=10)[0]
    body = reg.json()
    assert reg.method == "POST"
    assert reg.headers.get("Content-Type") == "application/json"
    assert set(body) == {"hostname", "url", "total_cores", "total_ram_bytes", "numa_topology", "gpu_info"}
    assert body["hostname"] == socket.gethostname()
    # Bound to 0.0.0.0 with the host on loopback: the UDP-connect trick
    # yields the loopback source address.
    assert body["url"] == f"http://127.0.0.1:{runner.port}"
    assert type(body["total_cores"]) is int and body["total_cores"] == os.cpu_count()
    assert type(body["total_ram_bytes"]) is int and body["total_ram_bytes"] == meminfo_total_bytes()
    assert body["gpu_info"] == []  # no NVML on the test machine
    topo = body["numa_topology"]
    if os.path.isdir("/sys/devices/system/node/node0"):
        assert isinstance(topo, dict) and "0" in topo
        cores = sorted(c for n in topo.values() for c in n["cores"])
        assert cores == list(range(os.cpu_count()))
        assert all(type(n["memory_bytes"]) is int and n["memory_bytes"] > 0 for n in topo.values())
    else:
        assert topo is None


def test_registration_url_uses_bind_ip(host, make_runner):
    runner = make_runner(host, RUNNER_BIND_IP="127.0.0.1")
    body = host.wait_for("register", timeout=10)[0].json()
    assert body["url"] == f"http://127.0.0.1:{runner.port}"


def test_listens_before_registering(host, make_runner):
    runner = make_runner(host)
    reg = host.wait_for("register", timeout=10)[0]
    # When the host sees the registration, the runner's port already accepts.
    with socket.create_connection(("127.0.0.1", runner.port), timeout=1):
        pass
    assert reg.at - runner.started_at < 5


def test_heartbeat_cadence_and_body(host, make_runner):
    make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    beats = host.wait_for("heartbeat", count=4, timeout=15)
    reg = host.of_kind("register")[0]
    assert beats[0].path == f"/api/heartbeat/{socket.gethostname()}"
    assert beats[0].method == "PUT"
    # Sleep first, then send: the first beat comes about one interval after
    # registration, and the period is about one interval (loose bounds: the
    # machine is shared and noisy).
    assert 0.5 < beats[0].at - reg.at < 4
    gaps = [b.at - a.at for a, b in zip(beats, beats[1:])]
    assert all(0.5 < g < 4 for g in gaps), gaps
    for b in beats:
        body = b.json()
        assert set(body) == HEARTBEAT_KEYS
        assert body["running_tasks"] == [] and body["killed_tasks"] == []
        assert isinstance(body["cpu_percent"], float) and 0.0 <= body["cpu_percent"] <= 100.0
        assert isinstance(body["memory_percent"], float) and 0.0 < body["memory_percent"] < 100.0
        assert type(body["memory_used_bytes"]) is int and body["memory_used_bytes"] > 0
        assert body["memory_total_bytes"] == meminfo_total_bytes()
        for k in ("current_avg_temp", "current_max_temp"):
            assert body[k] is None or isinstance(body[k], float)
        assert body["gpu_info"] == []
        assert isinstance(body["vm_capable"], bool)
        assert body["vfio_gpus"] is None
        assert isinstance(body["runner_version"], str) and body["runner_version"]


def test_registration_retried_while_host_starts_late(make_runner, tmp_path):
    port = free_port()
    runner = make_runner(None, HOST_PORT=port)
    runner.wait_listening()
    time.sleep(1.5)  # host is down: first attempt fails
    late = FixtureHost(port).start()
    try:
        reg = late.wait_for("register", timeout=20)
        assert reg[0].json()["hostname"] == socket.gethostname()
        late.wait_for("heartbeat", timeout=10)
        assert "Registration with host failed" in runner.output()
    finally:
        late.stop()


def test_registration_retried_after_http_errors_and_garbage(host, make_runner):
    host.behaviours["register"] = Behaviour(status=500, body=b"oops")
    make_runner(host)
    host.wait_for("register", count=1, timeout=10)
    host.behaviours["register"] = Behaviour(status=200, body=b"<html>not json</html>")
    host.wait_for("register", count=2, timeout=15)
    host.behaviours.pop("register")
    host.wait_for("register", count=3, timeout=20)
    host.wait_for("heartbeat", timeout=10)


def test_reregisters_after_heartbeat_404(host, make_runner):
    make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    host.wait_for("heartbeat", count=1, timeout=10)
    host.behaviours["heartbeat"] = Behaviour(
        status=404, body=b'{"detail":"Node x not registered. Please register first."}')
    regs = host.wait_for("register", count=2, timeout=10)
    host.behaviours.pop("heartbeat")
    n = len(host.of_kind("heartbeat"))
    host.wait_for("heartbeat", count=n + 2, timeout=10)
    assert regs[1].json()["hostname"] == socket.gethostname()


def test_keeps_beating_through_slow_and_failing_host(host, make_runner):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    host.wait_for("heartbeat", count=1, timeout=10)
    host.behaviours["heartbeat"] = Behaviour(status=500)
    n = len(host.of_kind("heartbeat"))
    host.wait_for("heartbeat", count=n + 2, timeout=10)
    host.behaviours["heartbeat"] = Behaviour(close_without_reply=True)
    n = len(host.of_kind("heartbeat"))
    host.wait_for("heartbeat", count=n + 2, timeout=10)
    host.behaviours["heartbeat"] = Behaviour(delay=1.5)
    n = len(host.of_kind("heartbeat"))
    host.wait_for("heartbeat", count=n + 2, timeout=15)
    host.behaviours.pop("heartbeat")
    assert runner.proc.poll() is None
    status, _, _ = http("GET", runner.url("/healthz"))
    assert status == 200


def test_sigterm_stops_quickly(host, make_runner):
    runner = make_runner(host)
    host.wait_for("register", timeout=10)
    t0 = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    rc = runner.proc.wait(5)
    assert rc == 0
    assert time.monotonic() - t0 < 2.0


def test_sigint_stops_while_host_is_down(make_runner):
    runner = make_runner(None)  # registration keeps failing and backing off
    runner.wait_listening()
    time.sleep(0.5)
    t0 = time.monotonic()
    runner.send_signal(signal.SIGINT)
    assert runner.proc.wait(5) == 0
    assert time.monotonic() - t0 < 2.0


def test_bind_and_port_override_config(host, make_runner):
    cli_port = free_port()
    runner = make_runner(host, args=["--bind", "127.0.0.1", "--port", str(cli_port)])
    runner.wait_listening(port=cli_port)
    body = host.wait_for("register", timeout=10)[0].json()
    assert body["url"] == f"http://127.0.0.1:{cli_port}"
    # The config file's port is not used.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", runner.port)) != 0


def test_port_in_use_exits_1(host, make_runner):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        runner = make_runner(host, RUNNER_BIND_IP="127.0.0.1", RUNNER_PORT=port)
        assert runner.proc.wait(10) == 1
    assert host.of_kind("register") == []  # never registered a URL it cannot serve


def test_missing_explicit_config_exits_1(binary, tmp_path):
    r = subprocess.run([str(binary), "runner", "--config", str(tmp_path / "nope.py")], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert f"Config file not found: {tmp_path / 'nope.py'}" in r.stdout + r.stderr


def test_malformed_config_names_file_and_line(binary, tmp_path):
    cfg = tmp_path / "bad.py"
    cfg.write_text('RUNNER_PORT = 8001\nHOST_PORT = "eight"\n')
    r = subprocess.run([str(binary), "runner", "--config", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"{cfg}:2" in r.stdout + r.stderr


def test_http_conventions(host, make_runner):
    runner = make_runner(host)
    runner.wait_listening()
    status, headers, body = http("GET", runner.url("/api/nothing-here"))
    assert status == 404 and json.loads(body) == {"detail": "Not Found"}
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    status, headers, body = http("POST", runner.url("/healthz"), b"{}")
    assert status == 405 and json.loads(body) == {"detail": "Method Not Allowed"}
    assert headers["allow"] == "GET"
    # Trailing slash → 307 to the slash-less path (urllib follows it).
    req = urllib.request.Request(runner.url("/healthz/"))
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and r.url.endswith("/healthz")
    status, _, body = http("GET", runner.url("/healthz"))
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"


def test_keep_alive_connection_reused(host, make_runner):
    import http.client
    runner = make_runner(host)
    runner.wait_listening()
    conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.status == 200
        r.read()
    assert conn.sock is not None  # not closed by the server between requests
    conn.close()


def test_garbage_requests_do_not_crash(host, make_runner):
    runner = make_runner(host)
    runner.wait_listening()
    for payload in [b"GARBAGE\r\n\r\n", b"\x00\xff" * 100, b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                    b"POST /healthz HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", runner.port), timeout=2) as s:
            s.sendall(payload)
            try:
                s.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    status, _, _ = http("GET", runner.url("/healthz"))
    assert status == 200 and runner.proc.poll() is None


def test_log_file_written(host, make_runner, tmp_path):
    log = tmp_path / "runner-file.log"
    make_runner(host, RUNNER_LOG_FILE=str(log))
    host.wait_for("register", timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "Registered with host" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    assert "Registered with host" in log.read_text()


def test_log_level_warning_hides_info(host, make_runner):
    runner = make_runner(host, LOG_LEVEL="warning")
    host.wait_for("register", timeout=10)
    time.sleep(0.3)
    assert "Registered with host" not in runner.output()


def test_sd_notify_ready_and_stopping(host, make_runner, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    try:
        runner = make_runner(host, env={"NOTIFY_SOCKET": sock_path})
        msg = sock.recv(4096).decode()
        assert msg == "READY=1"
        # READY means listening.
        with socket.create_connection(("127.0.0.1", runner.port), timeout=1):
            pass
        runner.send_signal(signal.SIGTERM)
        assert sock.recv(4096).decode() == "STOPPING=1"
        assert runner.proc.wait(5) == 0
    finally:
        sock.close()


def test_init_config_and_service_outputs(binary, tmp_path):
    out_dir = tmp_path / "cfg"
    r = subprocess.run([str(binary), "init", "config", "--runner", "--output-dir", str(out_dir)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    cfg = out_dir / "runner_config.py"
    text = cfg.read_text()
    assert "def config_gen():" in text and "RUNNER_PORT" in text and "STATE_DIR" in text
    # Never overwrites.
    cfg.write_text(text + "\n# operator edit\n")
    r = subprocess.run([str(binary), "init", "config", "--runner", "--output-dir", str(out_dir)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "already exists" in (r.stdout + r.stderr)
    assert cfg.read_text().endswith("# operator edit\n")
    # The generated file loads: the runner starts from it (port changed so
    # it does not clash) and exits cleanly on SIGTERM.
    port = free_port()
    cfg.write_text(cfg.read_text().replace("RUNNER_PORT: int = 8001", f"RUNNER_PORT: int = {port}")
                   .replace('STATE_DIR: str = "/var/lib/kohakuriver"', f'STATE_DIR: str = "{tmp_path / "st"}"'))
    p = subprocess.Popen([str(binary), "runner", "--config", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("runner from the generated config did not listen")
    finally:
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=10)[0]
    assert p.returncode == 0, out
    # init service --no-install writes the unit into the current directory.
    r = subprocess.run([str(binary), "init", "service", "--runner", "--runner-config", str(cfg),
                        "--working-dir", str(tmp_path), "--no-install"], capture_output=True, text=True,
                       timeout=10, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    unit = (tmp_path / "kohakuriver-runner.service").read_text()
    assert f"ExecStart={binary.resolve()} runner --config {cfg}" in unit
    for line in ("After=network.target docker.service", "Wants=docker.service", "Restart=on-failure",
                 "RestartSec=5", "KillMode=process", "Type=notify", "WatchdogSec=30", "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
    assert "User=" not in unit


def test_unprovided_subcommand_exits_2(binary):
    r = subprocess.run([str(binary), "host"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "host" in r.stderr
    r = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "0.1.0" in r.stdout
    r = subprocess.run([str(BINARY.parent / "kohakuriver.runner"), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--config" in r.stdout
