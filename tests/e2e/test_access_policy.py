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


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_refused_flood_costs_the_runner_nothing(host, make_runner, tmp_path):
    """Issue 16 item 2: 48 connections from a task container each announce a
    60 MB file write, send 4 MiB and stall. The policy is decided from the
    header: each gets its 403 with Connection: close at once, its body is
    drained and dropped, never buffered, so the runner's memory stays near
    idle, and the host (loopback) is still served meanwhile."""
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, CONTAINER_TAR_DIR=str(tmp_path / "tars"))
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    for _ in range(3):
        http("GET", runner.url("/healthz"))
    idle = rss_kib(runner.proc.pid)
    task_id = new_task_id()
    head = (f"POST /api/fs/1/write HTTP/1.1\\r\\nHost: runner\\r\\nContent-Type: application/json\\r\\n"
            f"Content-Length: 60000000\\r\\n\\r\\n")
    # One connection sends only the header and prints the answer (before the
    # fix there was none: the runner waited for the body); 48 send 4 MiB of
    # body each and then stall for 30 s.
    script = ("GW=$(ip route | awk '/default/ {print $3}'); "
              f"printf '{head}' | nc -w 5 $GW {runner.port} > /tmp/answer; "
              "echo '>>> answer'; cat /tmp/answer; echo; echo '<<<'; "
              f"for i in $(seq 48); do "
              f"(printf '{head}'; head -c 4194304 /dev/zero; sleep 30) | nc $GW {runner.port} >/dev/null 2>&1 & "
              "done; echo FLOODING; sleep 25; echo DONE")
    log = Path(runner.config["SHARED_DIR"]) / "logs" / str(task_id) / "stdout.log"
    peak = idle
    try:
        submit(runner, task_id, "sh", ["-c", script])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "FLOODING" in log.read_text()):
            time.sleep(0.2)
        assert "FLOODING" in log.read_text(), log.read_text() if log.exists() else "no log"
        served = []
        for _ in range(40):  # ~ 20 s of the flood
            peak = max(peak, rss_kib(runner.proc.pid))
            status, reply = http("POST", runner.url("/api/kill"), {"task_id": 1}, timeout=30)
            served.append(status)
            time.sleep(0.5)
        report = final_report(host, task_id, timeout=90)
        assert report["status"] == "completed", report
        out = log.read_text()
    finally:
        remove_container(task_id)
    # 48 x 4 MiB buffered would be 192 MiB; refused bodies are never held.
    print(f"runner RSS: idle {idle} KiB, peak during the flood {peak} KiB")
    assert (peak - idle) < 32 * 1024, f"runner RSS grew by {(peak - idle) // 1024} MiB (idle {idle // 1024} MiB)"
    # The host's requests were answered throughout (not refused, not lost).
    assert served and all(s not in (None, 403, 503) for s in served), served
    answer = out.split(">>> answer", 1)[1].split("<<<", 1)[0].replace("\r\n", "\n")
    assert answer.strip().startswith("HTTP/1.1 403"), out
    assert "connection: close" in answer.lower(), answer
    assert json.loads(answer.split("\n\n", 1)[1].strip()) == {
        "detail": "Forbidden: containers and VMs cannot use the runner's control API"}


