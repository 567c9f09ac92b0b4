"""Switching a live node from the Python runner to this one (issue 18): the
layout the Python runner leaves (tests/e2e/pylayout.py, made as upstream
makes it) is adopted by this runner on its first start."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from pylayout import (REAL_KVAULT_VALUE_12, PythonStateStore, PythonTask, ensure_python_network, python_vps_argv,
                      store_entry, task_entry)
from taskutil import IMAGE, docker, final_report, http, new_task_id, wait_until
from vpsutil import DEBIAN, cleanup_vps, create, make_key, ssh_until, vps_body
from wsutil import connect, read_until, send_json

RECONCILED = "Task startup reconciliation done"
LOST_MESSAGE = ("Container not found on runner startup: this task was started by the previous (Python) runner, "
                "which stopped before the task ended; its exit code is unknown.")


def python_config(tmp_path: Path) -> dict:
    cfg = {"SHARED_DIR": str(tmp_path / "share"), "LOCAL_TEMP_DIR": str(tmp_path / "local")}
    for d in cfg.values():
        Path(d).mkdir(parents=True, exist_ok=True)
    return cfg


def wait_log(runner, text, timeout=30):
    wait_until(lambda: text in runner.output(), timeout=timeout, what=f"runner log line {text!r}")


def test_store_encoder_matches_real_kohakuvault_bytes():
    # The fixture writer must produce what the real library wrote.
    assert task_entry(12, "kohakuriver-task-12") == REAL_KVAULT_VALUE_12


@pytest.fixture
def python_tasks():
    made = []
    yield made
    for t in made:
        t.cleanup()


def test_switch_adopts_running_task_and_reports_lost_one(host, make_runner, tmp_path, python_tasks):
    cfg = python_config(tmp_path)
    ensure_python_network()
    store = PythonStateStore(cfg["LOCAL_TEMP_DIR"])
    python_tasks.append(store)
    running_id, lost_id = new_task_id(), new_task_id()
    # Runs until the test lets it go (a file in LOCAL_TEMP_DIR), so the exit
    # happens after the switch whatever the machine's speed.
    script = ("echo before switch; while [ ! -e /local_temp/go ]; do sleep 0.1; done; "
              "echo after switch; exit 7")
    task = PythonTask(cfg, store, running_id, "sh", ["-c", script], IMAGE)
    python_tasks.append(task)
    task.wait_running()
    # A task it started whose --rm container ended while no runner was up:
    # its entry stays, the container is gone.
    store.add_task(lost_id)
    # A container planted entry (the directory is writable by every task).
    store.put(b"123", b"not a kohakuvault value")
    # The runner's unit stops it (KillMode=process): the runner process dies,
    # its docker run child and the container live on.
    store.kill()
    task.kill_runner_only()
    assert Path(str(store.path) + "-wal").stat().st_size > 0
    assert docker("inspect", "-f", "{{.State.Running}}", task.name).stdout.strip() == "true"

    runner = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"])
    runner.wait_listening()
    # Adopted: listed as running in heartbeats while it runs under this runner.
    host.wait_for("heartbeat", pred=lambda r: running_id in r.json().get("running_tasks", []), timeout=30)
    assert host.updates_for(running_id) == []
    lost = final_report(host, lost_id)
    assert (lost["status"], lost["exit_code"], lost["message"]) == ("stopped", -1, LOST_MESSAGE)
    # Every id read from the store is logged; the malformed one is named.
    out = runner.output()
    assert f"Adopted task {running_id}" in out
    assert f"Python runner state store lists task {running_id}" in out
    assert f"Python runner state store lists task {lost_id}" in out
    assert "ignoring malformed entry key '123'" in out

    (Path(cfg["LOCAL_TEMP_DIR"]) / "go").touch()
    final = final_report(host, running_id)
    assert (final["status"], final["exit_code"]) == ("failed", 7), (final, runner.output())
    assert final["message"] == "Container exited with code 7."
    # The wrapper inside the container kept writing where the Python
    # runner's argv sent the output.
    assert task.stdout_log.read_text() == "before switch\nafter switch\n"
    wait_until(lambda: running_id not in host.of_kind("heartbeat")[-1].json().get("running_tasks", []),
               what="task gone from heartbeats")
    # Rollback safety: the entries taken over are gone from the Python
    # runner's store (its startup check would re-report them stopped/-1);
    # what was not taken over stays, and the file is a valid store.
    assert "Removed the 2 task(s) taken over from the Python runner's state store" in runner.output()
    assert set(store.rows()) == {"123"}


def test_store_read_only_on_first_start(host, make_runner, tmp_path):
    cfg = python_config(tmp_path)
    runner = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"])
    runner.wait_listening()
    wait_log(runner, "First start on this node: no Python runner state store")
    runner.stop()
    # Written later (e.g. by a container: LOCAL_TEMP_DIR is mounted in all of
    # them): never read, nothing reported.
    store = PythonStateStore(cfg["LOCAL_TEMP_DIR"])
    planted = new_task_id()
    store.add_task(planted)
    store.kill()
    # (The first start may be stopped before its own takeover was done: the
    # second one then resumes it, from what the first saved, not the file.)
    offset = len(runner.output())
    again = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"],
                        RUNNER_PORT=runner.port)
    again.wait_listening()
    wait_until(lambda: RECONCILED in again.output()[offset:], what="second start's reconciliation")
    assert str(planted) not in again.output()
    assert host.updates_for(planted) == []


def test_interrupted_first_start_resumes_without_reading_the_store_again(host, make_runner, tmp_path):
    """A first start stopped after it read the Python store and before its
    takeover was done (here: its Docker socket does not answer, so the
    takeover waits): the next start finishes the takeover from the ids the
    first one saved and never reads the file again, so an entry written to
    it in between (a container can) is never acted on."""
    cfg = python_config(tmp_path)
    store = PythonStateStore(cfg["LOCAL_TEMP_DIR"])
    listed = new_task_id()
    store.add_task(listed)
    store.kill()
    first = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"],
                        DOCKER_SOCKET=str(tmp_path / "no-docker.sock"))
    first.wait_listening()
    wait_log(first, f"Python runner state store lists task {listed}")
    wait_log(first, "Docker not reachable for startup reconciliation")
    first.stop()
    assert RECONCILED not in first.output()
    assert host.updates_for(listed) == []
    store = PythonStateStore(cfg["LOCAL_TEMP_DIR"])
    planted = new_task_id()
    store.add_task(planted)
    store.kill()
    again = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"],
                        RUNNER_PORT=first.port)
    again.wait_listening()
    final = final_report(host, listed)
    assert (final["status"], final["exit_code"], final["message"]) == ("stopped", -1, LOST_MESSAGE)
    wait_log(again, RECONCILED)
    out = again.output()
    assert "resuming with the 1 task(s) it listed (the store itself is not read again)" in out, out[-3000:]
    assert str(planted) not in out
    assert host.updates_for(planted) == []
    # The resumed takeover removed its entry; the planted one is the
    # Python runner's business again after a rollback.
    assert set(store.rows()) == {str(planted)}


def test_container_labelled_for_another_node_left_alone(host, make_runner):
    tid = new_task_id()
    name = f"kohakuriver-task-{tid}"
    docker("run", "-d", "--name", name, "--label", "kohakuriver.node=some-other-node", "--label",
           "kohakuriver.kind=task", "--label", f"kohakuriver.task_id={tid}", IMAGE, "sleep", "300")
    try:
        runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
        runner.wait_listening()
        wait_log(runner, f"Leaving container {name} of node some-other-node alone")
        host.wait_for("heartbeat", count=2, timeout=15)
        assert docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        assert host.updates_for(tid) == []
    finally:
        docker("rm", "-f", name, check=False)


def test_switch_keeps_python_vps_usable_through_the_host(host, make_runner, tmp_path):
    """A Docker VPS started by the Python runner (its exact `docker run`,
    pylayout.python_vps_argv, and its store entry): after the switch this
    runner reports it running with its SSH port and serves SSH, terminal,
    files, stop with snapshot and the host's restart."""
    cfg = python_config(tmp_path)
    (Path(cfg["SHARED_DIR"]) / "shared_data").mkdir()
    ensure_python_network()
    key, pub = make_key(tmp_path)
    t = new_task_id()
    name = f"kohakuriver-vps-{t}"
    store = PythonStateStore(cfg["LOCAL_TEMP_DIR"])
    try:
        subprocess.run(python_vps_argv(cfg, t, DEBIAN, pub, 1), check=True, capture_output=True, timeout=60)
        port = int(docker("port", name, "22/tcp").stdout.splitlines()[0].rsplit(":", 1)[1])
        ssh_until(port, "echo made-under-python > /root/marker.txt", key, timeout=90)
        store.put(str(t).encode(), store_entry(t, name, 1))
        store.kill()

        runner = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"],
                             TUNNEL_ENABLED=False)
        runner.wait_listening()
        host.wait_for("update", timeout=30, pred=lambda r: r.json()["task_id"] == t and r.json()["status"] == "running")
        up = [u for u in host.updates_for(t) if u["status"] == "running"][-1]
        assert up["ssh_port"] == port, up
        wait_log(runner, f"Python runner state store lists vps {t}")
        host.wait_for("heartbeat", pred=lambda r: t in (r.json().get("running_tasks") or []), timeout=30)
        assert ssh_until(port, "cat /root/marker.txt", key).stdout == "made-under-python\n"
        ws = connect(runner, f"/ws/task/{t}/terminal")
        try:
            send_json(ws, {"type": "input", "data": "cat /root/marker.txt\n"})
            read_until(ws, "made-under-python")
        finally:
            ws.close()
        status, res = http("POST", runner.url(f"/api/fs/{t}/write"), {"path": "/root/api.txt", "content": "api\n"})
        assert status == 200, res
        assert http("GET", runner.url(f"/api/fs/{t}/read?path=/root/marker.txt"))[1]["content"] == "made-under-python\n"

        status, body = http("POST", runner.url(f"/api/vps/stop/{t}"), timeout=120)
        assert (status, body) == (200, {"message": f"VPS {t} stopped."})
        assert docker("inspect", name, check=False).returncode != 0
        assert http("GET", runner.url(f"/api/vps/snapshots/{t}"))[1]["count"] == 1
        # The host's restart: a create with the same id; the snapshot is used.
        port2 = create(runner, vps_body(t, "none", None))["ssh_port"]
        assert ssh_until(port2, "cat /root/marker.txt /root/api.txt", key).stdout == "made-under-python\napi\n"
    finally:
        store.kill()
        docker("rm", "-f", name, check=False)  # the Python runner's (no labels)
        cleanup_vps([t])


