"""End-to-end tests of Docker VPS: the real binary, the real Docker Engine,
a real `ssh` client and the fixture host (execution.md §3–4; decisions
D17–D19, D-PKGMGR, S-KEYINJ, S-SSHCFG, D-SSHPORT, R-STALEPORT, R-VPSKILL,
R-VPSSTOP, R-SNAPSEC, "VPS sshd setup")."""
import json
import signal
import subprocess
import time

import pytest

from taskutil import docker, http, new_task_id, statuses, wait_until
from vpsutil import (BUSYBOX, DEBIAN, cleanup_vps, create, make_key, ssh, ssh_until, vps_body)

IDS = []


@pytest.fixture(autouse=True)
def clean():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable: the VPS tests need dockerd (scripts/ensure-dockerd.sh)")
    if docker("image", "inspect", DEBIAN, check=False).returncode != 0:
        pytest.fail(f"test image {DEBIAN} missing: run tests/images/build-debian-image.sh (scripts/test.sh does)")
    cleanup_vps()
    yield
    cleanup_vps(IDS)
    IDS.clear()


def tid():
    t = new_task_id()
    IDS.append(t)
    return t


@pytest.fixture
def vps_runner(host, make_runner, tmp_path):
    def start(**overrides):
        (tmp_path / "share").mkdir(exist_ok=True)
        (tmp_path / "local").mkdir(exist_ok=True)
        runner = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, TUNNEL_ENABLED=False, **overrides)
        runner.wait_listening()
        host.wait_for("register", timeout=10)
        return runner
    return start


def running_report(host, task_id, timeout=60):
    host.wait_for("update", timeout=timeout,
                  pred=lambda r: r.json()["task_id"] == task_id and r.json()["status"] in ("running", "failed"))
    return [u for u in host.updates_for(task_id) if u["status"] in ("running", "failed")][-1]


def last_port(host, task_id):
    ups = [u for u in host.updates_for(task_id) if u["status"] == "running"]
    return ups[-1]["ssh_port"] if ups else None


def heartbeat_ids(host, timeout=5):
    n = len(host.of_kind("heartbeat"))
    host.wait_for("heartbeat", count=n + 1, timeout=timeout)
    return host.of_kind("heartbeat")[-1].json()["running_tasks"]


def in_container(task_id, *cmd):
    return docker("exec", f"kohakuriver-vps-{task_id}", *cmd, check=False)


def test_ssh_login_in_upload_generate_and_none_modes(host, vps_runner, tmp_path):
    runner = vps_runner()
    key, pub = make_key(tmp_path)
    cases = [(tid(), "upload", pub), (tid(), "generate", pub), (tid(), "none", None)]
    for t, mode, k in cases:
        reply = create(runner, vps_body(t, mode, k))
        assert set(reply) == {"success", "ssh_port", "container_name"}
        assert reply["success"] is True and reply["container_name"] == f"kohakuriver-vps-{t}"
        port = reply["ssh_port"]
        assert isinstance(port, int) and port > 0
        assert t in heartbeat_ids(host)
        r = running_report(host, t)
        assert statuses(host, t) == ["pending", "running"]
        assert r["ssh_port"] == port and r["started_at"] and r["completed_at"] is None
        out = ssh_until(port, "echo logged-in-$(id -u)", key if k else None)
        assert out.stdout.strip() == "logged-in-0"
        # sshd was in the image: no package manager ran.
        logs = docker("logs", f"kohakuriver-vps-{t}", check=False)
        assert "installing openssh" not in logs.stdout + logs.stderr
        info = json.loads(docker("inspect", f"kohakuriver-vps-{t}").stdout)[0]
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert info["Config"]["Labels"]["kohakuriver.kind"] == "vps"
    # Key modes refuse logins without the key.
    t_up = cases[0][0]
    port_up = [u for u in host.updates_for(t_up) if u["status"] == "running"][-1]["ssh_port"]
    assert ssh(port_up, "true").returncode != 0
    assert "passwordauthentication no" in in_container(t_up, "/usr/sbin/sshd", "-T").stdout


