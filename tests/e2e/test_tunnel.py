"""End-to-end port forwarding (tunnel-overlay.md §1-2, rulings T1-T10): the
real runner, real containers running our static tunnel-client, and a user
side that speaks the protocol exactly as the host's proxy relays the CLI."""
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import RunnerProcess
from fixture_host import FixtureHost
from taskutil import docker, wait_until
from tunnelutil import (BUSYBOX, TUNNEL_CLIENT, runner_overrides, rss_kib, share_dir, start_service,
                        stop_service, wait_port_in_container)
from wsclient import CLOSE, CONNECTED, DATA, ERROR, TCP, Forward, WsClosed, WsConn, tmsg

MB = 1 << 20


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable: the tunnel tests need dockerd")
    if not TUNNEL_CLIENT.exists():
        pytest.fail(f"{TUNNEL_CLIENT} not built (run scripts/build.sh)")
    tmp = tmp_path_factory.mktemp("tunnel")
    host = FixtureHost().start()
    runner = RunnerProcess(tmp, host, runner_overrides(), [], None).start()
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    www = share_dir(runner) / "www"
    www.mkdir()
    files = {"big.bin": os.urandom(20 * MB), "ten.bin": os.urandom(10 * MB),
             "a.txt": b"A" * 100_000, "b.txt": b"B" * 150_000}
    for name, data in files.items():
        (www / name).write_bytes(data)
    with open(www / "huge.bin", "wb") as f:  # 200 MB, sparse
        f.truncate(200 * MB)
    tids = []

    class Env:
        pass

    e = Env()
    e.host, e.runner, e.files, e.tids = host, runner, files, tids
    try:
        e.tid, e.container = start_service(runner, host, f"{BUSYBOX} httpd -f -p 8080 -h /shared/www")
        tids.append(e.tid)
        wait_port_in_container(e.container, 8080)
        yield e
    finally:
        for tid in tids:
            stop_service(runner, tid)
        runner.stop()
        host.stop()


