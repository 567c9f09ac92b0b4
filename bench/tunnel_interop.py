#!/usr/bin/env python3
"""Port-forwarding interoperability checks (manual, not CI; see
scripts/tunnel-interop.sh):

  client PYTHON   our build/tunnel-client against the upstream Python
                  runner's own tunnel handlers (kohakuriver.runner.services.
                  tunnel_server, served by uvicorn with PYTHON, a venv where
                  upstream KohakuRiver, FastAPI and uvicorn are installed).
  server CLIENT   the upstream Rust tunnel-client (CLIENT: a binary built with
                  cargo from upstream src/kohakuriver-tunnel) against our
                  runner, mounted into a real task container like ours.

Each prints one line per check and exits non-zero on a failure.
"""
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from wsclient import CONNECTED, DATA, ERROR, CLOSE, Forward, WsClosed, WsConn  # noqa: E402

MB = 1 << 20
failures = []


def check(name, ok, detail=""):
    print(f"{'PASS' if ok else 'FAIL'}  {name}{(': ' + detail) if detail else ''}", flush=True)
    if not ok:
        failures.append(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_of(resp):
    return resp.partition(b"\r\n\r\n")[2]


def get(fwd, cid, port, path):
    fwd.connect(cid, port)
    fwd.send(cid, f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    return fwd.collect(cid, timeout=120)


def udp_echo(fwd, cid, port):
    fwd.connect(cid, port)
    ok = True
    for size in (1, 1400, 60000):
        payload = os.urandom(size)
        got = None
        for _ in range(40):
            fwd.send(cid, payload)
            try:
                mtype, got = fwd.next(cid, timeout=0.5)
                break
            except Exception:
                continue
        ok = ok and got == payload
    return ok


def open_forward(port, container, target, proto="tcp", timeout=90):
    end = time.monotonic() + timeout
    while True:
        try:
            return Forward(port, container, target, proto)
        except (WsClosed, OSError):
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


def client_mode(python):
    tmp = Path(tempfile.mkdtemp(prefix="kr-tunnel-interop."))
    (tmp / "app.py").write_text(
        "from fastapi import FastAPI, WebSocket\n"
        "from kohakuriver.runner.services.tunnel_server import handle_container_tunnel, handle_port_forward\n"
        "from kohakuriver.tunnel.protocol import PROTO_TCP, PROTO_UDP\n"
        "app = FastAPI()\n"
        "@app.websocket('/ws/tunnel/{container_id}')\n"
        "async def t(websocket: WebSocket, container_id: str):\n"
        "    await handle_container_tunnel(websocket, container_id)\n"
        "@app.websocket('/ws/forward/{container_id}/{port}')\n"
        "async def f(websocket: WebSocket, container_id: str, port: int, proto: str = 'tcp'):\n"
        "    await handle_port_forward(websocket, container_id, port, PROTO_UDP if proto.lower() == 'udp' else PROTO_TCP)\n")
    www = tmp / "www"
    www.mkdir()
    big = os.urandom(20 * MB)
    (www / "big.bin").write_bytes(big)
    sport, hport, uport = free_port(), free_port(), free_port()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(www), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", hport), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    us.bind(("127.0.0.1", uport))

    def echo():
        while True:
            d, a = us.recvfrom(65536)
            us.sendto(d, a)
    threading.Thread(target=echo, daemon=True).start()
    server = subprocess.Popen([python, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(sport),
                               "--log-level", "warning"], cwd=tmp, stdout=open(tmp / "server.log", "wb"),
                              stderr=subprocess.STDOUT)
    client = subprocess.Popen([os.environ.get("KR_TUNNEL_CLIENT", str(REPO / "build" / "tunnel-client")), "-r", f"ws://127.0.0.1:{sport}", "-c",
                               "interop-1", "--reconnect-delay", "1"], stdout=open(tmp / "client.log", "wb"),
                              stderr=subprocess.STDOUT)
    try:
        fwd = open_forward(sport, "interop-1", hport)
        resp, end, _ = get(fwd, 1, hport, "/big.bin")
        check("TCP: 20 MB over HTTP byte-exact", body_of(resp) == big and end == CLOSE)
        fwd.connect(2, free_port())
        mtype, payload = fwd.next(2)
        check("closed port: ERROR with the OS error text", (mtype, payload) == (ERROR, b"Connection refused (os error 111)"),
              repr(payload))
        fwd.close()
        ufwd = open_forward(sport, "interop-1", uport, "udp")
        check("UDP: echo of 1, 1400 and 60000-byte datagrams", udp_echo(ufwd, 1, uport))
        ufwd.close()
        ws = WsConn("127.0.0.1", sport, "/ws/forward/nope/80?proto=tcp")
        kind, text = ws.recv()
        check("absent tunnel: Error text", text == "Error: Container tunnel not connected (container=nope)", text)
        ws.abort()
    finally:
        client.terminate()
        server.terminate()
        httpd.shutdown()
        print(f"logs in {tmp}")


def server_mode(rust_client):
    from conftest import RunnerProcess
    from fixture_host import FixtureHost
    from tunnelutil import DEBIAN, share_dir, start_service, stop_service, wait_port_in_container
    tmp = Path(tempfile.mkdtemp(prefix="kr-tunnel-interop."))
    host = FixtureHost().start()
    runner = RunnerProcess(tmp, host, {"TUNNEL_CLIENT_PATH": str(Path(rust_client).resolve())}, [], None).start()
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    sd = share_dir(runner)
    big = os.urandom(20 * MB)
    (sd / "big.bin").write_bytes(big)
    (sd / "svc.sh").write_text(
        "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>\"127.0.0.1\",LocalPort=>5300,"
        "Proto=>\"udp\") or die; while($s->recv($d,65535)){ $s->send($d) }' &\n"
        "exec perl -MIO::Socket::INET -e '$l=IO::Socket::INET->new(LocalAddr=>\"127.0.0.1\",LocalPort=>8080,"
        "Listen=>64,ReuseAddr=>1) or die; while($c=$l->accept){ if(!fork){ open F,\"<\",\"/shared/big.bin\";"
        " binmode F; while(read(F,$b,65536)){ print $c $b } close $c; exit } close $c }'\n")
    tid = None
    try:
        tid, name = start_service(runner, host, "sh /shared/svc.sh", image=DEBIAN)
        wait_port_in_container(name, 8080)
        fwd = open_forward(runner.port, name, 8080)
        fwd.connect(1, 8080)
        data, end, _ = fwd.collect(1, timeout=120)
        check("TCP: 20 MB byte-exact through the Rust client", data == big and end == CLOSE,
              f"{len(data)} bytes, end {end}")
        fwd2 = open_forward(runner.port, name, 8080)
        fwd.connect(2, 8080)
        fwd2.connect(2, 8080)
        a, _, _ = fwd.collect(2, timeout=120)
        b, _, _ = fwd2.collect(2, timeout=120)
        check("two sessions, same client id, own data (T1)", a == big and b == big)
        fwd.connect(3, 9)
        mtype, payload = fwd.next(3)
        check("closed port: the Rust client's ERROR relayed", mtype == ERROR, payload.decode(errors="replace"))
        fwd.close()
        fwd2.close()
        ufwd = open_forward(runner.port, name, 5300, "udp")
        check("UDP echo through the Rust client", udp_echo(ufwd, 1, 5300))
        ufwd.close()
        rss = subprocess.run(["docker", "exec", name, "sh", "-c", "grep VmRSS /proc/$(pgrep -f tunnel-client | head -1)/status"],
                             capture_output=True, text=True).stdout.strip()
        print(f"info  Rust tunnel-client {os.path.getsize(rust_client)} bytes, {rss}")
    finally:
        if tid:
            stop_service(runner, tid)
        runner.stop()
        host.stop()


if __name__ == "__main__":
    mode, arg = sys.argv[1], sys.argv[2]
    client_mode(arg) if mode == "client" else server_mode(arg)
    sys.exit(1 if failures else 0)
