"""The fixture host in cluster mode (scripts/cluster.sh, issue 19): a
standalone process that does what the upstream host does on the paths a
multi-node cluster exercises, and nothing more.

Like upstream (host/endpoints/nodes.py, background/runner_monitor.py,
services/task_scheduler.py, services/overlay/):
  * POST /api/register records the node (online) and, with --overlay, gives
    it a stable runner id and creates the hub side of its VXLAN tunnel
    (vxkr<id>, VNI base+id, remote = the runner URL's address, the host's
    address on the runner's /18); the reply carries the allocation.
  * PUT /api/heartbeat/<name>: 404 for an unknown node; marks it online.
  * A monitor marks a node offline when its last heartbeat is older than
    the timeout (upstream: HEARTBEAT_INTERVAL 5 s x factor 6 = 30 s, checked
    every 10 s) and every running/assigning/pending task or VPS on it `lost`.
  * POST /api/update: a final status replaces anything (also `lost`); a
    non-final one over a final status is ignored, except VPS lost->running;
    unknown task ids are answered 200 with upstream's message.
  * POST /api/overlay/ip/reserve|release: addresses from the runner's subnet.

Differences from upstream, on purpose:
  * The heartbeat timeout and the check interval are command-line options
    (--heartbeat-timeout, --check-interval; upstream defaults 30 and 10) so
    that the tests need not wait 40 s per fault.
  * No scheduler: work is dispatched by the test through the control API
    (/cluster/...), which records the task as `assigning` on its node and
    forwards the runner request exactly as upstream's send_task_to_runner.
  * State is a JSON file written after each change (upstream: SQLite), so a
    restarted host continues where it stopped.
  * Every status update is kept per task (the soak checks the sequence).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FINAL = {"completed", "failed", "killed", "killed_oom", "lost", "stopped"}
OVERLAY_NET = ipaddress.ip_network("10.128.0.0/12")
HOST_OVERLAY_IP = "10.128.0.1"
VNI_BASE = 100
VXLAN_PORT = 4789
MTU = 1450


def runner_subnet(runner_id: int) -> ipaddress.IPv4Network:
    base = int(OVERLAY_NET.network_address) + (runner_id << 14)
    return ipaddress.ip_network(f"{ipaddress.ip_address(base)}/18")


def sh(*args):
    res = subprocess.run(list(args), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


class ClusterState:
    def __init__(self, path: str | None, timeout: float, overlay: bool, local_ip: str):
        self.path = path
        self.timeout = timeout
        self.overlay = overlay
        self.local_ip = local_ip
        self.lock = threading.RLock()
        self.nodes: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}  # str(task_id) -> record
        self.reservations: dict[str, dict] = {}  # token -> {ip, runner}
        self.seq = 0
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.nodes, self.tasks = saved["nodes"], saved["tasks"]
            self.reservations, self.seq = saved.get("reservations", {}), saved.get("seq", 0)
            now = time.time()
            for n in self.nodes.values():  # the host was down: heartbeats count from now
                n["last_heartbeat"] = max(n["last_heartbeat"], now)

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"nodes": self.nodes, "tasks": self.tasks, "reservations": self.reservations,
                       "seq": self.seq}, f)
        os.replace(tmp, self.path)

    # ---- nodes
    def register(self, body: dict) -> dict | None:
        name = body.get("hostname", "?")
        url = body.get("url", "")
        phys = urlsplit(url).hostname or ""
        with self.lock:
            node = self.nodes.setdefault(name, {"runner_id": None})
            node.update(url=url, physical_ip=phys, status="online", last_heartbeat=time.time(),
                        registrations=node.get("registrations", 0) + 1)
            alloc = None
            if self.overlay:
                if node["runner_id"] is None:
                    used = {n["runner_id"] for n in self.nodes.values() if n["runner_id"]}
                    node["runner_id"] = min(i for i in range(1, 255) if i not in used)
                alloc = self.allocation(node["runner_id"])
                self.hub_tunnel(node["runner_id"], phys)
            self.save()
            return alloc

    def allocation(self, rid: int) -> dict:
        sub = runner_subnet(rid)
        return {"runner_id": rid, "overlay_subnet": str(sub), "overlay_gateway": str(sub.network_address + 1),
                "host_overlay_ip": HOST_OVERLAY_IP, "host_physical_ip": self.local_ip,
                "overlay_network_cidr": str(OVERLAY_NET), "host_ip_on_runner_subnet": str(sub.network_address + 254)}

    def hub_tunnel(self, rid: int, phys: str):
        """Upstream's create_vxlan_sync: keep the device when its remote is
        right, recreate it when the runner's address changed."""
        dev = f"vxkr{rid}"
        current = subprocess.run(["ip", "-d", "-j", "link", "show", dev], capture_output=True, text=True)
        if current.returncode == 0:
            info = json.loads(current.stdout)[0].get("linkinfo", {}).get("info_data", {})
            if info.get("remote") == phys:
                return
            sh("ip", "link", "del", dev)
        sh("ip", "link", "add", dev, "type", "vxlan", "id", str(VNI_BASE + rid), "local", self.local_ip,
           "remote", phys, "dstport", str(VXLAN_PORT), "nolearning")
        sh("ip", "link", "set", dev, "mtu", str(MTU), "up")
        sh("ip", "addr", "replace", f"{runner_subnet(rid).network_address + 254}/18", "dev", dev)

    def heartbeat(self, name: str, body: dict) -> bool:
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                return False
            node["last_heartbeat"] = time.time()
            node["status"] = "online"
            node["running_tasks"] = [str(t) for t in body.get("running_tasks", [])]
            return True

    def check_dead(self):
        with self.lock:
            limit = time.time() - self.timeout
            changed = False
            for name, node in self.nodes.items():
                if node["status"] == "online" and node["last_heartbeat"] < limit:
                    node["status"] = "offline"
                    node["offline_count"] = node.get("offline_count", 0) + 1
                    changed = True
                    for t in self.tasks.values():
                        if t["node"] == name and t["status"] in ("running", "assigning", "pending"):
                            t.update(status="lost", exit_code=-1,
                                     message=f"Node {name} went offline (heartbeat timeout)")
                            t["history"].append({"status": "lost", "by": "host", "at": time.time()})
            if changed:
                self.save()

    # ---- tasks
    def add_task(self, task_id: str, node: str, kind: str, request: dict):
        with self.lock:
            self.tasks[task_id] = {"node": node, "type": kind, "status": "assigning", "exit_code": None,
                                   "message": None, "ssh_port": None, "history": [], "request": request}
            self.save()

    def update(self, body: dict) -> bool:
        tid = str(body.get("task_id"))
        status = body.get("status")
        with self.lock:
            self.seq += 1
            t = self.tasks.get(tid)
            if t is None:
                return False
            entry = {"status": status, "exit_code": body.get("exit_code"), "seq": self.seq, "at": time.time()}
            accepted = (t["status"] not in FINAL or status in FINAL
                        or (t["type"] == "vps" and t["status"] == "lost" and status == "running"))
            entry["accepted"] = accepted
            t["history"].append(entry)
            if accepted:
                t.update(status=status, exit_code=body.get("exit_code"), message=body.get("message"))
                if body.get("ssh_port") is not None:
                    t["ssh_port"] = body["ssh_port"]
            self.save()
            return accepted

    # ---- overlay IP reservations
    def reserve(self, runner: str, ip: str | None, ttl: int) -> dict:
        with self.lock:
            node = self.nodes.get(runner)
            if not node or not node.get("runner_id"):
                raise KeyError(runner)
            sub = runner_subnet(node["runner_id"])
            taken = {r["ip"] for r in self.reservations.values()}
            if ip is None:
                ip = next(str(a) for a in sub.hosts() if int(a) - int(sub.network_address) >= 100
                          and str(a) not in taken)
            token = f"krc-{len(self.reservations) + 1}-{ip}"
            self.reservations[token] = {"ip": ip, "runner": runner}
            self.save()
            return {"ip": ip, "runner": runner, "token": token, "expires_at": "2099-01-01T00:00:00",
                    "ttl_seconds": ttl}


