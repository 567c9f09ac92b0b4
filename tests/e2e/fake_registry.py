"""A tiny Docker Registry HTTP API v2 server on 127.0.0.1 for pull tests
(dockerd treats 127.0.0.0/8 registries as insecure, so plain HTTP works and
nothing leaves the machine). It serves images made from `docker save`
output, optionally behind basic auth or token auth, and records what
arrived (paths and Authorization headers) so tests can check credentials."""
import base64
import gzip
import hashlib
import io
import json
import secrets
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def image_blobs(tag: str):
    """(manifest bytes, {digest: bytes}) for a local image, via docker save."""
    raw = subprocess.run(["docker", "save", tag], check=True, capture_output=True).stdout
    tf = tarfile.open(fileobj=io.BytesIO(raw))
    manifest = json.load(tf.extractfile("manifest.json"))[0]
    blobs = {}

    def add(data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d

    config = tf.extractfile(manifest["Config"]).read()
    layers = []
    for path in manifest["Layers"]:
        data = gzip.compress(tf.extractfile(path).read(), mtime=0)
        layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(data),
                       "digest": add(data)})
    m = {"schemaVersion": 2, "mediaType": MANIFEST_V2,
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                    "digest": add(config)},
         "layers": layers}
    return json.dumps(m).encode(), blobs


class FakeRegistry:
    def __init__(self, auth: str | None = None, user: str = "alice", password: str = "s3cret"):
        """auth: None (open), "basic" or "token"."""
        self.auth = auth
        self.user, self.password = user, password
        self.tokens: set[str] = set()
        self.manifests: dict[tuple[str, str], bytes] = {}  # (repo, tag) -> manifest
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.token_requests: list[str | None] = []
        self.lock = threading.Lock()
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _authorized(self) -> bool:
                got = self.headers.get("Authorization")
                if reg.auth is None:
                    return True
                if reg.auth == "basic":
                    want = "Basic " + base64.b64encode(f"{reg.user}:{reg.password}".encode()).decode()
                    return got == want
                return got is not None and got.startswith("Bearer ") and got[7:] in reg.tokens

            def _challenge(self):
                if reg.auth == "basic":
                    h = {"WWW-Authenticate": 'Basic realm="kr-test"'}
                else:
                    h = {"WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{reg.port}/token",service="kr-test"'}
                h["Content-Type"] = "application/json"
                self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}', h)

            def do_GET(self):
                with reg.lock:
                    reg.requests.append((self.command, self.path, self.headers.get("Authorization")))
                path = self.path.split("?")[0]
                if path == "/token":
                    with reg.lock:
                        reg.token_requests.append(self.headers.get("Authorization"))
                    want = "Basic " + base64.b64encode(f"{reg.user}:{reg.password}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._send(401, b'{"details":"bad credentials"}')
                    tok = secrets.token_hex(16)
                    reg.tokens.add(tok)
                    return self._send(200, json.dumps({"token": tok, "access_token": tok}).encode(),
                                      {"Content-Type": "application/json"})
                if not path.startswith("/v2/"):
                    return self._send(404)
                if not self._authorized():
                    return self._challenge()
                if path == "/v2/":
                    return self._send(200, b"{}", {"Content-Type": "application/json",
                                                   "Docker-Distribution-API-Version": "registry/2.0"})
                rest = path[len("/v2/"):]
                if "/manifests/" in rest:
                    repo, ref = rest.split("/manifests/", 1)
                    with reg.lock:
                        m = reg.manifests.get((repo, ref))
                        if m is None:
                            for (r, _t), mm in reg.manifests.items():
                                if r == repo and ref == "sha256:" + hashlib.sha256(mm).hexdigest():
                                    m = mm
                    if m is None:
                        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}',
                                          {"Content-Type": "application/json"})
                    return self._send(200, m, {"Content-Type": MANIFEST_V2,
                                               "Docker-Content-Digest": "sha256:" + hashlib.sha256(m).hexdigest()})
                if "/blobs/" in rest:
                    digest = rest.split("/blobs/", 1)[1]
                    data = reg.blobs.get(digest)
                    if data is None:
                        return self._send(404)
                    return self._send(200, data, {"Content-Type": "application/octet-stream",
                                                  "Docker-Content-Digest": digest})
                return self._send(404)

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def push(self, local_tag: str, repo: str, tag: str):
        manifest, blobs = image_blobs(local_tag)
        with self.lock:
            self.blobs.update(blobs)
            self.manifests[(repo, tag)] = manifest

    def manifest_requests(self, repo: str) -> list[tuple[str, str, str | None]]:
        with self.lock:
            return [r for r in self.requests if r[1].startswith(f"/v2/{repo}/manifests/")]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
