"""Issue 6, task path: kills that always finish (Docker failing mid-kill via
a stand-in socket), no zombie tasks when SQLite cannot write (a trigger in
the runner's own database makes its writes fail, as a full disk would),
hung shared storage (a FIFO tarball that never delivers), pause/resume and
the outbox, recovery after a crash between create and the `running` report,
control names, log directories and symlinks. Real binary, real dockerd."""
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from docker_proxy import DockerProxy
from hung_fuse import HungFuse
from taskutil import (container_exists, docker, final_report, http, new_task_id, remove_task_containers,
                      statuses, submit, wait_until)


@pytest.fixture(autouse=True)
def clean_containers():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable: these tests need dockerd (scripts/ensure-dockerd.sh)")
    remove_task_containers()
    yield
    remove_task_containers()


def start_runner(host, make_runner, **overrides):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, **overrides)
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    return runner


def running(name):
    return docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


def next_heartbeat(host):
    n = len(host.of_kind("heartbeat"))
    return host.wait_for("heartbeat", count=n + 1, timeout=10)[-1].json()


def kill(runner, tid, name=None, timeout=10):
    return http("POST", runner.url("/api/kill"), {"task_id": tid, "container_name": name or f"kohakuriver-task-{tid}"},
                timeout=timeout)


def db_path(runner):
    return Path(runner.config["STATE_DIR"]) / "runner-state.db"


def inject(runner, sql):
    """Runs DDL in the runner's live database (WAL: concurrent access is fine)."""
    con = sqlite3.connect(db_path(runner), timeout=10)
    try:
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def healthz(runner):
    return http("GET", runner.url("/healthz"))[1]


# --- item 2: kills ------------------------------------------------------------

def test_kill_while_docker_fails_is_retried_until_the_container_is_gone(host, make_runner, tmp_path):
    proxy = DockerProxy(str(tmp_path / "docker-proxy.sock"))
    try:
        runner = start_runner(host, make_runner, DOCKER_SOCKET=proxy.path)
        tid = new_task_id()
        name = f"kohakuriver-task-{tid}"
        submit(runner, tid, "sleep 300")
        wait_until(lambda: running(name), what="container running")
        # First attempt: Docker never answers (the runner's deadline ends it);
        # later ones: Docker errors, until the test lets them through.
        proxy.fail_kills = "hang"
        t0 = time.monotonic()
        st, reply = kill(runner, tid)
        assert time.monotonic() - t0 < 9, "the host gives a kill 10 s"
        assert (st, reply) == (200, {"message": f"Task {tid} killed."})
        proxy.fail_kills = "500"
        # Repeated kill: the same answer (not 404).
        assert kill(runner, tid) == (200, {"message": f"Task {tid} killed."})
        wait_until(lambda: proxy.kills_failed >= 3, timeout=30, what="kill retries")
        assert running(name), "the stand-in must have kept the container alive"
        assert tid in next_heartbeat(host)["running_tasks"], "listed until the container is gone"
        proxy.fail_kills = None
        wait_until(lambda: not container_exists(name), timeout=30, what="container removal after retries")
        wait_until(lambda: tid not in next_heartbeat(host)["running_tasks"], timeout=10, what="unlisted")
        time.sleep(1.5)
        # The only final outcome is the kill: no failed/137 after it.
        assert statuses(host, tid) == ["pending", "running"]
        assert kill(runner, tid) == (200, {"message": f"Task {tid} killed."})
    finally:
        proxy.close()


def test_kill_survives_a_restart_before_docker_confirmed(host, make_runner, tmp_path):
    proxy = DockerProxy(str(tmp_path / "docker-proxy.sock"))
    try:
        runner = start_runner(host, make_runner, DOCKER_SOCKET=proxy.path)
        tid = new_task_id()
        name = f"kohakuriver-task-{tid}"
        submit(runner, tid, "sleep 300")
        wait_until(lambda: running(name), what="container running")
        proxy.fail_kills = "500"
        assert kill(runner, tid)[0] == 200
        runner.send_signal(signal.SIGKILL)
        runner.proc.wait(5)
        assert running(name)
    finally:
        proxy.close()
    # Back on the real socket: the recorded kill is finished, silently.
    restarted = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, RUNNER_PORT=runner.port)
    restarted.wait_listening()
    wait_until(lambda: not container_exists(name), timeout=30, what="container removal after restart")
    time.sleep(1.5)
    assert statuses(host, tid) == ["pending", "running"]


