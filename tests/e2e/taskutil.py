"""Helpers for end-to-end task tests: submitting work the way the upstream
host does, and inspecting what Docker really did (the tests may use the
docker CLI; the runner never does)."""
import json
import random
import socket
import subprocess
import time
import urllib.error
import urllib.request

IMAGE = "kr-test/busybox:test"


def new_task_id() -> int:
    # Snowflake-sized ids (> 2^53) so any double round-trip would show.
    return 7_300_000_000_000_000_000 + random.randrange(10**15)


def http(method, url, body=None, timeout=10):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, method=method, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def execute_body(runner, task_id, command, arguments=None, **fields):
    """The 14 keys the host's send_task_to_runner sends (task_id as a string,
    as for freshly created tasks)."""
    logs = f"{runner.config['SHARED_DIR']}/logs/{task_id}"
    body = {
        "task_id": str(task_id),
        "command": command,
        "arguments": arguments or [],
        "env_vars": {},
        "required_cores": 0,
        "required_gpus": [],
        "required_memory_bytes": None,
        "target_numa_node_id": None,
        "container_name": None,
        "registry_image": IMAGE,
        "working_dir": "/shared",
        "stdout_path": f"{logs}/stdout.log",
        "stderr_path": f"{logs}/stderr.log",
        "reserved_ip": None,
    }
    body.update(fields)
    return body


def submit(runner, task_id, command, arguments=None, expect=200, **fields):
    status, reply = http("POST", runner.url("/api/execute"), execute_body(runner, task_id, command, arguments, **fields))
    assert status == expect, (status, reply)
    if expect == 200:
        assert reply == {"message": "Task accepted for launch", "task_id": task_id}
    return reply


def final_report(host, task_id, timeout=60):
    finals = {"completed", "failed", "killed_oom", "stopped"}
    host.wait_for("update", timeout=timeout,
                  pred=lambda r: r.json()["task_id"] == task_id and r.json()["status"] in finals)
    return [u for u in host.updates_for(task_id) if u["status"] in finals][-1]


def statuses(host, task_id):
    return [u["status"] for u in host.updates_for(task_id)]


def docker(*args, check=True, timeout=60):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def container_exists(name) -> bool:
    return docker("inspect", name, check=False).returncode == 0


def wait_until(pred, timeout=30, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def remove_task_containers():
    # Only this node's (e2e.sh gives each worktree its own hostname): other
    # helpers' tests may be running their own task containers meanwhile.
    ids = docker("ps", "-aq", "--filter", "name=kohakuriver-task-", "--filter",
                 f"label=kohakuriver.node={socket.gethostname()}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
