"""Request-path bounds (issue 6 items 1 and 6): no body can crash the
runner, bodies are capped per route (413), slow or idle connections are
closed, and connections are capped per source address with a reserve that
keeps the host and loopback able to connect."""
import json
import socket
import subprocess
import threading
import time

import pytest

from taskutil import http

DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON: upstream's first version crashed echoing it


def deep_object(depth):
    return b'{"a":' * depth + b"1" + b"}" * depth


def raw_request(port, data: bytes, host="127.0.0.1", timeout=10, source=None):
    """Sends raw bytes, returns (status, body bytes) of the answer."""
    s = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
    try:
        if data:
            try:
                s.sendall(data)
            except OSError:
                pass  # the runner may answer (413) and close before reading it all
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    return status, body


def post(path, body: bytes, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def non_loopback_ipv4():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    pytest.fail("this machine has no non-loopback IPv4 address to connect from (needed by this test)")


@pytest.mark.parametrize("path", ["/api/execute", "/api/kill", "/api/pause", "/api/resume"])
def test_deep_nesting_is_a_short_422_and_the_runner_lives(make_runner, path):
    runner = make_runner()
    runner.wait_listening()
    # kill/pause/resume take at most 64 KiB: the 100,000-deep bodies are
    # refused by size there (413); the 30,000-deep ones reach the parser.
    control = path != "/api/execute"
    bodies = (DEEP, b'{"task_id": ' + DEEP + b"}", b"[" * 100_000, deep_object(10_000),
              b"[" * 30_000 + b"]" * 30_000)
    for body in bodies:
        st, reply = http("POST", runner.url(path), body)
        assert runner.proc.poll() is None, runner.output()[-2000:]
        if control and len(body) > 65536:
            assert st == 413, (st, str(reply)[:200])
            continue
        assert st == 422, (st, str(reply)[:200])
        assert reply["detail"][0]["type"] == "json_invalid"
        assert len(json.dumps(reply)) < 1000
    assert http("GET", runner.url("/healthz"))[0] == 200


def test_422_echo_is_bounded(make_runner):
    runner = make_runner()
    runner.wait_listening()
    # 1 MiB command and every other field missing: upstream echoes the whole
    # body once per missing field.
    st, reply = http("POST", runner.url("/api/execute"), {"command": "x" * (1 << 20)})
    assert st == 422
    assert {d["loc"][1] for d in reply["detail"]} >= {"task_id", "stdout_path"}
    assert len(json.dumps(reply)) < 32 * 1024
    # 200,000 bad list elements: a bounded list of items.
    st, reply = http("POST", runner.url("/api/execute"), {"task_id": 1, "arguments": [1] * 200_000})
    assert st == 422 and len(reply["detail"]) <= 64


def test_body_limits_per_route(make_runner):
    runner = make_runner()
    runner.wait_listening()
    # Control bodies are small; 100 KiB is refused before it is read.
    big_kill = json.dumps({"task_id": 1, "container_name": "x" * 100_000}).encode()
    st, body = raw_request(runner.port, post("/api/kill", big_kill))
    assert st == 413, body[:200]
    assert "at most 65536 bytes" in json.loads(body)["detail"]
    # Task bodies of several MiB are read (and validated: 422, not 413).
    big_exec = json.dumps({"task_id": 1, "command": "sh", "arguments": ["-c", "x" * (3 << 20)]}).encode()
    st, body = raw_request(runner.port, post("/api/execute", big_exec))
    assert st == 422, body[:200]
    # ... up to the route's limit.
    st, body = raw_request(runner.port, post("/api/execute", b" " * (9 << 20)))
    assert st == 413
    # Chunked bodies are counted as they arrive.
    chunk = b"x" * 70_000
    chunked = (b"POST /api/kill HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
               b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
    st, body = raw_request(runner.port, chunked)
    assert st == 413
    # Expect: 100-continue gets the 413 without sending the body.
    s = socket.create_connection(("127.0.0.1", runner.port), timeout=10)
    s.sendall(b"POST /api/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 413")
    s.close()
    assert runner.proc.poll() is None
    assert http("GET", runner.url("/healthz"))[0] == 200


def test_slow_and_idle_connections_are_closed(make_runner):
    runner = make_runner()
    runner.wait_listening()
    closed_at = {}

    def watch(name, trickle):
        s = socket.create_connection(("127.0.0.1", runner.port), timeout=60)
        start = time.monotonic()
        try:
            if trickle:  # slowloris: a header that never ends, one byte a second
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
                while True:
                    s.sendall(b"X")
                    s.settimeout(1)
                    try:
                        if s.recv(1) == b"":
                            break
                    except socket.timeout:
                        continue
            else:
                while s.recv(4096):
                    pass
        except OSError:
            pass
        closed_at[name] = time.monotonic() - start
        s.close()

    threads = [threading.Thread(target=watch, args=(n, t)) for n, t in (("idle", False), ("slow", True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    # Header deadline 15 s, idle deadline 30 s (api/limits.hpp).
    assert 10 <= closed_at["slow"] <= 25, closed_at
    assert 25 <= closed_at["idle"] <= 45, closed_at
    assert runner.proc.poll() is None


def _hold_connections(port, source, n):
    held = []
    for _ in range(n):
        held.append(socket.create_connection(("127.0.0.1" if source is None else source, port), timeout=5,
                                             source_address=(source, 0) if source else None))
    return held


def test_connections_capped_per_source_with_host_reserve(make_runner):
    src = non_loopback_ipv4()
    runner = make_runner()
    runner.wait_listening()
    held = _hold_connections(runner.port, src, 256)  # the per-address limit
    try:
        time.sleep(0.5)  # all accepted
        # Refused at once: read the answer without sending (no reset race).
        st, body = raw_request(runner.port, b"", host=src, source=src)
        assert st == 503 and b"Too many connections" in body
        # Loopback (and the host) are not limited by that.
        assert http("GET", runner.url("/healthz"))[0] == 200
        # A held connection still works, and freeing one lets a new one in.
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
        held.pop(0).close()
        time.sleep(0.3)
        st, _ = raw_request(runner.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", host=src, source=src)
        assert st == 200
    finally:
        for s in held:
            s.close()
    assert "Refused" in runner.output()


def test_host_address_is_not_capped(make_runner):
    src = non_loopback_ipv4()
    runner = make_runner(HOST_ADDRESS=src)
    runner.wait_listening()
    held = _hold_connections(runner.port, src, 300)
    try:
        time.sleep(0.5)
        st, _ = raw_request(runner.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", host=src, source=src)
        assert st == 200
    finally:
        for s in held:
            s.close()


def test_buffered_bodies_share_one_budget(make_runner):
    """Issue 16 item 2: the bodies held in memory across all connections
    are bounded (MAX_BUFFERED_REQUEST_BYTES). With room for one 10 MB body,
    a second caller announcing one while the first is still sending gets
    503 naming the setting once its bounded wait is over; the first
    completes normally."""
    runner = make_runner(MAX_BUFFERED_REQUEST_BYTES=16 * 1024 * 1024)
    runner.wait_listening()
    size = 10 * 1000 * 1000
    head = (b"POST /api/fs/1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(size).encode() + b"\r\nConnection: close\r\n\r\n")
    first = socket.create_connection(("127.0.0.1", runner.port), timeout=60)
    first.sendall(head + b" " * (1 << 20))
    time.sleep(0.5)  # the first holds its room
    second = socket.create_connection(("127.0.0.1", runner.port), timeout=60)
    second.sendall(head + b" " * (1 << 20))
    answer = b""
    try:
        while not answer.rstrip().endswith(b"}"):
            chunk = second.recv(4096)
            if not chunk:
                break
            answer += chunk
    except socket.timeout:
        pass
    second.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"MAX_BUFFERED_REQUEST_BYTES" in answer, answer
    # The first body completes and reaches the route (not valid JSON: 422).
    first.sendall(b" " * (size - (1 << 20)))
    reply = b""
    while True:
        chunk = first.recv(65536)
        if not chunk:
            break
        reply += chunk
    first.close()
    assert reply.startswith(b"HTTP/1.1 422"), reply[:300]
    assert http("GET", runner.url("/healthz"))[0] == 200
    assert "no room for its" in runner.output()