def test_start_in_flight_at_a_crash_is_not_reported_failed_after_restart(host, make_runner, tmp_path):
    """Killed while its start call is in flight (dockerd slow, as in a TCG
    guest under load), the runner finds the container "created" on restart
    and starts it; that call fails although dockerd did start the container.
    The task's outcome is its own exit code, not the failed call (was
    `failed`/125 "injected failure ...")."""
    proxy = DockerProxy(str(tmp_path / "docker-proxy.sock"))
    try:
        proxy.starts = "hang"
        runner = start_runner(host, make_runner, DOCKER_SOCKET=proxy.path)
        tid = new_task_id()
        name = f"kohakuriver-task-{tid}"
        submit(runner, tid, "sh -c 'sleep 3; exit 4'")
        host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
        wait_until(lambda: proxy.starts_seen == 1, what="the start call in flight")
        runner.send_signal(signal.SIGKILL)
        runner.proc.wait(5)
        assert docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "created"
        proxy.starts = "done_then_500"
        restarted = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, RUNNER_PORT=runner.port, DOCKER_SOCKET=proxy.path)
        restarted.wait_listening()
        final = final_report(host, tid, timeout=60)
        assert (final["status"], final["exit_code"]) == ("failed", 4), (final, restarted.output())
        assert proxy.starts_seen == 2
        wait_until(lambda: not container_exists(name), timeout=30, what="cleanup")
        time.sleep(1.5)
        finals = [s for s in statuses(host, tid) if s not in ("pending", "running")]
        assert finals == ["failed"], statuses(host, tid)
    finally:
        proxy.close()


def make_hung_tarball(tars: Path, env: str) -> Path:
    """A tarball that never delivers a byte (a FIFO nobody writes to): opening
    it blocks like a read from a hung NFS server."""
    tars.mkdir(exist_ok=True)
    fifo = tars / f"{env}-{int(time.time()) + 1000}.tar"
    os.mkfifo(fifo)
    return fifo


def test_kill_during_provisioning_cancels_the_image_load(host, make_runner, tmp_path):
    env = f"krhung{os.getpid()}k"
    make_hung_tarball(tmp_path / "tars", env)
    runner = start_runner(host, make_runner, CONTAINER_TAR_DIR=str(tmp_path / "tars"), DOCKER_IMAGE_SYNC_TIMEOUT=600)
    tid = new_task_id()
    submit(runner, tid, "true", registry_image=None, container_name=env)
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "pending")
    wait_until(lambda: "Loading" in runner.output(), what="load started")
    assert kill(runner, tid) == (200, {"message": f"Task {tid} killed."})
    # Not after the 600 s sync timeout: the load is cancelled at once and
    # the task's cleanup completes (it stays listed until then).
    wait_until(lambda: f"Task {tid} ended after a kill" in runner.output(), timeout=20,
               what="provisioning cancelled and the kill completed")
    wait_until(lambda: tid not in next_heartbeat(host)["running_tasks"], timeout=10, what="killed task unlisted")
    assert statuses(host, tid) == ["pending"]
    assert not container_exists(f"kohakuriver-task-{tid}")


# --- item 3: storage errors --------------------------------------------------

def test_store_failure_at_finish_ends_the_task_and_degrades_health(host, make_runner):
    runner = start_runner(host, make_runner)
    tid = new_task_id()
    name = f"kohakuriver-task-{tid}"
    submit(runner, tid, "sh -c 'sleep 3; exit 5'")
    wait_until(lambda: running(name), what="container running")
    assert healthz(runner)["status"] == "ok"
    # From now on the task row cannot be deleted (as with a full disk, the
    # finishing transaction fails and rolls back).
    inject(runner, "CREATE TRIGGER kr_test_fail BEFORE DELETE ON tasks BEGIN "
                   "SELECT RAISE(ABORT, 'injected: database or disk is full'); END")
    final = final_report(host, tid, timeout=30)
    assert final["status"] == "failed" and final["exit_code"] == 5
    assert "Runner state storage failed" in final["message"]
    wait_until(lambda: not container_exists(name), timeout=20, what="container removed")
    wait_until(lambda: tid not in next_heartbeat(host)["running_tasks"], timeout=10, what="task unlisted")
    h = healthz(runner)
    assert h["status"] == "degraded"
    assert "disk is full" in h["state_store"]["last_error"]
    assert "injected: database or disk is full" in runner.output()