class Ipv6Setup:
    """Two network namespaces that reach this machine over IPv6: one through
    a bridge (the runner's VM bridge by name), one through a plain veth (a
    LAN client). Each has a link-local and a ULA address."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.bridge = f"krvb{tag}"
        self.ns_bridge, self.ns_lan = f"kr-v6b-{tag}", f"kr-v6l-{tag}"
        self.veth_b, self.peer_b = f"kvb{tag}", f"kvc{tag}"
        self.veth_l, self.peer_l = f"kvl{tag}", f"kvm{tag}"
        self.ula_b, self.ula_l = f"fd6b:{tag[:4]}:1::", f"fd6b:{tag[:4]}:2::"

    def sh(self, *cmd, check=True):
        return subprocess.run(list(cmd), capture_output=True, text=True, check=check)

    def ns(self, name, *cmd, check=True):
        return self.sh("ip", "netns", "exec", name, *cmd, check=check)

    def __enter__(self):
        self.sh("ip", "link", "add", "name", self.bridge, "type", "bridge")
        for ns, veth, peer in ((self.ns_bridge, self.veth_b, self.peer_b), (self.ns_lan, self.veth_l, self.peer_l)):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
            self.sh("ip", "link", "set", peer, "netns", ns)
            self.ns(ns, "ip", "link", "set", "lo", "up")
        self.sh("ip", "link", "set", self.veth_b, "master", self.bridge)
        self.sh("ip", "-6", "addr", "add", f"{self.ula_b}1/64", "dev", self.bridge, "nodad")
        self.sh("ip", "-6", "addr", "add", f"{self.ula_l}1/64", "dev", self.veth_l, "nodad")
        self.ns(self.ns_bridge, "ip", "-6", "addr", "add", f"{self.ula_b}2/64", "dev", self.peer_b, "nodad")
        self.ns(self.ns_lan, "ip", "-6", "addr", "add", f"{self.ula_l}2/64", "dev", self.peer_l, "nodad")
        for link in (self.bridge, self.veth_b, self.veth_l):
            self.sh("ip", "link", "set", link, "up")
        self.ns(self.ns_bridge, "ip", "link", "set", self.peer_b, "up")
        self.ns(self.ns_lan, "ip", "link", "set", self.peer_l, "up")
        # Link-local addresses are usable once duplicate address detection ends.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = [self.link_local(None, self.bridge), self.link_local(None, self.veth_l),
                     self.link_local(self.ns_bridge, self.peer_b), self.link_local(self.ns_lan, self.peer_l)]
            if all(ready):
                return self
            time.sleep(0.3)
        raise AssertionError("IPv6 link-local addresses did not become ready")

    def __exit__(self, *exc):
        for link in (self.veth_b, self.veth_l, self.bridge):
            self.sh("ip", "link", "del", link, check=False)
        for ns in (self.ns_bridge, self.ns_lan):
            self.sh("ip", "netns", "del", ns, check=False)

    def link_local(self, ns, dev):
        cmd = ["ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link"]
        out = (self.ns(ns, *cmd, check=False) if ns else self.sh(*cmd, check=False)).stdout
        if "tentative" in out:
            return None
        for line in out.splitlines():
            return line.split()[3].split("/")[0]
        return None

    def post(self, ns, dev, address, port, path="/api/execute"):
        """POST {} from namespace `ns` to [address]:port (scoped to `dev`
        when link-local); returns the HTTP status."""
        code = ("import socket,sys\n"
                "a,dev,port,path=sys.argv[1],sys.argv[2],int(sys.argv[3]),sys.argv[4]\n"
                "scope=socket.if_nametoindex(dev) if a.startswith('fe80') else 0\n"
                "s=socket.socket(socket.AF_INET6); s.settimeout(10); s.connect((a,port,0,scope))\n"
                "s.sendall(('POST %s HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n'\n"
                "  'Content-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}' % path).encode())\n"
                "r=b''\n"
                "while True:\n"
                "  c=s.recv(4096)\n"
                "  if not c: break\n"
                "  r+=c\n"
                "print(r.split(b' ')[1].decode())\n")
        p = self.ns(ns, "python3", "-c", code, address, dev, str(port), path)
        return int(p.stdout.strip())


def test_ipv6_callers_are_classified_by_where_they_arrive(host, make_runner):
    """Issue 16 item 3: with RUNNER_BIND_IP "::", a caller arriving on a
    runner bridge is a container/VM whatever its IPv6 address (link-local
    by the interface it came in on, ULA by the bridge's prefix), while the
    same kinds of addresses from another interface stay ordinary clients."""
    if not netns_available():
        pytest.fail("network namespaces are not available (needs root and iproute2)")
    with Ipv6Setup() as net:
        runner = make_runner(host, RUNNER_BIND_IP="::", VM_BRIDGE_NAME=net.bridge)
        runner.wait_listening()
        port = runner.port
        bridge_ll = net.link_local(None, net.bridge)
        lan_ll = net.link_local(None, net.veth_l)
        # Through the runner's bridge: refused, both address kinds.
        assert net.post(net.ns_bridge, net.peer_b, bridge_ll, port) == 403
        assert net.post(net.ns_bridge, net.peer_b, f"{net.ula_b}1", port) == 403
        # /healthz stays open to them.
        assert net.post(net.ns_bridge, net.peer_b, bridge_ll, port, "/healthz") in (200, 405)
        # From the LAN interface: link-local and ULA are ordinary clients
        # (the route answers: 422 for an empty body).
        assert net.post(net.ns_lan, net.peer_l, lan_ll, port) == 422
        assert net.post(net.ns_lan, net.peer_l, f"{net.ula_l}1", port) == 422
        # IPv4 still works on the dual-stack socket (the host is loopback here).
        assert http("POST", runner.url("/api/execute"), {})[0] == 422
        log = runner.output()
        assert "link-local address on " + net.bridge in log, log[-3000:]
