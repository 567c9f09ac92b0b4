"""A small stand-in for the KohakuRiver host: records every request the
runner sends and answers the way a test tells it to (normal, HTTP errors,
garbage, slow). It never makes decisions the real host would make on its own;
tests dispatch work to the runner explicitly."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float  # time.monotonic() when received

    def json(self):
        return json.loads(self.body)


@dataclass
class Behaviour:
    """How the host answers one kind of request."""
    status: int = 200
    body: bytes | None = None  # None: the default JSON reply
    delay: float = 0.0  # seconds before answering (simulates a slow host)
    close_without_reply: bool = False


class FixtureHost:
    def __init__(self, port: int = 0, bind: str = "127.0.0.1"):
        self.requests: list[Recorded] = []
        # The registration reply's "overlay" object (tunnel-overlay.md §3.4);
        # None = the host has the overlay off. Tests may change it at any time.
        self.overlay: dict | None = None
        # Addresses handed out by POST /api/overlay/ip/reserve (VMs in
        # overlay mode), in order.
        self.reserve_ips: list[str] = ["10.128.64.77"]
        self.reserve_count = 0
        self.cond = threading.Condition()
        self.behaviours: dict[str, Behaviour] = {}
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, dict(self.headers), body, time.monotonic())
                kind = host.kind_of(self.command, self.path)
                beh = host.behaviours.get(kind, Behaviour())
                with host.cond:
                    host.requests.append(rec)
                    host.cond.notify_all()
                if beh.delay:
                    time.sleep(beh.delay)
                if beh.close_without_reply:
                    self.close_connection = True
                    return
                reply = beh.body if beh.body is not None else host.default_reply(kind, rec)
                self.send_response(beh.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer((bind, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def kind_of(method: str, path: str) -> str:
        if path.startswith("/api/register"):
            return "register"
        if path.startswith("/api/heartbeat/"):
            return "heartbeat"
        if path.startswith("/api/update"):
            return "update"
        if path.startswith("/api/overlay/ip/reserve"):
            return "overlay_reserve"
        if path.startswith("/api/overlay/ip/release"):
            return "overlay_release"
        return "other"

    def default_reply(self, kind: str, rec: Recorded) -> bytes:
        if kind == "register":
            name = rec.json().get("hostname", "?")
            return json.dumps({"message": f"Node {name} registered successfully.", "created": True,
                               "overlay": self.overlay}).encode()
        if kind == "heartbeat":
            return b'{"message": "Heartbeat received"}'
        if kind == "update":
            return b'{"message": "Task status updated successfully."}'
        if kind == "overlay_reserve":
            # tunnel-overlay.md §3.8 reply shape; tests set reserve_ips.
            from urllib.parse import parse_qs, urlsplit
            q = parse_qs(urlsplit(rec.path).query)
            ip = (q.get("ip") or [None])[0] or self.reserve_ips.pop(0)
            self.reserve_count += 1
            return json.dumps({"ip": ip, "runner": (q.get("runner") or ["?"])[0],
                               "token": f"tok-{self.reserve_count}-{ip}", "expires_at": "2026-01-01T00:30:00",
                               "ttl_seconds": int((q.get("ttl") or ["300"])[0])}).encode()
        if kind == "overlay_release":
            return b'{"message": "IP reservation released"}'
        return b'{"detail": "Not Found"}'

    def start(self) -> "FixtureHost":
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def of_kind(self, kind: str) -> list[Recorded]:
        with self.cond:
            return [r for r in self.requests if self.kind_of(r.method, r.path) == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 15.0, pred=None) -> list[Recorded]:
        """Waits until `count` requests of `kind` (matching `pred`) arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if self.kind_of(r.method, r.path) == kind
                       and (pred is None or pred(r))]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} {kind} request(s) within {timeout}s, got {len(got)}; "
                        f"all: {[(r.method, r.path) for r in self.requests]}")
                self.cond.wait(left)

    def updates_for(self, task_id: int) -> list[dict]:
        return [r.json() for r in self.of_kind("update") if r.json().get("task_id") == task_id]
