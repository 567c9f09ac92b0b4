"""GET /metrics (issue 11): Prometheus text format parsed by the official
Python client's parser, with the required families, and counters that move
when a task finishes."""
import subprocess
import sys
import urllib.request

import pytest

from taskutil import docker, final_report, new_task_id, submit, wait_until

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # The parser comes from Debian's python3-prometheus-client
    # (scripts/install-deps.sh); reach it also from a non-system python3.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        text_string_to_metric_families = None

REQUIRED = [
    "kohakuriver_runner_info", "kohakuriver_runner_tasks", "kohakuriver_runner_tasks_finished",
    "kohakuriver_runner_outbox_pending", "kohakuriver_runner_host_last_heartbeat_success_timestamp_seconds",
    "kohakuriver_runner_docker_request_duration_seconds", "process_resident_memory_bytes", "process_cpu_seconds",
    "process_open_fds", "process_start_time_seconds",
    "kohakuriver_runner_vm_ssh_relay_connections", "kohakuriver_runner_vm_ssh_relay_open_connections",
]


@pytest.fixture(autouse=True)
def parser_present():
    if text_string_to_metric_families is None:
        pytest.fail("python3-prometheus-client is not installed (scripts/install-deps.sh --test)")


def scrape(runner):
    with urllib.request.urlopen(runner.url("/metrics"), timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families, text


def sample(families, family, name, **labels):
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def test_metrics_families_and_moving_counters(host, make_runner, tmp_path):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable (scripts/ensure-dockerd.sh)")
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, CONTAINER_TAR_DIR=str(tmp_path / "tars"))
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    host.wait_for("heartbeat", timeout=10)

    before, text = scrape(runner)
    for name in REQUIRED:
        assert name in before, (name, sorted(before))
    assert before["kohakuriver_runner_info"].type == "gauge"
    assert before["kohakuriver_runner_tasks_finished"].type == "counter"
    assert before["kohakuriver_runner_docker_request_duration_seconds"].type == "histogram"
    assert before["process_cpu_seconds"].type == "counter"
    info = before["kohakuriver_runner_info"].samples[0]
    assert info.value == 1 and info.labels["version"]
    assert sample(before, "process_resident_memory_bytes", "process_resident_memory_bytes") > 1e6
    assert sample(before, "process_open_fds", "process_open_fds") >= 3
    # Heartbeats were accepted, so the timestamp is set (Unix seconds).
    wait_until(lambda: sample(scrape(runner)[0], "kohakuriver_runner_host_last_heartbeat_success_timestamp_seconds",
                              "kohakuriver_runner_host_last_heartbeat_success_timestamp_seconds") > 1.6e9,
               timeout=10, what="heartbeat timestamp")
    done_before = sample(before, "kohakuriver_runner_tasks_finished", "kohakuriver_runner_tasks_finished_total",
                         kind="task", status="completed")
    creates_before = sample(before, "kohakuriver_runner_docker_request_duration_seconds",
                            "kohakuriver_runner_docker_request_duration_seconds_count", operation="container_create")

    task_id = new_task_id()
    try:
        submit(runner, task_id, "sleep 2")
        wait_until(lambda: sample(scrape(runner)[0], "kohakuriver_runner_tasks", "kohakuriver_runner_tasks",
                                  kind="task", state="running") >= 1, timeout=30, what="task running in /metrics")
        assert final_report(host, task_id, timeout=60)["status"] == "completed"
    finally:
        docker("rm", "-f", f"kohakuriver-task-{task_id}", check=False)

    wait_until(lambda: sample(scrape(runner)[0], "kohakuriver_runner_tasks_finished",
                              "kohakuriver_runner_tasks_finished_total", kind="task",
                              status="completed") == done_before + 1, timeout=10, what="finished counter")
    after, _ = scrape(runner)
    assert sample(after, "kohakuriver_runner_docker_request_duration_seconds",
                  "kohakuriver_runner_docker_request_duration_seconds_count",
                  operation="container_create") == creates_before + 1
    assert sample(after, "kohakuriver_runner_docker_request_duration_seconds",
                  "kohakuriver_runner_docker_request_duration_seconds_count", operation="container_start") >= 1
    assert sample(after, "kohakuriver_runner_tasks", "kohakuriver_runner_tasks", kind="task", state="running") == 0
    assert sample(after, "kohakuriver_runner_outbox_pending", "kohakuriver_runner_outbox_pending") == 0