def test_store_failure_before_the_pending_report_is_not_a_zombie(host, make_runner):
    runner = start_runner(host, make_runner)
    inject(runner, "CREATE TRIGGER kr_test_fail BEFORE INSERT ON outbox BEGIN "
                   "SELECT RAISE(ABORT, 'injected: attempt to write a readonly database'); END")
    tid = new_task_id()
    submit(runner, tid, "sleep 300")
    final = final_report(host, tid, timeout=30)
    assert final["status"] == "failed"
    assert "Runner state storage failed" in final["message"] and "readonly" in final["message"]
    wait_until(lambda: tid not in next_heartbeat(host)["running_tasks"], timeout=10, what="task unlisted")
    assert not container_exists(f"kohakuriver-task-{tid}")
    assert healthz(runner)["status"] == "degraded"


# --- item 4: hung shared storage ----------------------------------------------

def test_hung_tarball_read_obeys_sync_timeout_and_releases_the_lock(host, make_runner, tmp_path):
    env = f"krhung{os.getpid()}t"
    make_hung_tarball(tmp_path / "tars", env)
    runner = start_runner(host, make_runner, CONTAINER_TAR_DIR=str(tmp_path / "tars"), DOCKER_IMAGE_SYNC_TIMEOUT=3)
    tid = new_task_id()
    submit(runner, tid, "true", registry_image=None, container_name=env)
    # Unrelated work is not held up by the hung read.
    other = new_task_id()
    submit(runner, other, "echo", ["ok"])
    assert final_report(host, other, timeout=60)["status"] == "completed"
    final = final_report(host, tid, timeout=30)
    assert final["status"] == "failed"
    assert final["message"] == f"Docker image sync failed for container '{env}'"
    # The per-environment lock was released: a sync of the same environment
    # answers (after its own timeout) instead of waiting forever.
    t0 = time.monotonic()
    st, reply = http("POST", runner.url(f"/api/docker/sync/{env}"), timeout=30)
    assert st == 500 and time.monotonic() - t0 < 25, (st, reply)
    assert "timed out" in runner.output()