def http_get(fwd, cid, path, hasher=None, timeout=120):
    fwd.connect(cid, 8080)
    fwd.send(cid, f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    return fwd.collect(cid, timeout=timeout, hasher=hasher)


def body_of(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head[:200]
    return body


def test_http_20mb_byte_exact(env):
    fwd = Forward(env.runner.port, env.container, 8080)
    try:
        resp, end, _ = http_get(fwd, 1, "/big.bin")
        assert end == CLOSE
        assert body_of(resp) == env.files["big.bin"]
    finally:
        fwd.close()


def test_connect_to_closed_port_reports_the_os_error(env):
    fwd = Forward(env.runner.port, env.container, 9)
    try:
        fwd.connect(5, 9)
        mtype, payload = fwd.next(5)
        assert (mtype, payload) == (ERROR, b"Connection refused (os error 111)")
    finally:
        fwd.close()


def test_hundred_concurrent_streams_of_10mb(env):
    want = hashlib.sha256(env.files["ten.bin"]).hexdigest()
    sessions = [Forward(env.runner.port, env.container, 8080) for _ in range(4)]
    results = {}
    try:
        for s in sessions:
            for cid in range(1, 26):
                s.connect(cid, 8080)
                s.send(cid, b"GET /ten.bin HTTP/1.0\r\nHost: x\r\n\r\n")

        def drain(si, s, cid):
            class Split:  # hashes the body after the HTTP head
                def __init__(self):
                    self.buf, self.h, self.in_body = b"", hashlib.sha256(), False

                def update(self, b):
                    if self.in_body:
                        self.h.update(b)
                        return
                    self.buf += b
                    if b"\r\n\r\n" in self.buf:
                        self.in_body = True
                        self.h.update(self.buf.partition(b"\r\n\r\n")[2])
            sp, end, _ = s.collect(cid, timeout=300, hasher=Split())
            results[(si, cid)] = (sp.h.hexdigest(), end)

        threads = [threading.Thread(target=drain, args=(si, s, cid))
                   for si, s in enumerate(sessions) for cid in range(1, 26)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(330)
    finally:
        for s in sessions:
            s.close()
    assert len(results) == 100
    assert all(r == (want, CLOSE) for r in results.values()), {k: v for k, v in results.items() if v != (want, CLOSE)}


def test_two_sessions_with_the_same_client_id_get_their_own_data(env):
    a = Forward(env.runner.port, env.container, 8080)
    b = Forward(env.runner.port, env.container, 8080)
    try:
        # Both use id 1 at the same time (T1: the runner rewrites ids).
        a.connect(1, 8080)
        b.connect(1, 8080)
        a.send(1, b"GET /a.txt HTTP/1.0\r\n\r\n")
        b.send(1, b"GET /b.txt HTTP/1.0\r\n\r\n")
        ra, ea, _ = a.collect(1)
        rb, eb, _ = b.collect(1)
        assert (ea, eb) == (CLOSE, CLOSE)
        assert body_of(ra) == env.files["a.txt"]
        assert body_of(rb) == env.files["b.txt"]
    finally:
        a.close()
        b.close()


def test_user_disconnect_closes_the_connection_in_the_container(env):
    marker = share_dir(env.runner) / "closed-marker"
    # nc (echoing through cat) exits when its client goes away; then the
    # marker is written.
    docker("exec", "-d", env.container, "sh", "-c",
           f"{BUSYBOX} nc -l -p 7000 -e /bin/cat; echo closed > /shared/closed-marker")
    wait_port_in_container(env.container, 7000)
    fwd = Forward(env.runner.port, env.container, 7000)
    fwd.connect(1, 7000)
    assert fwd.q(1).get(timeout=20)[0] == CONNECTED
    fwd.send(1, b"hello\n")
    time.sleep(0.5)
    assert not marker.exists()
    fwd.ws.abort()  # no CLOSE message: the session just ends
    wait_until(marker.exists, timeout=20, what="the container's connection to be closed")


def test_forward_without_a_tunnel_client_fails_with_error_text(env):
    name = "kohakuriver-task-1"  # nothing of that name runs a client
    t0 = time.monotonic()
    ws = WsConn("127.0.0.1", env.runner.port, f"/ws/forward/{name}/80?proto=tcp")
    kind, text = ws.recv()
    assert (kind, text) == ("text", f"Error: Container tunnel not connected (container={name})")
    with pytest.raises(WsClosed):
        ws.recv()
    assert ws.close_code == 1011
    assert time.monotonic() - t0 >= 7  # T4: waited for a client first
    ws.abort()


def test_tunnel_refused_from_another_address(env):
    # T10: this connection comes from the host's loopback, not the container.
    ws = WsConn("127.0.0.1", env.runner.port, f"/ws/tunnel/{env.container}")
    with pytest.raises(WsClosed):
        ws.recv()
    assert ws.close_code == 1008
    # The real client is still the registered one.
    fwd = Forward(env.runner.port, env.container, 8080)
    resp, end, _ = http_get(fwd, 1, "/a.txt")
    assert body_of(resp) == env.files["a.txt"]
    fwd.close()


def test_udp_echo(env):
    tid, container = start_service(
        env.runner, env.host,
        "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>\"127.0.0.1\",LocalPort=>5300,"
        "Proto=>\"udp\") or die; while($s->recv($d,65535)){ $s->send(\"echo:\".$d) }'")
    env.tids.append(tid)
    # A datagram sent before the service binds is refused (ICMP), and the
    # client then ends that connection (CLOSE), as the Rust client does.
    wait_port_in_container(container, 5300, udp=True)
    fwd = Forward(env.runner.port, container, 5300, proto="udp")
    try:
        fwd.connect(1, 5300)
        assert fwd.q(1).get(timeout=20)[0] == CONNECTED
        for i, size in enumerate([1, 100, 1400, 8000, 60000]):
            payload = bytes([i]) * size
            fwd.send(1, payload)
            mtype, got = fwd.next(1, timeout=20)
            # One datagram in, one datagram out, boundaries kept.
            assert (mtype, got) == (DATA, b"echo:" + payload)
    finally:
        fwd.close()


def test_slow_reader_does_not_grow_runner_memory(env):
    pid = env.runner.proc.pid
    fwd = Forward(env.runner.port, env.container, 8080, read=False)
    try:
        fwd.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        base = rss_kib(pid)
        fwd.ws.send(tmsg(1, 1, 8080))
        fwd.ws.send(tmsg(DATA, 1, 0, b"GET /huge.bin HTTP/1.0\r\n\r\n"))
        peak = base
        # Not reading at all for a while: the runner must hold at most its
        # bounded queues (T6), whatever the container pushes.
        end = time.monotonic() + 4
        while time.monotonic() < end:
            peak = max(peak, rss_kib(pid))
            time.sleep(0.1)
        # Then read slowly to the end, sampling memory.
        got, samples = 0, 0
        while True:
            kind, m = fwd.ws.recv()
            if kind == "binary" and m[0] == DATA:
                got += len(m) - 8
            elif kind == "binary" and m[0] in (CLOSE, ERROR):
                break
            samples += 1
            if samples % 50 == 0:
                peak = max(peak, rss_kib(pid))
                time.sleep(0.005)
        assert got > 200 * MB  # body + head
        growth_mib = (peak - base) / 1024
        assert growth_mib < 48, f"runner RSS grew by {growth_mib:.1f} MiB while 200 MB were pushed"
    finally:
        fwd.close()


def test_client_restart_mid_session(env):
    fwd = Forward(env.runner.port, env.container, 8080)
    try:
        resp, end, _ = http_get(fwd, 1, "/a.txt")
        assert body_of(resp) == env.files["a.txt"]
        # A connection left open across the restart gets CLOSE (T3).
        docker("exec", "-d", env.container, "sh", "-c", f"{BUSYBOX} nc -l -p 7001 -e /bin/cat")
        wait_port_in_container(env.container, 7001)
        fwd.connect(2, 7001)
        assert fwd.q(2).get(timeout=20)[0] == CONNECTED
        docker("exec", env.container, "pkill", "-x", "tunnel-client")
        mtype, _ = fwd.next(2, timeout=20)
        assert mtype == CLOSE
        docker("exec", "-d", env.container, "sh", "-c",
               '/usr/local/bin/tunnel-client --runner-url "$KOHAKURIVER_TUNNEL_URL" '
               '--container-id "$KOHAKURIVER_CONTAINER_ID" > /tmp/tunnel-client-2.log 2>&1')
        # Same user session, new connection: served by the new tunnel (waits for it).
        resp, end, _ = http_get(fwd, 3, "/b.txt")
        assert end == CLOSE and body_of(resp) == env.files["b.txt"]
    finally:
        fwd.close()


def test_second_client_replaces_the_first(env):
    fwd = Forward(env.runner.port, env.container, 8080)
    try:
        docker("exec", "-d", env.container, "sh", "-c",
               '/usr/local/bin/tunnel-client --runner-url "$KOHAKURIVER_TUNNEL_URL" '
               '--container-id "$KOHAKURIVER_CONTAINER_ID" --reconnect-delay 1 > /tmp/tunnel-client-3.log 2>&1')
        time.sleep(1.5)
        resp, end, _ = http_get(fwd, 1, "/a.txt")
        assert body_of(resp) == env.files["a.txt"]
    finally:
        fwd.close()
        # Two clients for one container would take turns replacing each other.
        docker("exec", env.container, "pkill", "-f", "reconnect-delay 1", check=False)


def test_static_client_runs_in_a_busybox_only_image():
    # No libc, no loader in this image: only a static binary runs.
    r = docker("run", "--rm", "-v", f"{TUNNEL_CLIENT}:/usr/local/bin/tunnel-client:ro", "kr-test/busybox:test",
               "/usr/local/bin/tunnel-client", "--version")
    assert r.stdout == "kohakuriver-tunnel 0.1.0\n"
    r = docker("run", "--rm", "-v", f"{TUNNEL_CLIENT}:/usr/local/bin/tunnel-client:ro", "kr-test/busybox:test",
               "/usr/local/bin/tunnel-client", "-r", "wss://10.0.0.1:1", "-c", "x", check=False)
    assert r.returncode == 1 and "wss:// is not supported" in r.stderr


def test_gateway_listener_serves_tunnels_when_bound_to_loopback(tmp_path):
    # T11: with RUNNER_BIND_IP specific (loopback here), containers cannot
    # reach the main listener; the runner also listens on the container
    # network's gateway (their KOHAKURIVER_TUNNEL_URL), serving only
    # /ws/tunnel. A real container's client connects there and a forward
    # through the loopback listener reaches its service.
    host = FixtureHost().start()
    runner = RunnerProcess(tmp_path, host, dict(runner_overrides(), RUNNER_BIND_IP="127.0.0.1"), [], None).start()
    tid = None
    try:
        runner.wait_listening()
        host.wait_for("register", timeout=10)
        gateway = runner.config.get("DOCKER_NETWORK_GATEWAY", "172.30.0.1")
        www = share_dir(runner) / "www"
        www.mkdir()
        (www / "g.txt").write_bytes(b"G" * 70_000)
        tid, container = start_service(runner, host, f"{BUSYBOX} httpd -f -p 8080 -h /shared/www")
        wait_port_in_container(container, 8080)
        env_out = docker("exec", container, "sh", "-c", "echo $KOHAKURIVER_TUNNEL_URL").stdout.strip()
        assert env_out == f"ws://{gateway}:{runner.port}"
        wait_until(lambda: "Tunnel endpoint also listening on the container gateway" in runner.output(),
                   timeout=30, what="the gateway listener")
        wait_until(lambda: f"tunnel {container}: connected from" in runner.output(), timeout=30,
                   what="the container's tunnel through the gateway")
        fwd = Forward(runner.port, container, 8080)
        try:
            resp, end, _ = http_get(fwd, 1, "/g.txt")
            assert end == CLOSE
            assert body_of(resp) == b"G" * 70_000
        finally:
            fwd.close()
        # Only the tunnel route is served on the gateway: no control API, no forwards.
        s = socket.create_connection((gateway, runner.port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = s.recv(4096)
        s.close()
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        with pytest.raises(WsClosed):
            WsConn(gateway, runner.port, f"/ws/forward/{container}/8080")
    finally:
        if tid is not None:
            stop_service(runner, tid)
        runner.stop()
        host.stop()


SANITIZER_OR_HEAP_REPORTS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "corrupted", "double free",
                             "free(): invalid", "malloc(): ")


def test_runner_exits_cleanly_with_live_tunnels_and_forwards(tmp_path):
    # A SIGTERM while WebSocket connections are open (a container's tunnel,
    # a user forward with a transfer in flight, an idle forward) must end the
    # runner with exit code 0 and no heap error: the suspended connection
    # coroutines are destroyed at shutdown and must not touch objects that
    # are already gone (seen once as glibc's "corrupted size vs. prev_size").
    host = FixtureHost().start()
    runner = RunnerProcess(tmp_path, host, runner_overrides(), [], None).start()
    tid = None
    fwds = []
    try:
        runner.wait_listening()
        host.wait_for("register", timeout=10)
        www = share_dir(runner) / "www"
        www.mkdir()
        with open(www / "huge.bin", "wb") as f:
            f.truncate(200 * MB)
        tid, container = start_service(runner, host, f"{BUSYBOX} httpd -f -p 8080 -h /shared/www")
        wait_port_in_container(container, 8080)
        busy = Forward(runner.port, container, 8080, read=False)  # never reads: back-pressure held
        fwds.append(busy)
        busy.connect(1, 8080)
        busy.send(1, b"GET /huge.bin HTTP/1.0\r\nHost: x\r\n\r\n")
        idle = Forward(runner.port, container, 8080)
        fwds.append(idle)
        idle.connect(2, 8080)
        idle.send(2, b"GET /huge.bin HTTP/1.0\r\n")  # request left unfinished: connection stays open
        assert busy.ws.recv()[0] == "binary"  # the transfer is flowing
        time.sleep(1)
        rc = runner.stop(signal.SIGTERM, timeout=20)
        log = runner.output()
        assert rc == 0, f"runner exited with {rc} after SIGTERM:\n{log[-4000:]}"
        for word in SANITIZER_OR_HEAP_REPORTS:
            assert word not in log, f"{word!r} in the runner's log:\n{log[-6000:]}"
    finally:
        for f in fwds:
            try:
                f.ws.abort()
            except OSError:
                pass
        if tid is not None:
            if runner.proc.poll() is not None:
                runner = RunnerProcess(tmp_path, host, dict(runner_overrides(), RUNNER_PORT=runner.port), [], None)
                runner.start()
                runner.wait_listening()
            stop_service(runner, tid)
        runner.stop()
        host.stop()
