"""Helpers for the multi-node cluster of scripts/cluster.sh (issue 19): the
fixture host's control API (tests/e2e/cluster_host.py), work dispatched the
way the upstream host sends it, each node's own Docker, fault injection."""
from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import time
from pathlib import Path

from taskutil import http

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "cluster.sh"
HOST = "http://10.233.19.1:8000"
SHARED = Path("/var/lib/krc/shared")
ENV = "krcbox"
OVERLAY = ipaddress.ip_network("10.128.0.0/12")


def node(k: int) -> str:
    return f"krc-n{k}"


def cluster(*args, check=True, timeout=600):
    res = subprocess.run([str(CLUSTER), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"cluster.sh {' '.join(map(str, args))} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def node_docker(k: int, *args, check=True, timeout=60):
    return cluster("docker", k, *args, check=check, timeout=timeout)


def state() -> dict:
    status, body = http("GET", HOST + "/cluster/state")
    assert status == 200, body
    return body


def task(tid: int) -> dict | None:
    return state()["tasks"].get(str(tid))


def new_id() -> int:
    return 7_400_000_000_000_000_000 + random.randrange(10**15)


def execute_body(tid: int, command: str, arguments=(), **fields) -> dict:
    """What upstream's send_task_to_runner sends for an environment task."""
    logs = f"{SHARED}/logs/{tid}"
    body = {"task_id": str(tid), "command": command, "arguments": list(arguments), "env_vars": {},
            "required_cores": 0, "required_gpus": [], "required_memory_bytes": None, "target_numa_node_id": None,
            "container_name": ENV, "registry_image": None, "working_dir": "/shared",
            "stdout_path": f"{logs}/stdout.log", "stderr_path": f"{logs}/stderr.log", "reserved_ip": None}
    body.update(fields)
    return body


def vps_body(tid: int, **fields) -> dict:
    body = {"task_id": str(tid), "required_cores": 0, "required_gpus": [], "required_memory_bytes": None,
            "target_numa_node_id": None, "container_name": ENV, "registry_image": None,
            "ssh_key_mode": "disabled", "ssh_public_key": None, "ssh_port": 40000, "reserved_ip": None,
            "vps_backend": "docker"}
    body.update(fields)
    return body


def run_sh(k: int, script: str, tid: int | None = None, **fields) -> int:
    """Dispatches `sh -c script` to node k; returns the task id."""
    tid = tid or new_id()
    status, reply = http("POST", f"{HOST}/cluster/dispatch/{node(k)}/execute",
                         execute_body(tid, "sh", ["-c", script], **fields), timeout=120)
    assert status == 200, (status, reply)
    return tid


def create_vps(k: int, **fields) -> int:
    tid = new_id()
    status, reply = http("POST", f"{HOST}/cluster/dispatch/{node(k)}/vps-create", vps_body(tid, **fields),
                         timeout=300)
    assert status == 200, (status, reply)
    return tid


def runner_call(k: int, method: str, path: str, body=None, timeout=60):
    return http(method, f"{HOST}/cluster/forward/{node(k)}{path}", body, timeout=timeout)


def wait_status(tid: int, wanted, timeout=120, exit_code=...) -> dict:
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    deadline = time.monotonic() + timeout
    t = None
    while time.monotonic() < deadline:
        t = task(tid)
        if t and t["status"] in wanted and (exit_code is ... or t["exit_code"] == exit_code):
            return t
        time.sleep(0.5)
    raise AssertionError(f"task {tid}: wanted {wanted} (exit {exit_code}), have {t}")


def wait_node(k: int, wanted: str, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = state()["nodes"].get(node(k))
        if n and n["status"] == wanted:
            return n
        time.sleep(0.5)
    raise AssertionError(f"node {k} not {wanted}: {state()['nodes'].get(node(k))}")


def container_name(tid: int, vps=False) -> str:
    return f"kohakuriver-vps-{tid}" if vps else f"kohakuriver-task-{tid}"


def overlay_ip(k: int, name: str) -> str:
    nets = json.loads(node_docker(k, "inspect", "-f", "{{json .NetworkSettings.Networks}}", name).stdout)
    for n in nets.values():
        if n.get("IPAddress") and ipaddress.ip_address(n["IPAddress"]) in OVERLAY:
            return n["IPAddress"]
    raise AssertionError(f"{name} on node {k} has no overlay address: {nets}")


def container_running(k: int, name: str) -> bool:
    res = node_docker(k, "inspect", "-f", "{{.State.Running}}", name, check=False)
    return res.returncode == 0 and res.stdout.strip() == "true"


def reserve_ip(k: int) -> tuple[str, str]:
    """An overlay address on node k's subnet: (ip, token)."""
    status, body = http("POST", f"{HOST}/api/overlay/ip/reserve?runner={node(k)}&ttl=300")
    assert status == 200, body
    return body["ip"], body["token"]


def release_ip(token: str):
    status, body = http("POST", f"{HOST}/api/overlay/ip/release?token={token}")
    assert status == 200, body


def kill(tid: int) -> dict:
    """The host's kill (upstream marks the task `killed` itself)."""
    status, body = http("POST", f"{HOST}/cluster/kill/{tid}")
    assert status == 200, body
    return body


def stop_vps(tid: int) -> dict:
    """The host's VPS stop (upstream marks it `stopped` itself)."""
    status, body = http("POST", f"{HOST}/cluster/vps-stop/{tid}", timeout=150)
    assert status == 200, body
    return body