def forward(url: str, method: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=body)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 502, json.dumps({"detail": f"runner unreachable: {e}"}).encode()


def end_by_user(state: ClusterState, tid: str, what: str) -> tuple[int, dict]:
    new = "killed" if what == "kill" else "stopped"
    with state.lock:
        t = state.tasks.get(tid)
        if t is None or (what == "vps-stop" and t["type"] != "vps"):
            return 404, {"detail": "Task not found."}
        if t["status"] not in ("pending", "assigning", "running", "paused"):
            return 409, {"detail": f"Task cannot be {new} (state: {t['status']})"}
        original = t["status"]
        t.update(status=new, message="Kill requested by user." if new == "killed" else "Stopped by user.")
        t["history"].append({"status": new, "by": "host", "at": time.time()})
        state.save()
        target = state.nodes.get(t["node"], {})
    runner_status = None
    if original in ("running", "paused") and target.get("status") == "online":
        if what == "kill":
            name = f"kohakuriver-vps-{tid}" if t["type"] == "vps" else f"kohakuriver-task-{tid}"
            runner_status, _ = forward(target["url"] + "/api/kill", "POST",
                                       json.dumps({"task_id": int(tid), "container_name": name}).encode(), 30)
        else:
            runner_status, _ = forward(target["url"] + f"/api/vps/stop/{tid}", "POST", None, 120)
    return 200, {"message": f"{new} requested for task {tid}", "runner_status": runner_status}