def test_hung_local_temp_dir_fails_the_request_not_the_runner(host, make_runner):
    import threading
    if not os.path.exists("/dev/fuse"):
        pytest.skip("SKIPPED LOUDLY: /dev/fuse is missing, so the hung-storage stand-in cannot be mounted")
    fuse = HungFuse()  # LOCAL_TEMP_DIR on a file system that stops answering
    try:
        runner = start_runner(host, make_runner, LOCAL_TEMP_DIR=fuse.dir)
        fuse.hang()
        results = {}

        def submit_one(key):
            t0 = time.monotonic()
            st, reply = http("POST", runner.url("/api/execute"),
                             __import__("taskutil").execute_body(runner, new_task_id(), "true"), timeout=30)
            results[key] = (st, reply, time.monotonic() - t0)

        threads = [threading.Thread(target=submit_one, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        # While those wait on the hung check, the runner answers others.
        t0 = time.monotonic()
        assert http("GET", runner.url("/healthz"), timeout=5)[0] == 200
        assert kill(runner, 1, timeout=5)[0] == 404
        assert time.monotonic() - t0 < 3
        for t in threads:
            t.join(30)
        assert len(results) == 3, results
        for st, reply, took in results.values():
            assert st == 500 and "LOCAL_TEMP_DIR" in reply["detail"], reply
            assert took < 9, took  # the host gives /api/execute 30 s; our check gives up after 5
        # Two checks are stuck in the kernel; the third waited for a slot
        # until its deadline and was refused.
        assert any("storage hung" in r[1]["detail"] for r in results.values())
        assert fuse.held_requests() >= 1
    finally:
        fuse.close()


# --- item 5: pause/resume and reports -----------------------------------------

def test_queued_running_report_does_not_undo_a_pause(host, make_runner):
    from fixture_host import Behaviour
    runner = start_runner(host, make_runner)
    tid = new_task_id()
    name = f"kohakuriver-task-{tid}"
    # The host cannot take status updates for now: `running` stays queued.
    host.behaviours["update"] = Behaviour(status=503)
    submit(runner, tid, "sleep 300")
    wait_until(lambda: running(name), what="container running")
    # `pending` is being retried; `running` waits behind it.
    host.wait_for("update", count=2, pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "pending")
    body = {"task_id": tid, "container_name": name}
    assert http("POST", runner.url("/api/pause"), body) == (200, {"message": f"Task {tid} paused."})
    assert docker("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "true"
    # The host now shows `paused`. It accepts updates again: the stale
    # `running` (and `pending`) must never be sent after this point.
    n = len(host.updates_for(tid))
    del host.behaviours["update"]
    time.sleep(4)  # several retry periods
    assert [u["status"] for u in host.updates_for(tid)][n:] == []
    assert "superseded" in runner.output()
    kill(runner, tid)


def test_pause_and_resume_answer_after_docker_and_fail_as_json(host, make_runner):
    runner = start_runner(host, make_runner)
    tid = new_task_id()
    name = f"kohakuriver-task-{tid}"
    submit(runner, tid, "sleep 300")
    wait_until(lambda: running(name), what="container running")
    body = {"task_id": tid, "container_name": name}
    assert http("POST", runner.url("/api/pause"), body) == (200, {"message": f"Task {tid} paused."})
    assert docker("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "true"
    assert http("POST", runner.url("/api/pause"), body) == (500, {"detail": f"Failed to pause task {tid}."})
    assert http("POST", runner.url("/api/resume"), body) == (200, {"message": f"Task {tid} resumed."})
    assert docker("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "false"
    kill(runner, tid)


def test_crash_between_create_and_running_report_reports_running_first(host, make_runner):
    runner = start_runner(host, make_runner)
    tid = new_task_id()
    name = f"kohakuriver-task-{tid}"
    submit(runner, tid, "sh -c 'sleep 4; exit 3'")
    wait_until(lambda: running(name), what="container running")
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    runner.send_signal(signal.SIGKILL)
    runner.proc.wait(5)
    # Rewind the durable state to "container created, `running` not yet
    # reported": exactly what a crash at that point leaves.
    con = sqlite3.connect(db_path(runner), timeout=10)
    con.execute("UPDATE tasks SET phase = 'creating' WHERE task_id = ?", (tid,))
    con.execute("DELETE FROM outbox WHERE task_id = ?", (tid,))
    con.commit()
    con.close()
    host.requests.clear()
    restarted = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, RUNNER_PORT=runner.port)
    restarted.wait_listening()
    final = final_report(host, tid, timeout=60)
    assert final["status"] == "failed" and final["exit_code"] == 3
    assert statuses(host, tid) == ["running", "failed"]


# --- item 8: control names -------------------------------------------------------

def test_control_acts_only_on_the_tasks_own_container(host, make_runner):
    runner = start_runner(host, make_runner)
    victim, attacker = new_task_id(), new_task_id()
    submit(runner, victim, "sleep 300")
    submit(runner, attacker, "sleep 300")
    for t in (victim, attacker):
        wait_until(lambda t=t: running(f"kohakuriver-task-{t}"), what="containers running")
    # Another task's container name with my id: refused, nothing touched.
    st, reply = http("POST", runner.url("/api/pause"),
                     {"task_id": attacker, "container_name": f"kohakuriver-task-{victim}"})
    assert st == 422 and reply["detail"][0]["loc"] == ["body", "container_name"]
    assert f"task_id {attacker}" in reply["detail"][0]["msg"]
    st, _ = kill(runner, attacker, name=f"kohakuriver-task-{victim}")
    assert st == 422
    assert running(f"kohakuriver-task-{victim}")
    assert docker("inspect", "-f", "{{.State.Paused}}", f"kohakuriver-task-{victim}").stdout.strip() == "false"
    # The host's other spellings of the same id act on the recorded container.
    st, _ = http("POST", runner.url("/api/pause"), {"task_id": attacker, "container_name": f"kohakuriver-vps-{attacker}"})
    assert st == 200
    assert docker("inspect", "-f", "{{.State.Paused}}", f"kohakuriver-task-{attacker}").stdout.strip() == "true"
    st, _ = http("POST", runner.url("/api/resume"), {"task_id": attacker, "container_name": f"vm-{attacker}"})
    assert st == 200
    assert kill(runner, attacker, name=f"vm-{attacker}")[0] == 200
    wait_until(lambda: not container_exists(f"kohakuriver-task-{attacker}"), what="attacker removed")
    assert running(f"kohakuriver-task-{victim}")
    kill(runner, victim)


# --- item 7: log directories ------------------------------------------------------

def test_planted_symlink_in_logs_tree_is_not_followed(host, make_runner, tmp_path):
    runner = start_runner(host, make_runner)
    logs = Path(runner.config["SHARED_DIR"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (logs / "planted").symlink_to(outside)  # what a task could leave behind
    tid = new_task_id()
    submit(runner, tid, "echo", ["hi"], stdout_path=str(logs / "planted" / "d" / "out.log"),
           stderr_path=str(logs / "planted" / "d" / "err.log"))
    final = final_report(host, tid)
    assert final["status"] == "failed"
    assert "symlink" in final["message"]
    assert not (outside / "d").exists()
