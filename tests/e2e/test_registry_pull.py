"""Issue 6 item 9: registry images like Docker and Kubernetes users expect —
pull when absent, refresh `latest`/untagged images (short deadline, local
copy with a warning when the registry is unreachable), credentials from the
runner's Docker client config sent as X-Registry-Auth. Against a fake
Registry v2 server on 127.0.0.1 (tests/e2e/fake_registry.py): dockerd pulls
from loopback only, never from a public registry."""
import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from fake_registry import FakeRegistry
from taskutil import IMAGE, docker, final_report, new_task_id, remove_task_containers, statuses, submit


@pytest.fixture(autouse=True)
def clean():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable: these tests need dockerd")
    remove_task_containers()
    yield
    remove_task_containers()


@pytest.fixture
def registry_factory():
    made = []

    def make(auth=None):
        r = FakeRegistry(auth=auth)
        made.append(r)
        return r
    yield make
    for r in made:
        r.stop()
        out = docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
        mine = [i for i in out if i.startswith(r.host + "/")]
        if mine:
            docker("rmi", "-f", *mine, check=False)


def docker_config(tmp_path: Path, content: dict) -> Path:
    d = tmp_path / "docker-config"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(content))
    return d


def start(host, make_runner, env):
    runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, env=env)
    runner.wait_listening()
    host.wait_for("register", timeout=10)
    return runner


def logs(runner, tid):
    p = Path(runner.config["SHARED_DIR"]) / "logs" / str(tid) / "stdout.log"
    return p.read_text() if p.exists() else None


def basic(user, pw):
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_private_registry_credentials_from_auths(host, make_runner, tmp_path, registry_factory):
    reg = registry_factory(auth="basic")
    reg.push(IMAGE, "kr/private", "v1")
    cfg = docker_config(tmp_path, {"auths": {reg.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}})
    runner = start(host, make_runner, {"DOCKER_CONFIG": str(cfg)})
    tid = new_task_id()
    submit(runner, tid, "echo", ["pulled"], registry_image=f"{reg.host}/kr/private:v1")
    final = final_report(host, tid, timeout=120)
    assert final["status"] == "completed", final
    assert logs(runner, tid) == "pulled\n"
    auths = [a for (_m, p, a) in reg.manifest_requests("kr/private")]
    assert auths and all(a == basic("alice", "s3cret") for a in auths), auths


def test_private_registry_without_credentials_fails_clearly(host, make_runner, tmp_path, registry_factory):
    reg = registry_factory(auth="basic")
    reg.push(IMAGE, "kr/private", "v1")
    runner = start(host, make_runner, {"DOCKER_CONFIG": str(docker_config(tmp_path, {}))})
    tid = new_task_id()
    submit(runner, tid, "true", registry_image=f"{reg.host}/kr/private:v1")
    final = final_report(host, tid, timeout=120)
    assert final["status"] == "failed"
    assert final["message"] == f"Failed to pull registry image '{reg.host}/kr/private:v1'"


def test_token_auth_with_a_credential_helper(host, make_runner, tmp_path, registry_factory):
    reg = registry_factory(auth="token")
    reg.push(IMAGE, "kr/tok", "v2")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-krtest"
    # Answers only for the server it is asked about, like a real helper.
    helper.write_text("#!/bin/sh\nread server\n"
                      f"[ \"$1\" = get ] && [ \"$server\" = \"{reg.host}\" ] || "
                      "{ echo 'credentials not found in native keychain'; exit 1; }\n"
                      "printf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}' \"$server\"\n")
    helper.chmod(0o755)
    cfg = docker_config(tmp_path, {"credHelpers": {reg.host: "krtest"}})
    env = {"DOCKER_CONFIG": str(cfg), "PATH": f"{bindir}:{os.environ['PATH']}"}
    runner = start(host, make_runner, env)
    tid = new_task_id()
    submit(runner, tid, "echo", ["tok"], registry_image=f"{reg.host}/kr/tok:v2")
    final = final_report(host, tid, timeout=120)
    assert final["status"] == "completed", final
    assert reg.token_requests and reg.token_requests[0] == basic("alice", "s3cret")


def test_latest_is_refreshed_and_falls_back_to_the_local_copy(host, make_runner, tmp_path, registry_factory):
    reg = registry_factory()
    reg.push(IMAGE, "kr/app", "latest")
    reg.push(IMAGE, "kr/app", "pinned")
    runner = start(host, make_runner, {"DOCKER_CONFIG": str(docker_config(tmp_path, {})),
                                       })
    ref = f"{reg.host}/kr/app"  # no tag: latest
    t1 = new_task_id()
    submit(runner, t1, "cat", ["/marker"], registry_image=ref)
    assert final_report(host, t1, timeout=120)["exit_code"] == 1  # no marker in v1
    n = len(reg.manifest_requests("kr/app"))
    assert n >= 1

    # Re-push :latest with new content: the next task picks it up although
    # a local copy exists.
    src = f"krtest-regv2-{os.getpid()}"
    docker("run", "--name", src, IMAGE, "sh", "-c", "echo v2 > /marker")
    try:
        docker("commit", src, f"kr-test/regv2:{os.getpid()}")
    finally:
        docker("rm", "-f", src, check=False)
    try:
        reg.push(f"kr-test/regv2:{os.getpid()}", "kr/app", "latest")
    finally:
        docker("rmi", "-f", f"kr-test/regv2:{os.getpid()}", check=False)
    t2 = new_task_id()
    submit(runner, t2, "cat", ["/marker"], registry_image=ref)
    final = final_report(host, t2, timeout=120)
    assert final["status"] == "completed" and final["message"] is None, final
    assert logs(runner, t2) == "v2\n"

    # A pinned tag that is present is not pulled again.
    t3 = new_task_id()
    submit(runner, t3, "true", registry_image=f"{reg.host}/kr/app:pinned")
    assert final_report(host, t3, timeout=120)["status"] == "completed"
    before = len(reg.manifest_requests("kr/app"))
    t4 = new_task_id()
    submit(runner, t4, "true", registry_image=f"{reg.host}/kr/app:pinned")
    assert final_report(host, t4, timeout=120)["status"] == "completed"
    assert len([r for r in reg.manifest_requests("kr/app") if "pinned" in r[1]]) == \
        len([r for r in reg.manifest_requests("kr/app")[:before] if "pinned" in r[1]])

    # Registry gone: the local copy runs, with a warning the user can see.
    reg.stop()
    t5 = new_task_id()
    submit(runner, t5, "cat", ["/marker"], registry_image=f"{ref}:latest")
    final = final_report(host, t5, timeout=120)
    assert final["status"] == "completed", final
    assert "Could not refresh registry image" in final["message"]
    running = [u for u in host.updates_for(t5) if u["status"] == "running"]
    assert running and "Could not refresh registry image" in running[0]["message"]
    assert logs(runner, t5) == "v2\n"
    assert "running the local copy" in runner.output()
    assert statuses(host, t5) == ["pending", "running", "completed"]