def test_disabled_mode_on_image_without_sshd(host, vps_runner):
    runner = vps_runner()
    t = tid()
    reply = create(runner, vps_body(t, "disabled", image=BUSYBOX))
    assert reply == {"success": True, "ssh_port": 0, "container_name": f"kohakuriver-vps-{t}"}
    assert running_report(host, t)["ssh_port"] == 0
    info = json.loads(docker("inspect", f"kohakuriver-vps-{t}").stdout)[0]
    assert info["State"]["Running"] and not info["HostConfig"].get("PortBindings")
    start = time.monotonic()
    status, body = http("POST", runner.url(f"/api/vps/stop/{t}"), timeout=60)
    assert (status, body) == (200, {"message": f"VPS {t} stopped."})
    assert time.monotonic() - start < 8, "TERM must end a disabled VPS at once"
    assert docker("inspect", f"kohakuriver-vps-{t}", check=False).returncode != 0
    assert t not in heartbeat_ids(host)


def test_bad_mode_or_missing_key_is_json_400_and_failed_report(host, vps_runner):
    runner = vps_runner()
    for mode, key in (("password", None), ("upload", None), ("generate", "  ")):
        t = tid()
        status, body = http("POST", runner.url("/api/vps/create"), vps_body(t, mode, key))
        assert status == 400 and isinstance(body, dict) and "detail" in body, (status, body)
        host.wait_for("update", pred=lambda r, t=t: r.json()["task_id"] == t and r.json()["status"] == "failed")
        assert docker("inspect", f"kohakuriver-vps-{t}", check=False).returncode != 0
    status, body = http("POST", runner.url("/api/vps/create"), {"task_id": 1})
    assert status == 422 and isinstance(body["detail"], list)
    status, body = http("POST", runner.url("/api/vps/create"), vps_body(tid(), "none", vps_backend="qemu"))
    # The VM backend now exists: on this node (no OVMF/KVM in the default
    # settings) it answers the spec's create failure (vm.md §2).
    assert status == 500 and body["detail"].startswith("Node is not VM-capable: "), body


def test_pause_resume_and_kill(host, vps_runner):
    runner = vps_runner()
    t = tid()
    create(runner, vps_body(t, "none"))
    name = f"kohakuriver-vps-{t}"
    paused = lambda: json.loads(docker("inspect", name).stdout)[0]["State"]["Paused"]  # noqa: E731
    ctl = {"task_id": t, "container_name": name}
    assert http("POST", runner.url("/api/pause"), ctl) == (200, {"message": f"Task {t} paused."})
    assert paused()
    assert http("POST", runner.url("/api/resume"), ctl) == (200, {"message": f"Task {t} resumed."})
    assert not paused()
    assert http("POST", runner.url(f"/api/vps/pause/{t}")) == (200, {"message": f"VPS {t} paused."})
    assert paused()
    assert http("POST", runner.url(f"/api/vps/resume/{t}")) == (200, {"message": f"VPS {t} resumed."})
    assert http("POST", runner.url("/api/vps/pause/123")) == (404, {"detail": "VPS 123 not found."})
    running_report(host, t)
    n_updates = len(host.updates_for(t))
    # R-VPSKILL: /api/kill removes the VPS container.
    assert http("POST", runner.url("/api/kill"), ctl) == (200, {"message": f"Task {t} killed."})
    wait_until(lambda: docker("inspect", name, check=False).returncode != 0, timeout=20, what="container removed")
    wait_until(lambda: t not in heartbeat_ids(host), timeout=10, what="id dropped from heartbeat")
    assert len(host.updates_for(t)) == n_updates  # no report after a kill
    assert http("POST", runner.url(f"/api/vps/stop/{t}"))[0] == 404


