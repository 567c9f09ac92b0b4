"""Environment images from shared-storage tarballs (execution.md §1.3.2,
Appendix A.3; rulings D-NOTAR, D-SYNCTIMEOUT, R-SYNCLOCK) and Docker
outages (dockerd restarted while idle)."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from taskutil import IMAGE, docker, final_report, http, new_task_id, remove_task_containers, statuses, submit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean():
    remove_task_containers()
    yield
    remove_task_containers()


def make_env_image(tag: str, marker: str, workdir: Path) -> int:
    """Builds an image whose /marker says `marker`; returns its Created time
    (Unix seconds, truncated like the runner does)."""
    root = workdir / f"root-{marker}"
    subprocess.run(["docker", "create", "--name", f"krtest-src-{marker}", IMAGE, "true"], check=True,
                   capture_output=True)
    try:
        exported = subprocess.run(["docker", "export", f"krtest-src-{marker}"], check=True, capture_output=True).stdout
    finally:
        docker("rm", "-f", f"krtest-src-{marker}", check=False)
    root.mkdir(parents=True)
    (root / "marker").write_text(marker)
    tar = workdir / f"{marker}.tar"
    tar.write_bytes(exported)
    subprocess.run(["tar", "-rf", str(tar), "-C", str(root), "marker"], check=True)
    subprocess.run(["docker", "import", "-c", "ENV PATH=/bin", str(tar), tag], check=True, capture_output=True)
    created = docker("image", "inspect", "-f", "{{.Created}}", tag).stdout.strip()
    from datetime import datetime, timezone
    secs = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return int(secs)


def save(tag: str, path: Path):
    subprocess.run(["docker", "save", "-o", str(path), tag], check=True)


@pytest.fixture
def env_runner(host, make_runner, tmp_path):
    (tmp_path / "share").mkdir(exist_ok=True)
    (tmp_path / "local").mkdir(exist_ok=True)
    tars = tmp_path / "tars"
    tars.mkdir()

    def make(**overrides):
        r = make_runner(host, CONTAINER_TAR_DIR=str(tars), **overrides)
        r.wait_listening()
        host.wait_for("register")
        return r
    return make, tars


def env_task(runner, tid, env):
    submit(runner, tid, "cat /marker", registry_image=None, container_name=env)


def test_newest_tarball_wins(host, env_runner, tmp_path):
    make, tars = env_runner
    env = f"krenv{os.getpid()}a"
    docker("rmi", "-f", f"kohakuriver/{env}:base", check=False)
    old = make_env_image("krtest/old:1", "old", tmp_path)
    new = make_env_image("krtest/new:1", "new", tmp_path)
    save("krtest/old:1", tars / f"{env}-{old + 100}.tar")
    save("krtest/new:1", tars / f"{env}-{old + 200}.tar")
    (tars / f"{env}-{old + 900}.tar.gz").write_text("decoy")  # not a candidate
    runner = make()
    tid = new_task_id()
    env_task(runner, tid, env)
    assert final_report(host, tid)["status"] == "completed"
    assert (Path(runner.config["SHARED_DIR"]) / "logs" / str(tid) / "stdout.log").read_text() == "new"
    assert docker("image", "inspect", f"kohakuriver/{env}:base").returncode == 0
    docker("rmi", "-f", f"kohakuriver/{env}:base", "krtest/old:1", "krtest/new:1", check=False)


def test_two_tasks_share_one_sync(host, env_runner, tmp_path):
    make, tars = env_runner
    env = f"krenv{os.getpid()}b"
    docker("rmi", "-f", f"kohakuriver/{env}:base", check=False)
    created = make_env_image("krtest/shared:1", "shared", tmp_path)
    # Named with the image's own creation time: once loaded, it is current.
    save("krtest/shared:1", tars / f"{env}-{created}.tar")
    runner = make()
    t1, t2 = new_task_id(), new_task_id()
    env_task(runner, t1, env)
    env_task(runner, t2, env)
    assert final_report(host, t1)["status"] == "completed"
    assert final_report(host, t2)["status"] == "completed"
    loads = re.findall(r"Loading .*" + re.escape(env), runner.output())
    assert len(loads) == 1, runner.output()
    # The sync route takes the same lock and now finds it current.
    st, reply = http("POST", runner.url(f"/api/docker/sync/{env}"))
    assert (st, reply) == (200, {"message": f"Container '{env}' is up-to-date.", "synced": False})
    docker("rmi", "-f", f"kohakuriver/{env}:base", "krtest/shared:1", check=False)


def test_no_tarball_and_no_image_fails_without_registry(host, env_runner):
    make, _ = env_runner
    runner = make()
    tid = new_task_id()
    env_task(runner, tid, "krenv-nothing-here")
    final = final_report(host, tid)
    assert statuses(host, tid) == ["pending", "failed"]
    assert final["message"] == "Docker image sync failed for container 'krenv-nothing-here'"


def save_big_env_tarball(tmp_path: Path, tars: Path, env: str, mib: int = 256) -> Path:
    """An environment tarball with one incompressible `mib` MiB layer: loading
    it takes dockerd seconds here (hashing and extracting alone). Its name's
    timestamp is in the future, so the runner always wants to load it."""
    root = tmp_path / "bigroot"
    root.mkdir(exist_ok=True)
    with open(root / "blob", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    tar = tmp_path / "big.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(root), "blob"], check=True)
    (root / "blob").unlink()
    subprocess.run(["docker", "import", "-c", "ENV PATH=/bin", str(tar), "krtest/big:1"], check=True,
                   capture_output=True)
    tar.unlink()
    out = tars / f"{env}-{int(time.time()) + 1000}.tar"
    save("krtest/big:1", out)
    docker("rmi", "-f", "krtest/big:1", check=False)
    return out


def test_sync_timeout_enforced(host, env_runner, tmp_path):
    make, tars = env_runner
    env = f"krenv{os.getpid()}c"
    save_big_env_tarball(tmp_path, tars, env)
    try:
        runner = make(DOCKER_IMAGE_SYNC_TIMEOUT=1)
        tid = new_task_id()
        env_task(runner, tid, env)
        final = final_report(host, tid, timeout=60)
        assert final["status"] == "failed"
        assert final["message"] == f"Docker image sync failed for container '{env}'"
        assert "timed out" in runner.output()
    finally:
        docker("rmi", "-f", f"kohakuriver/{env}:base", check=False)


def test_docker_images_route(env_runner):
    make, _ = env_runner
    runner = make()
    st, reply = http("GET", runner.url("/api/docker/images"))
    assert st == 200
    ours = [i for i in reply["images"] if IMAGE in i["tags"]]
    assert len(ours) == 1
    assert ours[0]["id"].startswith("sha256:") and isinstance(ours[0]["size"], int)
    assert re.match(r"^\d{4}-\d{2}-\d{2}T", ours[0]["created"])


def dockerd_pid():
    out = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def test_dockerd_restart_while_idle(host, env_runner):
    make, _ = env_runner
    runner = make()
    tid = new_task_id()
    submit(runner, tid, "echo", ["before"])
    assert final_report(host, tid)["status"] == "completed"
    pid = dockerd_pid()
    if pid is None:
        pytest.fail("no dockerd process to restart")
    if subprocess.run(["systemctl", "is-active", "--quiet", "docker"], capture_output=True).returncode == 0:
        subprocess.run(["systemctl", "restart", "docker"], check=True)
    else:
        os.kill(pid, 15)
        # Shutdown stops running containers (up to 15 s each batch): wait
        # for the old daemon to be gone before starting the next one.
        for _ in range(600):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        subprocess.run([str(REPO / "scripts" / "ensure-dockerd.sh")], check=True)
    tid2 = new_task_id()
    submit(runner, tid2, "echo", ["after"])
    final = final_report(host, tid2, timeout=60)
    assert final["status"] == "completed", final
    assert runner.proc.poll() is None


def test_shutdown_during_provisioning_loses_nothing(host, env_runner, tmp_path):
    """SIGTERM while a task's image is loading: no failure is reported; the
    next start resumes the task, which then runs once and completes."""
    make, tars = env_runner
    env = f"krenv{os.getpid()}d"
    save_big_env_tarball(tmp_path, tars, env, mib=128)
    # The big image holds only a data blob, no shell: once provisioning is
    # done the container's /bin/sh is missing and the task fails with 127.
    # That final report proves the resumed pipeline got past provisioning
    # and created the container exactly once.
    runner = make()
    tid = new_task_id()
    env_task(runner, tid, env)
    host.wait_for("update", pred=lambda r: r.json()["task_id"] == tid and r.json()["status"] == "pending")
    time.sleep(0.5)  # inside the load
    assert "Loading" in runner.output()
    runner.send_signal(15)
    assert runner.proc.wait(10) == 0
    assert [s for s in statuses(host, tid) if s != "pending"] == []
    restarted = make(RUNNER_PORT=runner.port)
    final = final_report(host, tid, timeout=120)
    assert statuses(host, tid).count("pending") == 1
    assert final["status"] == "failed" and final["exit_code"] == 127, final
    assert "resuming" in restarted.output()
    docker("rmi", "-f", f"kohakuriver/{env}:base", check=False)