# Needs the upstream source and a Python with kohakuvault (not in CI: no
# network there for upstream's code): KR_UPSTREAM_SRC=<KohakuRiver>/src
# KR_KOHAKUVAULT_PYTHON=<venv>/bin/python.
UPSTREAM_SRC = os.environ.get("KR_UPSTREAM_SRC")
KVAULT_PYTHON = os.environ.get("KR_KOHAKUVAULT_PYTHON")


@pytest.mark.skipif(not (UPSTREAM_SRC and KVAULT_PYTHON),
                    reason="manual: set KR_UPSTREAM_SRC and KR_KOHAKUVAULT_PYTHON (docs/migration.md)")
def test_store_written_and_read_back_by_upstream_code(host, make_runner, tmp_path):
    """The Python runner's own TaskStateStore (storage/vault.py on the real
    KohakuVault) writes the store and is killed; this runner takes the tasks
    over and removes their entries; upstream's code then reads the file."""
    cfg = python_config(tmp_path)
    store = Path(cfg["LOCAL_TEMP_DIR"]) / ".kohakuriver" / "runner-state.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    lost_a, lost_b, vps = new_task_id(), new_task_id(), new_task_id()
    env = dict(os.environ, PYTHONPATH=UPSTREAM_SRC)
    writer = subprocess.Popen([KVAULT_PYTHON, "-c", (
        "import sys, time\n"
        "from kohakuriver.storage.vault import TaskStateStore\n"
        "s = TaskStateStore(sys.argv[1])\n"
        f"s.add_task({lost_a}, 'kohakuriver-task-{lost_a}', allocated_cores=[0], numa_node=None)\n"
        f"s.add_task({lost_b}, 'kohakuriver-task-{lost_b}')\n"
        f"s.add_task({vps}, 'kohakuriver-vps-{vps}')\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"), str(store)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert writer.stdout.readline().strip() == "ready"
    finally:
        writer.kill()
        writer.wait()
    runner = make_runner(host, SHARED_DIR=cfg["SHARED_DIR"], LOCAL_TEMP_DIR=cfg["LOCAL_TEMP_DIR"])
    runner.wait_listening()
    for tid in (lost_a, lost_b):
        final = final_report(host, tid)
        assert (final["status"], final["exit_code"], final["message"]) == ("stopped", -1, LOST_MESSAGE)
    wait_log(runner, "Removed the 2 task(s) taken over from the Python runner's state store")
    read = subprocess.run([KVAULT_PYTHON, "-c", (
        "import json, sys\n"
        "from kohakuriver.storage.vault import TaskStateStore\n"
        "s = TaskStateStore(sys.argv[1])\n"
        "print(json.dumps({'ids': s.get_all_task_ids(), 'tasks': s.list_tasks()}))\n"), str(store)],
        capture_output=True, text=True, env=env, check=True)
    got = json.loads(read.stdout)
    assert got["ids"] == [vps], got
    assert got["tasks"][0]["container_name"] == f"kohakuriver-vps-{vps}"