def test_stop_then_restart_restores_snapshot_and_stays_key_only(host, vps_runner, tmp_path):
    runner = vps_runner()
    key, pub = make_key(tmp_path)
    t = tid()
    port = create(runner, vps_body(t, "upload", pub))["ssh_port"]
    ssh_until(port, "echo kept-data > /root/marker.txt", key)
    status, body = http("POST", runner.url(f"/api/vps/stop/{t}"), timeout=120)
    assert (status, body) == (200, {"message": f"VPS {t} stopped."})
    status, listing = http("GET", runner.url(f"/api/vps/snapshots/{t}"))
    assert status == 200 and listing["count"] == 1
    assert listing["snapshots"][0]["tag"].startswith(f"kohakuriver-snapshot/vps-{t}:")
    # The host's restart: a fresh create with the same id and mode none.
    reply = create(runner, vps_body(t, "none", None))
    port2 = reply["ssh_port"]
    out = ssh_until(port2, "cat /root/marker.txt", key)
    assert out.stdout.strip() == "kept-data"
    assert "passwordauthentication no" in in_container(t, "/usr/sbin/sshd", "-T").stdout
    # No empty-password ("none") or password login.
    refused = ssh(port2, "true", None, extra=("-o", "PreferredAuthentications=none,password"))
    assert refused.returncode != 0
    cfg = in_container(t, "cat", "/etc/ssh/sshd_config").stdout
    assert cfg.count("# BEGIN kohakuriver") == 1
    # The same setup again on a container restart (Docker restart policy
    # path): still one managed block, still reachable.
    docker("restart", f"kohakuriver-vps-{t}")
    wait_until(lambda: last_port(host, t) == int(docker("port", f"kohakuriver-vps-{t}", "22/tcp").stdout
                                                  .splitlines()[0].rsplit(":", 1)[1]),
               timeout=20, what="port after docker restart reported")
    port3 = last_port(host, t)
    ssh_until(port3, "true", key)
    assert in_container(t, "cat", "/etc/ssh/sshd_config").stdout.count("# BEGIN kohakuriver") == 1
    # R-VPSSTOP: the container is gone under its name (renamed: no destroy
    # event), the stop still succeeds and the id is released.
    docker("rename", f"kohakuriver-vps-{t}", f"kohakuriver-vps-renamed-{t}")
    status, body = http("POST", runner.url(f"/api/vps/stop/{t}"), {}, timeout=60)
    assert (status, body) == (200, {"message": f"VPS {t} stopped."})
    assert http("POST", runner.url(f"/api/vps/stop/{t}"))[0] == 404


def test_container_removed_behind_the_runner_is_reported(host, vps_runner):
    runner = vps_runner(AUTO_SNAPSHOT_ON_STOP=False)
    t = tid()
    create(runner, vps_body(t, "disabled", image=BUSYBOX))
    docker("rm", "-f", f"kohakuriver-vps-{t}")
    host.wait_for("update", timeout=20, pred=lambda r: r.json()["task_id"] == t and r.json()["status"] == "stopped")
    gone = [u for u in host.updates_for(t) if u["status"] == "stopped"][-1]
    assert gone["exit_code"] == -1 and gone["message"] == "Container removed outside the runner."
    wait_until(lambda: t not in heartbeat_ids(host), timeout=10, what="id dropped from heartbeat")


def test_snapshot_api_unique_tags_and_pruning(host, vps_runner):
    runner = vps_runner(MAX_SNAPSHOTS_PER_VPS=2, AUTO_SNAPSHOT_ON_STOP=False)
    t = tid()
    create(runner, vps_body(t, "disabled", image=BUSYBOX))
    assert http("POST", runner.url(f"/api/vps/snapshots/{t}/latest"))[0] == 405
    assert http("GET", runner.url(f"/api/vps/snapshots/{t}/latest")) == \
        (404, {"detail": f"No snapshots found for VPS {t}."})
    tags = []
    for i in range(3):  # within about one second: tags must still differ
        status, body = http("POST", runner.url(f"/api/vps/snapshots/{t}"), {"message": f"m{i}"} if i else None,
                            timeout=60)
        assert status == 200 and body["message"] == f"Snapshot created for VPS {t}", body
        tags.append(body["tag"])
    assert len(set(tags)) == 3
    status, listing = http("GET", runner.url(f"/api/vps/snapshots/{t}"))
    assert listing["count"] == 2 and [s["tag"] for s in listing["snapshots"]] == tags[:0:-1]
    for s in listing["snapshots"]:
        assert set(s) == {"tag", "task_id", "timestamp", "size", "created_at"} and s["task_id"] == t
    assert http("GET", runner.url(f"/api/vps/snapshots/{t}/latest")) == (200, {"task_id": t, "tag": tags[-1]})
    ts = tags[1].rsplit(":", 1)[1]
    assert http("DELETE", runner.url(f"/api/vps/snapshots/{t}/{ts}")) == \
        (200, {"message": f"Snapshot {ts} deleted for VPS {t}"})
    assert http("DELETE", runner.url(f"/api/vps/snapshots/{t}/{ts}")) == \
        (404, {"detail": "Snapshot not found or failed to delete."})
    assert http("DELETE", runner.url(f"/api/vps/snapshots/{t}")) == \
        (200, {"message": f"Deleted 1 snapshot(s) for VPS {t}", "deleted_count": 1})
    assert http("POST", runner.url("/api/vps/snapshots/999")) == \
        (404, {"detail": "VPS 999 is not running on this node."})
    assert http("GET", runner.url("/api/vps/snapshots/abc"))[0] == 422


