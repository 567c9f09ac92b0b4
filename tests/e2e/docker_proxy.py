"""A stand-in Docker socket for "Docker fails mid-call": forwards every
request to the real dockerd unchanged, except that
- while `fail_kills` is set, POST /containers/<name>/kill is answered by the
  proxy itself (HTTP 500, or no answer at all in "hang" mode);
- while `starts` is set, POST /containers/<name>/start is never answered nor
  forwarded ("hang": a start lost in a slow dockerd), or is carried out by
  dockerd and then answered with HTTP 500 anyway ("done_then_500": the call
  failed, the container started).
The runner never pipelines requests, so answering one request ourselves
keeps each connection in step."""
import os
import re
import socket
import threading

KILL = re.compile(rb"^POST /v[\d.]+/containers/[^/ ]+/kill")
START = re.compile(rb"^POST /v[\d.]+/containers/[^/ ]+/start")


class DockerProxy:
    def __init__(self, path: str, upstream: str = "/var/run/docker.sock"):
        self.path = path
        self.upstream = upstream
        self.fail_kills = None  # None | "500" | "hang"
        self.kills_seen = 0
        self.kills_failed = 0
        self.starts = None  # None | "hang" | "done_then_500"
        self.starts_seen = 0
        self.lock = threading.Lock()
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        finally:
            if os.path.exists(self.path):
                os.unlink(self.path)

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _forward_alone(self, request: bytes) -> bytes:
        """Sends one request to dockerd on a connection of its own and returns
        its status code, once dockerd has answered (start answers 204/304
        without a body; an error's body is not needed)."""
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.connect(self.upstream)
            up.sendall(request)
            answer = b""
            while b"\r\n" not in answer:
                data = up.recv(65536)
                if not data:
                    break
                answer += data
            parts = answer.split(b" ", 2)
            return parts[1] if len(parts) > 1 else b"none"
        finally:
            up.close()

    def _serve(self, client):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.connect(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(up, client), daemon=True).start()
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        up.shutdown(socket.SHUT_WR)
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                length = int(m.group(1)) if m else 0
                while len(rest) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    rest += data
                body, buf = rest[:length], rest[length:]
                if START.match(head) and self.starts:
                    with self.lock:
                        self.starts_seen += 1
                    if self.starts == "hang":
                        threading.Event().wait(600)
                        return
                    status = self._forward_alone(head + b"\r\n\r\n" + body)
                    msg = b'{"message":"injected failure after dockerd answered ' + status + b'"}'
                    client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                                   b"Api-Version: 1.41\r\nContent-Length: " + str(len(msg)).encode() +
                                   b"\r\n\r\n" + msg)
                    continue
                if KILL.match(head):
                    with self.lock:
                        self.kills_seen += 1
                        mode = self.fail_kills
                        if mode:
                            self.kills_failed += 1
                    if mode == "hang":
                        threading.Event().wait(30)
                        return
                    if mode:
                        msg = b'{"message":"injected failure: cannot kill container"}'
                        client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                                       b"Api-Version: 1.41\r\nContent-Length: " + str(len(msg)).encode() +
                                       b"\r\n\r\n" + msg)
                        continue
                up.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            pass
        finally:
            try:
                client.close()
            except OSError:
                pass
