"""A small synchronous RFC 6455 client for the tunnel tests, plus the
tunnel message codec (tunnel-overlay.md §1) and a "user side" that speaks it
the way the upstream CLI does through the host's proxy. Written here so the
tests need no third-party package and can misbehave on purpose (a reader
that stops reading)."""
import base64
import hashlib
import os
import queue
import socket
import struct
import threading

CONNECT, CONNECTED, DATA, CLOSE, ERROR, PING, PONG = range(1, 8)
TCP, UDP = 0, 1


def tmsg(mtype, cid, port=0, payload=b"", proto=TCP):
    return struct.pack(">BBIH", mtype, proto, cid, port) + payload


def tparse(m):
    mtype, proto, cid, port = struct.unpack(">BBIH", m[:8])
    return mtype, proto, cid, port, m[8:]


def _mask(data, key):
    n = len(data)
    if not n:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


class WsClosed(Exception):
    pass


class WsConn:
    """One client WebSocket. recv() answers pings itself."""

    def __init__(self, host, port, path, timeout=15, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=source)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        self.rfile = self.sock.makefile("rb", buffering=1 << 20)
        status = self.rfile.readline().decode()
        headers = {}
        while True:
            line = self.rfile.readline().decode()
            if line in ("\r\n", ""):
                break
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.status = int(status.split()[1]) if len(status.split()) > 1 else 0
        if self.status != 101:
            raise WsClosed(f"handshake refused: {status.strip()}")
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert headers.get("sec-websocket-accept") == want.decode(), headers
        self.sock.settimeout(None)
        self.wlock = threading.Lock()
        self.close_code = None

    def _send_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
        key = os.urandom(4)
        with self.wlock:
            self.sock.sendall(head + key + _mask(payload, key))

    def send(self, data):
        if isinstance(data, str):
            self._send_frame(0x1, data.encode())
        else:
            self._send_frame(0x2, bytes(data))

    def _read(self, n):
        b = self.rfile.read(n)
        if b is None or len(b) < n:
            raise WsClosed("connection ended")
        return b

    def recv(self):
        """("text", str) | ("binary", bytes); raises WsClosed at the end."""
        parts, op = [], None
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            if b1 & 0x80:
                raise AssertionError("server frame is masked")
            payload = self._read(n) if n else b""
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:
                    self._send_frame(0x8, payload[:2])
                except OSError:
                    pass
                raise WsClosed(f"closed with {self.close_code}")
            if opcode in (0x1, 0x2):
                op = opcode
            parts.append(payload)
            if b0 & 0x80:
                data = b"".join(parts)
                return ("text", data.decode()) if op == 0x1 else ("binary", data)

    def close(self, code=1000):
        try:
            self._send_frame(0x8, struct.pack(">H", code))
        except OSError:
            pass
        self.abort()

    def abort(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Forward:
    """A user's forward session (/ws/forward/...), multiplexing ids like the
    CLI: DATA and CLOSE/ERROR per id land in that id's queue."""

    def __init__(self, runner_port, container, port, proto="tcp", host="127.0.0.1", read=True):
        self.ws = WsConn(host, runner_port, f"/ws/forward/{container}/{port}?proto={proto}")
        self.proto = UDP if proto == "udp" else TCP
        kind, first = self.ws.recv()
        self.handshake = first
        if first != "CONNECTED":
            self.ws.abort()
            raise WsClosed(first)
        self.queues = {}
        self.lock = threading.Lock()
        self.ended = threading.Event()
        if read:
            self.reader = threading.Thread(target=self._read_loop, daemon=True)
            self.reader.start()

    def q(self, cid):
        with self.lock:
            return self.queues.setdefault(cid, queue.Queue())

    def _read_loop(self):
        try:
            while True:
                kind, m = self.ws.recv()
                if kind != "binary" or len(m) < 8:
                    continue
                mtype, _proto, cid, _port, payload = tparse(m)
                self.q(cid).put((mtype, payload))
        except (WsClosed, OSError, ValueError):
            pass
        finally:
            self.ended.set()
            with self.lock:
                for qq in self.queues.values():
                    qq.put((None, b""))

    def connect(self, cid, port):
        self.q(cid)
        self.ws.send(tmsg(CONNECT, cid, port, proto=self.proto))

    def send(self, cid, data):
        for i in range(0, len(data), 65536):
            self.ws.send(tmsg(DATA, cid, 0, data[i:i + 65536], proto=self.proto))

    def close_id(self, cid):
        self.ws.send(tmsg(CLOSE, cid, proto=self.proto))

    def collect(self, cid, timeout=60, hasher=None):
        """DATA of `cid` until CLOSE/ERROR: (bytes or hash, end type, error text)."""
        qq = self.q(cid)
        chunks = []
        while True:
            mtype, payload = qq.get(timeout=timeout)
            if mtype == DATA:
                if hasher is not None:
                    hasher.update(payload)
                else:
                    chunks.append(payload)
            elif mtype == CONNECTED:
                continue
            else:
                return (hasher if hasher is not None else b"".join(chunks)), mtype, payload

    def next(self, cid, timeout=30):
        while True:
            mtype, payload = self.q(cid).get(timeout=timeout)
            if mtype != CONNECTED:
                return mtype, payload

    def close(self):
        self.ws.close()