def test_kill9_with_two_vps_then_restart_adopts_both(host, vps_runner, make_runner, tmp_path):
    runner = vps_runner()
    key, pub = make_key(tmp_path)
    ts = [tid(), tid()]
    for t in ts:
        create(runner, vps_body(t, "upload", pub))
    runner.stop(sig=signal.SIGKILL)
    restarted = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, TUNNEL_ENABLED=False, RUNNER_PORT=runner.port)
    restarted.wait_listening()
    for t in ts:
        host.wait_for("update", timeout=30, pred=lambda r, t=t: r.json()["task_id"] == t and
                      r.json()["message"] == "VPS recovered after runner restart")
        rec = [u for u in host.updates_for(t) if u["message"] == "VPS recovered after runner restart"][-1]
        assert rec["status"] == "running" and rec["ssh_port"] > 0
        ssh_until(rec["ssh_port"], "true", key)
    wait_until(lambda: set(ts) <= set(heartbeat_ids(host)), timeout=10, what="both ids in heartbeat")
    # A VPS whose container vanished while the runner was down.
    restarted.stop(sig=signal.SIGTERM)
    docker("rm", "-f", f"kohakuriver-vps-{ts[0]}")
    third = make_runner(host, HEARTBEAT_INTERVAL_SECONDS=1, TUNNEL_ENABLED=False, RUNNER_PORT=runner.port)
    third.wait_listening()
    host.wait_for("update", timeout=30, pred=lambda r: r.json()["task_id"] == ts[0] and r.json()["status"] == "stopped")
    gone = [u for u in host.updates_for(ts[0]) if u["status"] == "stopped"][-1]
    assert gone["exit_code"] == -1
    assert gone["message"] == "Container not found on runner startup (runner may have restarted)."
    wait_until(lambda: ts[0] not in heartbeat_ids(host) and ts[1] in heartbeat_ids(host), timeout=10,
               what="heartbeat after the vanished VPS")


def test_image_sources_tarball_env_null_container_name_and_failures(host, vps_runner, tmp_path):
    """Environment tarball through the task path's provisioner, a registry
    image with container_name null (D13), and provisioning failures."""
    from test_image_sync import make_env_image, save
    tars = tmp_path / "tars"
    tars.mkdir()
    runner = vps_runner(CONTAINER_TAR_DIR=str(tars))
    env = f"krvpsenv{tid() % 100000}"
    src = f"krtest/{env}:1"
    try:
        created = make_env_image(src, f"vps-{env}", tmp_path)
        save(src, tars / f"{env}-{created + 100}.tar")
        t = tid()
        reply = create(runner, vps_body(t, "disabled", image=None, container_name=env))
        assert reply["success"] is True
        info = json.loads(docker("inspect", f"kohakuriver-vps-{t}").stdout)[0]
        assert info["Config"]["Image"] == f"kohakuriver/{env}:base"
        assert in_container(t, "cat", "/marker").stdout == f"vps-{env}"
        t2 = tid()
        assert create(runner, vps_body(t2, "disabled", image=BUSYBOX, container_name=None))["success"] is True
        t3 = tid()
        status, body = http("POST", runner.url("/api/vps/create"),
                            vps_body(t3, "disabled", image=None, container_name="krvps-no-such-env"), timeout=60)
        msg = "Docker image sync failed for container 'krvps-no-such-env'"
        assert (status, body) == (500, {"detail": msg})
        # The report goes through the outbox: delivered shortly after.
        host.wait_for("update", timeout=10, pred=lambda r: r.json()["task_id"] == t3 and r.json()["status"] == "failed")
        failed = [u for u in host.updates_for(t3) if u["status"] == "failed"]
        assert failed[-1]["message"] == msg and failed[-1]["completed_at"]
        assert t3 not in heartbeat_ids(host)
    finally:
        cleanup_vps()
        docker("rmi", "-f", src, f"kohakuriver/{env}:base", check=False)