def make_handler(state: ClusterState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status: int, obj):
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self.reply(422, {"detail": "body is not JSON"})
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            if path == "/api/register":
                alloc = state.register(body)
                return self.reply(200, {"message": f"Node {body.get('hostname')} registered successfully.",
                                        "created": True, "overlay": alloc})
            if path.startswith("/api/heartbeat/"):
                if state.heartbeat(path.rsplit("/", 1)[1], body):
                    return self.reply(200, {"message": "Heartbeat received"})
                return self.reply(404, {"detail": "Node not registered"})
            if path == "/api/update":
                if state.update(body):
                    return self.reply(200, {"message": "Task status updated successfully."})
                return self.reply(200, {"message": "Task ID not recognized or invalid state transition."})
            if path == "/api/overlay/ip/reserve":
                try:
                    return self.reply(200, state.reserve((query.get("runner") or [""])[0],
                                                         (query.get("ip") or [None])[0],
                                                         int((query.get("ttl") or ["300"])[0])))
                except (KeyError, StopIteration):
                    return self.reply(404, {"detail": "runner unknown or subnet full"})
            if path == "/api/overlay/ip/release":
                with state.lock:
                    state.reservations.pop((query.get("token") or [""])[0], None)
                    state.save()
                return self.reply(200, {"message": "IP reservation released"})
            if path == "/cluster/state":
                with state.lock:
                    return self.reply(200, {"nodes": state.nodes, "tasks": state.tasks,
                                            "reservations": state.reservations, "timeout": state.timeout})
            if path.startswith("/cluster/dispatch/"):
                # /cluster/dispatch/<node>/<execute|vps-create>
                _, _, _, node, what = path.split("/", 4)
                with state.lock:
                    target = state.nodes.get(node)
                if target is None:
                    return self.reply(404, {"detail": f"node {node} unknown"})
                kind, runner_path = {"execute": ("command", "/api/execute"),
                                     "vps-create": ("vps", "/api/vps/create")}[what]
                state.add_task(str(body["task_id"]), node, kind, body)
                status, answer = forward(target["url"] + runner_path, "POST", raw, 300)
                if status != 200:
                    state.update({"task_id": body["task_id"], "status": "failed", "exit_code": None,
                                  "message": f"dispatch failed: HTTP {status}"})
                return self.reply(status, answer)
            if path.startswith(("/cluster/kill/", "/cluster/vps-stop/")):
                # Upstream's POST /api/kill/<id> and /api/vps/stop/<id>: mark
                # `killed`/`stopped` first, then tell the runner when it was
                # running/paused and its node is online (the runner itself
                # sends no report for either).
                what, tid = path.split("/")[2:4]
                return self.reply(*end_by_user(state, tid, what))
            if path.startswith("/cluster/forward/"):
                # /cluster/forward/<node>/<runner path...>: kill, pause, stop...
                _, _, _, node, rest = path.split("/", 4)
                with state.lock:
                    target = state.nodes.get(node)
                if target is None:
                    return self.reply(404, {"detail": f"node {node} unknown"})
                status, answer = forward(target["url"] + "/" + rest, self.command, raw or None, 120)
                return self.reply(status, answer)
            return self.reply(404, {"detail": "Not Found"})

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--local-ip", required=True, help="this host's underlay address (VXLAN local)")
    ap.add_argument("--state-file")
    ap.add_argument("--overlay", action="store_true")
    ap.add_argument("--heartbeat-timeout", type=float, default=30.0)
    ap.add_argument("--check-interval", type=float, default=10.0)
    args = ap.parse_args()
    state = ClusterState(args.state_file, args.heartbeat_timeout, args.overlay, args.local_ip)
    if args.overlay:  # upstream's setup_host_routing_sync
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
        subprocess.run(["ip", "addr", "add", f"{HOST_OVERLAY_IP}/32", "dev", "lo"], capture_output=True)

    def monitor():
        while True:
            time.sleep(args.check_interval)
            state.check_dead()

    threading.Thread(target=monitor, daemon=True).start()
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(state))
    server.daemon_threads = True
    print(f"cluster host listening on {args.bind}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
