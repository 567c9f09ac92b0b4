"""End-to-end tests of command tasks: the real binary, the real Docker
Engine and the fixture host (execution.md §1–2, §4; issue: command tasks)."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fixture_host import FixtureHost
from taskutil import (IMAGE, container_exists, docker, execute_body, final_report, http, new_task_id,
                      remove_task_containers, statuses, submit, wait_until)

REPO = Path(__file__).resolve().parents[2]
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$"


@pytest.fixture(autouse=True)
def clean_containers():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable: the task tests need dockerd (scripts/ensure-dockerd.sh)")
    remove_task_containers()
    yield
    remove_task_containers()


@pytest.fixture
def task_runner(host, make_runner, tmp_path):
    (tmp_path / "share").mkdir(exist_ok=True)
    (tmp_path / "local").mkdir(exist_ok=True)
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, CONTAINER_TAR_DIR=str(tmp_path / "tars"))
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    return runner


def logs_of(runner, task_id):
    d = Path(runner.config["SHARED_DIR"]) / "logs" / str(task_id)
    read = lambda n: (d / n).read_text() if (d / n).exists() else None  # noqa: E731
    return read("stdout.log"), read("stderr.log")


def test_success_reports_and_log_files(host, task_runner):
    import re
    tid = new_task_id()
    submit(task_runner, tid, "sh -c 'echo to-stdout; echo to-stderr >&2'")
    final = final_report(host, tid)
    assert statuses(host, tid) == ["pending", "running", "completed"]
    assert final["exit_code"] == 0 and final["message"] is None
    updates = host.updates_for(tid)
    for u in updates:
        assert set(u) == {"task_id", "status", "exit_code", "message", "started_at", "completed_at", "ssh_port"}
        assert u["task_id"] == tid and isinstance(u["task_id"], int)
        assert re.match(ISO, u["started_at"])
    assert updates[0]["started_at"] == final["started_at"]
    assert re.match(ISO, final["completed_at"])
    out, err = logs_of(task_runner, tid)
    assert out == "to-stdout\n" and err == "to-stderr\n"
    # Removed only after the final report was durable.
    wait_until(lambda: not container_exists(f"kohakuriver-task-{tid}"), what="container removal")
    # Listed from acceptance until the final report, then no more.
    n = len(host.of_kind("heartbeat"))
    beat = host.wait_for("heartbeat", count=n + 1, timeout=5)[-1].json()
    assert tid not in beat["running_tasks"]


def test_nonzero_exit(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "sh -c 'exit 3'")
    final = final_report(host, tid)
    assert (final["status"], final["exit_code"], final["message"]) == ("failed", 3, "Container exited with code 3.")


def test_running_task_listed_in_heartbeat(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "sleep 30")
    host.wait_for("heartbeat", timeout=10, pred=lambda r: tid in r.json()["running_tasks"])
    http("POST", task_runner.url("/api/kill"), {"task_id": tid, "container_name": f"kohakuriver-task-{tid}"})


def test_environment_workdir_and_mounts(host, make_runner, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "marker.txt").write_text("extra-mount\n")
    (tmp_path / "share" / "shared_data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "share" / "shared_data" / "s.txt").write_text("shared\n")
    (tmp_path / "local").mkdir(exist_ok=True)
    runner = make_runner(host, ADDITIONAL_MOUNTS=[f"{extra}:/extra:ro"])
    runner.wait_listening()
    tid = new_task_id()
    submit(runner, tid, "sh -c 'env; pwd; cat /shared/s.txt /extra/marker.txt; touch /extra/x || echo RO-OK'",
           env_vars={"FOO": "bar baz", "KOHAKURIVER_TASK_ID": "user-value"}, working_dir="/tmp")
    assert final_report(host, tid)["status"] == "completed"
    out, _ = logs_of(runner, tid)
    lines = out.splitlines()
    assert "FOO=bar baz" in lines
    assert f"KOHAKURIVER_TASK_ID={tid}" in lines  # the runner's value wins
    assert f"KOHAKURIVER_SHARED_DIR={tmp_path / 'share'}" in lines
    assert f"KOHAKURIVER_LOCAL_TEMP_DIR={tmp_path / 'local'}" in lines
    assert f"KOHAKURIVER_CONTAINER_ID=kohakuriver-task-{tid}" in lines
    assert "KOHAKURIVER_TUNNEL_URL=ws://172.30.0.1:" + str(runner.port) in lines
    assert "/tmp" in lines and "shared" in lines and "extra-mount" in lines and "RO-OK" in lines


def read_cgroup_limits(out: str):
    vals = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return vals


def test_cpu_and_memory_limits_in_cgroup(host, task_runner):
    tid = new_task_id()
    script = ("sh -c 'echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max);"
              " echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d\" \" -f1 /sys/fs/cgroup/cpu.max);"
              " echo period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cut -d\" \" -f2 /sys/fs/cgroup/cpu.max)'")
    # 100.4 MiB rounds half-to-even to 100 MiB like upstream's "--memory 100m".
    submit(task_runner, tid, script, required_cores=1, required_memory_bytes=int(100.4 * 1024 * 1024))
    assert final_report(host, tid)["status"] == "completed"
    vals = read_cgroup_limits(logs_of(task_runner, tid)[0])
    assert int(vals["mem"]) == 100 * 1024 * 1024
    assert int(vals["quota"]) == int(vals["period"])  # --cpus 1


def test_oom_is_killed_oom(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "tail /dev/zero", required_memory_bytes=16 * 1024 * 1024)
    final = final_report(host, tid)
    assert final["status"] == "killed_oom" and final["exit_code"] == 137
    assert final["message"] == "Container killed (SIGKILL) - likely out of memory."


def test_external_sigkill_is_failed_137(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "sleep 300")
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    wait_until(lambda: docker("inspect", "-f", "{{.State.Running}}", f"kohakuriver-task-{tid}",
                              check=False).stdout.strip() == "true", what="container running")
    docker("kill", f"kohakuriver-task-{tid}")
    final = final_report(host, tid)
    assert final["status"] == "failed" and final["exit_code"] == 137
    assert "SIGKILL" in final["message"]


def test_kill_suppresses_final_report(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "sleep 300")
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    wait_until(lambda: container_exists(f"kohakuriver-task-{tid}"), what="container")
    st, reply = http("POST", task_runner.url("/api/kill"), {"task_id": tid, "container_name": f"kohakuriver-task-{tid}"})
    assert (st, reply) == (200, {"message": f"Task {tid} killed."})
    wait_until(lambda: not container_exists(f"kohakuriver-task-{tid}"), what="container removal")
    time.sleep(1.5)
    assert statuses(host, tid) == ["pending", "running"]
    # A repeated kill answers like the first (issue 6 item 2).
    st, reply = http("POST", task_runner.url("/api/kill"), {"task_id": tid, "container_name": f"kohakuriver-task-{tid}"})
    assert (st, reply) == (200, {"message": f"Task {tid} killed."})
    n = len(host.of_kind("heartbeat"))
    assert tid not in host.wait_for("heartbeat", count=n + 1, timeout=5)[-1].json()["running_tasks"]


def test_pause_and_resume(host, task_runner):
    tid = new_task_id()
    name = f"kohakuriver-task-{tid}"
    submit(task_runner, tid, "sleep 300")
    wait_until(lambda: docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() == "true",
               what="container running")
    body = {"task_id": tid, "container_name": name}
    assert http("POST", task_runner.url("/api/pause"), body) == (200, {"message": f"Task {tid} paused."})
    assert docker("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "true"
    # Not idempotent, like upstream: pausing again fails.
    assert http("POST", task_runner.url("/api/pause"), body) == (500, {"detail": f"Failed to pause task {tid}."})
    assert http("POST", task_runner.url("/api/resume"), body) == (200, {"message": f"Task {tid} resumed."})
    assert docker("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "false"
    other = {"task_id": tid + 1, "container_name": f"kohakuriver-task-{tid + 1}"}
    assert http("POST", task_runner.url("/api/pause"), other) == (404, {"detail": f"Task {tid + 1} not found."})
    http("POST", task_runner.url("/api/kill"), body)


def test_registry_image_present_with_null_container_name(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "echo", ["ok"], registry_image=IMAGE, container_name=None)
    assert final_report(host, tid)["status"] == "completed"
    assert logs_of(task_runner, tid)[0] == "ok\n"


def test_missing_registry_image_fails_provisioning(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "echo", registry_image="kr-test/does-not-exist:1")
    final = final_report(host, tid, timeout=120)
    assert statuses(host, tid) == ["pending", "failed"]
    assert final["message"] == "Failed to pull registry image 'kr-test/does-not-exist:1'"
    assert final["started_at"] is None and final["exit_code"] is None


def test_duplicate_id_is_409(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "sleep 30")
    st, reply = http("POST", task_runner.url("/api/execute"), execute_body(task_runner, tid, "sleep 30"))
    assert (st, reply) == (409, {"detail": f"Task {tid} is already running on this node."})
    http("POST", task_runner.url("/api/kill"), {"task_id": tid, "container_name": f"kohakuriver-task-{tid}"})


def test_arguments_run_exactly_as_given(host, task_runner):
    tid = new_task_id()
    args = ["it's", "two\nlines", "ünïcødé ✓", "$HOME", "`id`", "a  b", ""]
    submit(task_runner, tid, "printf '[%s]\\n'", args)
    assert final_report(host, tid)["status"] == "completed"
    assert logs_of(task_runner, tid)[0] == "".join(f"[{a}]\n" for a in args)


def test_command_is_shell_text(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, 'echo "$KOHAKURIVER_TASK_ID" "$((1 + 2))" *', working_dir="/")
    assert final_report(host, tid)["status"] == "completed"
    # `command` is inserted raw: variables, arithmetic and globs expand.
    out = logs_of(task_runner, tid)[0]
    assert out.startswith(f"{tid} 3 ") and "bin" in out


def test_validation_errors_are_422(task_runner):
    st, reply = http("POST", task_runner.url("/api/execute"), {"task_id": "abc", "command": 5})
    assert st == 422
    locs = [tuple(d["loc"]) for d in reply["detail"]]
    assert ("body", "task_id") in locs and ("body", "command") in locs
    assert ("body", "stdout_path") in locs and ("body", "container_name") in locs
    assert all(set(d) >= {"type", "loc", "msg", "input"} for d in reply["detail"])
    st, reply = http("POST", task_runner.url("/api/execute"), b"{not json")
    assert st == 422 and reply["detail"][0]["type"] == "json_invalid"
    st, reply = http("POST", task_runner.url("/api/execute"), b"")
    assert st == 422 and reply["detail"][0]["loc"] == ["body"]
    st, reply = http("POST", task_runner.url("/api/kill"), {"task_id": 1, "container_name": "--help"})
    assert st == 422 and reply["detail"][0]["loc"] == ["body", "container_name"]


def test_log_path_outside_logs_dir_fails_clearly(host, task_runner, tmp_path):
    tid = new_task_id()
    submit(task_runner, tid, "echo", stdout_path=str(tmp_path / "share" / "logs" / ".." / ".." / "evil.log"))
    final = final_report(host, tid)
    assert final["status"] == "failed"
    assert final["message"].startswith("Task execution failed:") and "logs" in final["message"]
    assert not (tmp_path / "evil.log").exists()


def test_invalid_registry_image_reference_fails_clearly(host, task_runner):
    tid = new_task_id()
    submit(task_runner, tid, "echo", registry_image="--help")
    final = final_report(host, tid)
    assert final["status"] == "failed" and "--help" in final["message"]


def test_host_down_when_task_finishes(host, make_runner, tmp_path):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    runner.wait_listening()
    host.wait_for("register")
    tid = new_task_id()
    submit(runner, tid, "sleep 3")
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    port = host.port
    host.stop()
    wait_until(lambda: not container_exists(f"kohakuriver-task-{tid}") or
               docker("inspect", "-f", "{{.State.Running}}", f"kohakuriver-task-{tid}", check=False).stdout.strip() == "false",
               timeout=20, what="task end")
    time.sleep(2)
    back = FixtureHost(port).start()
    try:
        final = final_report(back, tid, timeout=60)
        assert final["status"] == "completed" and final["exit_code"] == 0, final
        assert [u["status"] for u in back.updates_for(tid)].count("completed") == 1
    finally:
        back.stop()


def test_kill9_with_five_running_tasks_then_restart(host, make_runner, tmp_path):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    runner.wait_listening()
    host.wait_for("register")
    # Some end while the runner is down, some after it is back.
    plan = {new_task_id(): (i, 3 + 2 * i) for i in range(5)}  # id -> (exit code, seconds)
    for tid, (code, secs) in plan.items():
        submit(runner, tid, f"sh -c 'sleep {secs}; exit {code}'")
    for tid in plan:
        host.wait_for("update", pred=lambda r, t=tid: r.json()["task_id"] == t and r.json()["status"] == "running")
    runner.send_signal(signal.SIGKILL)
    runner.proc.wait(5)
    time.sleep(6)
    restarted = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, RUNNER_PORT=runner.port)
    restarted.wait_listening()
    for tid, (code, _) in plan.items():
        final = final_report(host, tid, timeout=60)
        assert final["exit_code"] == code, (final, restarted.output())
        assert final["status"] == ("completed" if code == 0 else "failed")
    time.sleep(2)
    for tid in plan:
        finals = [s for s in statuses(host, tid) if s in ("completed", "failed", "stopped", "killed_oom")]
        assert len(finals) == 1, (tid, statuses(host, tid))
        wait_until(lambda t=tid: not container_exists(f"kohakuriver-task-{t}"), what="cleanup")
    # Each task ran exactly once: one pending, one running report.
    for tid in plan:
        assert statuses(host, tid)[:2] == ["pending", "running"]


def test_vanished_container_reported_stopped_after_restart(host, make_runner):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    runner.wait_listening()
    host.wait_for("register")
    tid = new_task_id()
    submit(runner, tid, "sleep 300")
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    wait_until(lambda: container_exists(f"kohakuriver-task-{tid}"), what="container")
    runner.send_signal(signal.SIGKILL)
    runner.proc.wait(5)
    docker("rm", "-f", f"kohakuriver-task-{tid}")
    restarted = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, RUNNER_PORT=runner.port)
    restarted.wait_listening()
    final = final_report(host, tid)
    assert final["status"] == "stopped" and final["exit_code"] == -1
    assert final["message"] == "Container not found on runner startup (runner may have restarted)."


def test_undelivered_report_survives_runner_restart(host, make_runner):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1)
    runner.wait_listening()
    host.wait_for("register")
    tid = new_task_id()
    submit(runner, tid, "true")
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "running")
    port = host.port
    host.stop()  # the final report cannot be delivered now
    wait_until(lambda: not container_exists(f"kohakuriver-task-{tid}"), timeout=30, what="task end + cleanup")
    t0 = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    assert runner.proc.wait(15) == 0
    assert time.monotonic() - t0 < 8  # D7: at most ~5 s trying to flush
    assert "not yet delivered" in runner.output()
    back = FixtureHost(port).start()
    try:
        restarted = make_runner(back, HEARTBEAT_INTERVAL_SECONDS=1, RUNNER_PORT=runner.port, HOST_PORT=port)
        restarted.wait_listening()
        final = final_report(back, tid, timeout=60)
        assert final["status"] == "completed" and final["exit_code"] == 0
        time.sleep(1)
        assert [u["status"] for u in back.updates_for(tid)].count("completed") == 1
    finally:
        back.stop()


def test_gpu_request_reaches_docker(host, task_runner):
    """The GPU device request is really sent: on this GPU-less node Docker
    refuses it, reported like upstream's `docker run` (exit 125 + stderr)."""
    if "nvidia" in docker("info", "--format", "{{json .Runtimes}}").stdout:
        import pytest
        pytest.skip("node has the NVIDIA runtime; the refusal path cannot be shown here")
    tid = new_task_id()
    submit(task_runner, tid, "true", required_gpus=[0, 1])
    final = final_report(host, tid)
    assert final["status"] == "failed" and final["exit_code"] == 125, final
    assert final["message"].startswith("Container exited with code 125. Docker stderr: docker: Error response from daemon:")
    assert "gpu" in final["message"]