def make_fake_pm_image(tmp_path, managers):
    """kr-test/busybox plus fake package managers (each logs its arguments
    to /pm-calls; an install drops a stand-in sshd that logs its start to
    /sshd-calls and sleeps). Nothing is downloaded."""
    import io
    import tarfile
    tag = f"kr-test/fakepm:{new_task_id() % 10**9}"
    manager = (b"#!/bin/sh\necho \"$(basename $0) $*\" >> /pm-calls\n"
               b"case \" $* \" in *\" install \"*|*\" add \"*|*\" -Sy \"*)\n"
               b"  mkdir -p /usr/sbin /etc/ssh\n"
               b"  printf '#!/bin/sh\\necho \"start $*\" >> /sshd-calls\\nexec sleep 100000\\n' > /usr/sbin/sshd\n"
               b"  chmod +x /usr/sbin/sshd;;\nesac\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in managers:
            info = tarfile.TarInfo(f"usr/local/bin/{m}")
            info.size, info.mode = len(manager), 0o755
            tar.addfile(info, io.BytesIO(manager))
    name = f"krtest-fakepm-{new_task_id() % 10**9}"
    docker("create", "--name", name, BUSYBOX, "true")
    try:
        subprocess.run(["docker", "cp", "-", f"{name}:/"], input=buf.getvalue(), check=True, capture_output=True)
        docker("commit", name, tag)
    finally:
        docker("rm", "-f", name, check=False)
    return tag


def test_package_manager_probed_only_when_sshd_is_missing(host, vps_runner, tmp_path):
    """D-PKGMGR: no sshd in the image → the first package manager found by
    probing installs it (apk before apt-get here, whatever the image name);
    on the container's restart sshd exists and no package manager runs."""
    runner = vps_runner(AUTO_SNAPSHOT_ON_STOP=False)
    image = make_fake_pm_image(tmp_path, ["apt-get", "apk"])
    try:
        _, pub = make_key(tmp_path)
        t = tid()
        create(runner, vps_body(t, "upload", pub + "\n", image=image))
        read = lambda f: in_container(t, "cat", f).stdout  # noqa: E731
        wait_until(lambda: "start -D -e" in read("/sshd-calls"), timeout=20, what="stand-in sshd started")
        assert read("/pm-calls") == "apk update\napk add --no-cache openssh\n"
        assert read("/root/.ssh/authorized_keys") == pub + "\n"
        docker("restart", "-t", "1", f"kohakuriver-vps-{t}")
        wait_until(lambda: read("/sshd-calls").count("start -D -e") == 2, timeout=20, what="second start")
        assert read("/pm-calls") == "apk update\napk add --no-cache openssh\n"  # not again
        assert read("/root/.ssh/authorized_keys") == pub + "\n"  # key added once
        assert read("/etc/ssh/sshd_config").count("# BEGIN kohakuriver") == 1
    finally:
        cleanup_vps()
        docker("rmi", "-f", image, check=False)


def test_running_vps_reported_again_when_the_host_link_returns(host, vps_runner):
    """Upstream's host marks a node's VPS `lost` after missed heartbeats and
    accepts `lost` -> `running`; the runner re-reports its live VPS once the
    host answers again — after failed heartbeats and after a re-registration
    (heartbeat 404) — not only at its own start (issue 19)."""
    from fixture_host import Behaviour
    runner = vps_runner()
    t = tid()
    create(runner, vps_body(t, "disabled", image=BUSYBOX))
    assert running_report(host, t)["status"] == "running"

    def runnings():
        return [u for u in host.updates_for(t) if u["status"] == "running"]

    for failing in (Behaviour(status=503), Behaviour(status=404)):
        before = len(runnings())
        host.behaviours["heartbeat"] = failing
        host.wait_for("heartbeat", count=len(host.of_kind("heartbeat")) + 2, timeout=10)
        del host.behaviours["heartbeat"]
        wait_until(lambda: len(runnings()) > before, timeout=15, what=f"VPS re-reported after heartbeat {failing.status}")
        assert runnings()[-1]["task_id"] == t
    assert t in heartbeat_ids(host)
    assert statuses(host, t).count("stopped") == 0, runner.output()[-2000:]
