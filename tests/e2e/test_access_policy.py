"""End-to-end tests of the source-address policy (issue 11, decisions.md
"Source-address policy"): a task container's calls to the control API are
refused with 403 while the host's (loopback here) work; /healthz and the
tunnel endpoint stay reachable from containers; API_ALLOWED_CLIENTS
restricts other callers, checked from a network namespace this test creates
(a non-loopback source address)."""
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from taskutil import docker, final_report, http, new_task_id, submit

REPO = Path(__file__).resolve().parents[2]


def remove_container(task_id):
    docker("rm", "-f", f"kohakuriver-task-{task_id}", check=False)


@pytest.fixture(autouse=True)
def docker_up():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable: these tests need dockerd (scripts/ensure-dockerd.sh)")


def raw_request(method, path, port, body="{}"):
    """A shell line that sends one HTTP request with busybox nc from inside
    the container to the runner (through the network's gateway) and prints
    the raw response between markers. Method "WS" sends a WebSocket upgrade
    (GET with the handshake headers)."""
    if method == "WS":
        req = (f"GET {path} HTTP/1.1\\r\\nHost: runner\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
               f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
    else:
        req = (f"{method} {path} HTTP/1.1\\r\\nHost: runner\\r\\nContent-Type: application/json\\r\\n"
               f"Content-Length: {len(body)}\\r\\nConnection: close\\r\\n\\r\\n{body}")
    return (f"echo '>>> {method} {path}'; printf '{req}' | nc -w 3 $GW {port}; echo; echo '<<<'")


def parse_responses(text):
    """{(method, path): (status, body)} from the markers raw_request prints."""
    out = {}
    for chunk in text.split(">>> ")[1:]:
        head, _, rest = chunk.partition("\n")
        method, path = head.split(" ", 1)
        resp = rest.split("<<<")[0].replace("\r\n", "\n")
        status_line = resp.splitlines()[0] if resp.strip() else ""
        status = int(status_line.split()[1]) if status_line.startswith("HTTP/") else None
        body = resp.split("\n\n", 1)[1].strip() if "\n\n" in resp else ""
        out[(method, path)] = (status, body)
    return out


def test_task_container_is_refused_control_api_while_host_works(host, make_runner, tmp_path):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, CONTAINER_TAR_DIR=str(tmp_path / "tars"))
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    task_id = new_task_id()
    port = runner.port
    probes = [("POST", "/api/execute"), ("POST", "/api/kill"), ("POST", "/api/vps/create"),
              ("GET", "/api/fs/1/list"), ("GET", "/api/docker/images"), ("GET", "/metrics"),
              ("WS", f"/ws/task/{task_id}/terminal"), ("WS", f"/ws/fs/{task_id}/watch?paths=/"),
              ("WS", f"/ws/forward/kohakuriver-task-{task_id}/22"),
              ("GET", "/healthz"), ("GET", f"/ws/tunnel/kohakuriver-task-{task_id}")]
    # The gateway of the container's network is where the runner is reached
    # (what the tunnel client does too).
    script = "GW=$(ip route | awk '/default/ {print $3}'); " + "; ".join(raw_request(m, p, port) for m, p in probes)
    try:
        submit(runner, task_id, "sh", ["-c", script])
        report = final_report(host, task_id, timeout=60)
        assert report["status"] == "completed", report
        out = (Path(runner.config["SHARED_DIR"]) / "logs" / str(task_id) / "stdout.log").read_text()
    finally:
        remove_container(task_id)
    got = parse_responses(out)
    for method, path in probes[:9]:
        status, body = got[(method, path)]
        assert status == 403, (method, path, status, body, out)
        assert json.loads(body) == {"detail": "Forbidden: containers and VMs cannot use the runner's control API"}
    status, body = got[("GET", "/healthz")]
    assert status == 200 and json.loads(body)["status"] == "ok", out
    # The tunnel endpoint is not refused by the policy (its handler checks
    # which container calls; without an upgrade it is not a tunnel).
    status, _ = got[("GET", f"/ws/tunnel/kohakuriver-task-{task_id}")]
    assert status is not None and status != 403, out
    # The refusal is logged once per address, naming what decides it.
    log = runner.output()
    refusals = [line for line in log.splitlines() if "Refused" in line and "logged once per address" in line]
    assert len(refusals) == 1, refusals
    assert "DOCKER_NETWORK_SUBNET" in refusals[0] or "Docker network" in refusals[0], refusals[0]
    # The host (loopback) is still served.
    status, reply = http("POST", runner.url("/api/kill"), {"task_id": 1})
    assert status != 403, (status, reply)


class Namespace:
    """A network namespace joined to this machine by a veth pair: the runner
    sees its requests coming from a non-loopback address."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.name = f"kr-acl-{tag}"
        self.veth = f"kra{tag}"
        self.peer = f"krb{tag}"
        octet = int(tag[:2], 16) % 200 + 20
        self.host_ip = f"10.251.{octet}.1"
        self.ns_ip = f"10.251.{octet}.2"

    def sh(self, *cmd, check=True):
        return subprocess.run(list(cmd), capture_output=True, text=True, check=check)

    def __enter__(self):
        self.sh("ip", "netns", "add", self.name)
        self.sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        self.sh("ip", "link", "set", self.peer, "netns", self.name)
        self.sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        self.sh("ip", "link", "set", self.veth, "up")
        self.sh("ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.peer)
        self.sh("ip", "netns", "exec", self.name, "ip", "link", "set", self.peer, "up")
        self.sh("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc):
        self.sh("ip", "link", "del", self.veth, check=False)
        self.sh("ip", "netns", "del", self.name, check=False)

    def request(self, method, url, body=None):
        code = ("import json,sys,urllib.request,urllib.error\n"
                "m,u,b=sys.argv[1],sys.argv[2],sys.argv[3]\n"
                "r=urllib.request.Request(u,method=m,data=b.encode() if b else None,"
                "headers={'Content-Type':'application/json'})\n"
                "try:\n  x=urllib.request.urlopen(r,timeout=10); print(x.status); print(x.read().decode())\n"
                "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n")
        p = self.sh("ip", "netns", "exec", self.name, "python3", "-c", code, method, url,
                    json.dumps(body) if body is not None else "")
        status, _, text = p.stdout.partition("\n")
        return int(status), text.strip()


def netns_available():
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


def test_api_allowed_clients_restricts_other_callers(host, make_runner):
    if not netns_available():
        pytest.fail("network namespaces are not available (needs root and iproute2)")
    with Namespace() as ns:
        runner = make_runner(host, API_ALLOWED_CLIENTS=["192.0.2.7", "198.51.100.0/24"],
                             METRICS_ALLOWED_CLIENTS=[f"{ns.ns_ip}"])
        runner.wait_listening()
        base = f"http://{ns.host_ip}:{runner.port}"
        status, body = ns.request("POST", base + "/api/execute", {})
        assert status == 403, body
        assert json.loads(body) == {"detail": "Forbidden: client address not allowed"}
        status, body = ns.request("GET", base + "/healthz")
        assert status == 200, body
        status, body = ns.request("GET", base + "/metrics")
        assert status == 200 and "kohakuriver_runner_info" in body, body
        # Loopback is always allowed.
        status, _ = http("POST", runner.url("/api/execute"), {})
        assert status == 422
        assert "API_ALLOWED_CLIENTS" in runner.output()
        runner.stop()

        allowed = make_runner(host, API_ALLOWED_CLIENTS=[f"{ns.ns_ip}/32"])
        allowed.wait_listening()
        base = f"http://{ns.host_ip}:{allowed.port}"
        status, body = ns.request("POST", base + "/api/execute", {})
        assert status == 422, body  # reached the route: validation answers
        status, body = ns.request("GET", base + "/metrics")
        assert status == 200, body  # /metrics follows the API list by default


def test_unset_lists_keep_upstream_openness(host, make_runner):
    if not netns_available():
        pytest.fail("network namespaces are not available (needs root and iproute2)")
    with Namespace() as ns:
        runner = make_runner(host)
        runner.wait_listening()
        status, body = ns.request("POST", f"http://{ns.host_ip}:{runner.port}/api/execute", {})
        assert status == 422, body


def test_bad_client_list_is_a_config_error(make_runner):
    runner = make_runner(API_ALLOWED_CLIENTS=["10.0.0.0/99"])
    rc = runner.proc.wait(10)
    assert rc != 0
    assert "API_ALLOWED_CLIENTS[0]" in runner.output()
