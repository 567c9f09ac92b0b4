"""The QEMU VM backend's routes against the real runner (vm.md §3, §4, §8–
§11, §14; decisions V5–V11, V23, V24).

The lifecycle test runs the runner inside a network namespace of its own
(veth to this machine, no default route: nothing can reach a public
address), with VM_QEMU_ACCEL=tcg and SeaBIOS, and a blank base image: QEMU
really starts, gets its TAP on the runner's NAT bridge and answers QMP, but
no guest boots (the full boot is test_vm_boot.py, opt-in). The guest agent's
calls are made from the VM's address inside the namespace."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from fixture_host import FixtureHost
from taskutil import http
from vmutil import (Frozen, VmNetns, agent_call, kill_qemus_of, qemu_alive, sigkill_pending, start_in_netns,
                    wait_until)


@pytest.fixture
def host_any():
    """A fixture host reachable from the runner's namespace (random port)."""
    h = FixtureHost(bind="0.0.0.0").start()
    yield h
    h.stop()


def vm_body(task_id, **fields):
    """What the host's VPS create sends for vps_backend "qemu"."""
    body = {
        "task_id": str(task_id), "required_cores": 1, "required_gpus": [], "required_memory_bytes": None,
        "target_numa_node_id": None, "container_name": "", "registry_image": None,
        "ssh_key_mode": "upload", "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test",
        "ssh_port": 40022, "reserved_ip": None, "vps_backend": "qemu", "vm_image": "blank",
        "vm_disk_size": "1G", "memory_mb": 64,
    }
    body.update(fields)
    return body


# A stand-in sshd on {vm_ip}:22: sends its identification line, then echoes.
SSHD_22 = r"""
import socket, sys, threading
def serve(c):
    c.sendall(b"SSH-2.0-standin\r\n")
    while data := c.recv(4096):
        c.sendall(b"echo:" + data)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22)); s.listen(64)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
# Opens N connections to the relay from a source address, completes the SSH
# identification exchange on each that gets the server's line, keeps them
# all open, prints what each got: "ssh" or "closed".
RELAY_CLIENTS = r"""
import json, socket, sys
src, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
held, out = [], []
for _ in range(n):
    c = socket.create_connection((host, port), timeout=10, source_address=(src, 0))
    line = c.recv(100)
    if line.startswith(b"SSH-2.0-standin"):
        c.sendall(b"SSH-2.0-client\r\n")
        assert c.recv(100).startswith(b"echo:SSH-2.0-client")
        out.append("ssh")
    else:
        out.append("closed" if line == b"" else repr(line))
    held.append(c)
print(json.dumps(out))
"""
PROBE_22 = "import socket; socket.create_connection(('10.200.0.10', 22), timeout=1).close()"


def vm_dirs(tmp_path):
    images, instances, run = tmp_path / "vm-images", tmp_path / "vm-instances", tmp_path / "vm-run"
    for d in (images, instances, run):
        d.mkdir(exist_ok=True)
    return {"VM_IMAGES_DIR": str(images), "VM_INSTANCES_DIR": str(instances), "VM_RUN_DIR": str(run),
            "VM_QEMU_ACCEL": "tcg", "VM_FIRMWARE": ""}


def test_vm_routes_without_vms(host, make_runner, tmp_path):
    cfg = vm_dirs(tmp_path)
    images = Path(cfg["VM_IMAGES_DIR"])
    (images / "b-img.qcow2").write_bytes(b"x" * 100)
    (images / "a-img.qcow2").write_bytes(b"y" * 10)
    (images / "notes.txt").write_text("not an image")
    (images / "dir.qcow2").mkdir()
    inst = Path(cfg["VM_INSTANCES_DIR"])
    (inst / "123").mkdir()
    (inst / "123" / "root.qcow2").write_bytes(os.urandom(8192))
    (inst / "123" / "qemu.pid").write_text(f"{os.getpid()}\n")  # alive, but not a QEMU (V11)
    (inst / "not-an-id").mkdir()
    runner = make_runner(host, **cfg)
    runner.wait_listening()

    status, body = http("GET", runner.url("/api/vm/images"))
    assert status == 200
    assert body["images_dir"] == cfg["VM_IMAGES_DIR"]
    assert [i["name"] for i in body["images"]] == ["a-img", "b-img"]
    assert body["images"][1]["filename"] == "b-img.qcow2" and body["images"][1]["size_bytes"] == 100
    assert isinstance(body["images"][0]["modified_at"], float)

    status, body = http("GET", runner.url("/api/vps/vm-instances"))
    assert status == 200, body
    assert [i["task_id"] for i in body["instances"]] == ["123"]
    one = body["instances"][0]
    assert one["files"] == ["qemu.pid", "root.qcow2"]
    assert one["qemu_running"] is False and one["qemu_pid"] is None and one["in_task_store"] is False
    assert one["disk_usage_bytes"] >= 8192 and body["total_disk_usage_bytes"] == one["disk_usage_bytes"]

    status, body = http("DELETE", runner.url("/api/vps/vm-instances/123?force=maybe"))
    assert status == 422 and body["detail"][0]["loc"] == ["query", "force"], body
    status, body = http("DELETE", runner.url("/api/vps/vm-instances/123"))
    assert status == 200, body
    assert body["task_id"] == "123" and body["message"] == "VM instance 123 deleted." and body["freed_bytes"] >= 8192
    assert not (inst / "123").exists()
    status, body = http("DELETE", runner.url("/api/vps/vm-instances/123"))
    assert status == 404 and body == {"detail": "VM instance directory for task 123 not found."}

    assert http("GET", runner.url("/api/vps/5/vm-status")) == (404, {"detail": "VM 5 not found."})
    status, body = http("GET", runner.url("/api/vps/abc/vm-status"))
    assert status == 422 and body["detail"][0]["loc"] == ["path", "task_id"]
    assert http("POST", runner.url("/api/vps/5/vm-restart")) == (500, {"detail": "Failed to restart VM 5."})

    # Agent endpoints: unknown VMs get "ok"; the body is validated first.
    hb = {"task_id": 5, "timestamp": 1.5, "gpus": [], "system": {"load_1m": 0.1}, "status": "healthy"}
    assert http("POST", runner.url("/api/vps/5/vm-heartbeat"), hb) == (200, {"status": "ok"})
    assert http("POST", runner.url("/api/vps/5/vm-phone-home"), b"") == (200, {"status": "ok"})
    status, body = http("POST", runner.url("/api/vps/5/vm-heartbeat"),
                        {"timestamp": "soon", "gpus": {"a": 1}, "system": [1], "status": 3})
    assert status == 422
    locs = {tuple(d["loc"]): d["type"] for d in body["detail"]}
    assert locs == {("body", "task_id"): "missing", ("body", "timestamp"): "float_parsing",
                    ("body", "gpus"): "list_type", ("body", "system"): "dict_type",
                    ("body", "status"): "string_type"}, body
    status, body = http("POST", runner.url("/api/vps/5/vm-heartbeat"), {"task_id": 5, "gpus": [1]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "gpus", 0]

    # Request values are checked before anything is touched (V12, V13): 400
    # and a failed report, nothing created.
    for tid, fields, why in ((9001, {"vm_image": "../etc/x"}, "image"), (9002, {"vm_disk_size": "100"}, "unit"),
                             (9003, {"memory_mb": 1}, "memory_mb")):
        status, body = http("POST", runner.url("/api/vps/create"), vm_body(tid, **fields))
        assert status == 400, (status, body)
        assert why in body["detail"], body
        ups = host.wait_for("update", pred=lambda r, t=tid: r.json()["task_id"] == t and r.json()["status"] == "failed")
        assert ups[-1].json()["message"] == body["detail"]
    assert sorted(os.listdir(inst)) == ["not-an-id"]
    # Nothing stays tracked.
    assert http("GET", runner.url("/api/vps/9001/vm-status"))[0] == 404


def _need_vm_tools():
    if os.geteuid() != 0:
        pytest.fail("the VM lifecycle test needs root (network namespaces, TAP devices)")
    for tool in ("qemu-system-x86_64", "qemu-img", "ip", "iptables"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is required (scripts/install-deps.sh --test installs the VM tools)")
    if not (shutil.which("genisoimage") or shutil.which("mkisofs")):
        pytest.fail("genisoimage is required (scripts/install-deps.sh --test)")


def test_vm_lifecycle_in_netns(host_any, make_runner, tmp_path):
    _need_vm_tools()
    host = host_any
    cfg = vm_dirs(tmp_path)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{cfg['VM_IMAGES_DIR']}/blank.qcow2", "64M"], check=True)
    inst = Path(cfg["VM_INSTANCES_DIR"])
    with VmNetns() as ns:
        try:
            _lifecycle(ns, host, make_runner, cfg, inst)
        finally:
            kill_qemus_of(inst)


def _lifecycle(ns, host, make_runner, cfg, inst):
    # The watchdog (V6) has its own test; here it must not interfere.
    # A blank disk has no OS to answer the ACPI power button: keep the
    # powerdown wait short (the SIGKILL fallback is what runs).
    cfg = dict(cfg, HOST_ADDRESS=ns.outer_ip, VM_CLOUD_INIT_TIMEOUT_SECONDS=3600, VM_POWERDOWN_TIMEOUT_SECONDS=2,
               VM_SSH_RELAY_MAX_CONNECTIONS=8, VM_SSH_RELAY_MAX_PER_SOURCE=3, VM_SSH_RELAY_HANDSHAKE_TIMEOUT_SECONDS=3)
    runner = start_in_netns(make_runner(host, start=False, **cfg), ns)

    # ---- create: QEMU runs, TAP on the bridge, state persisted
    status, body = http("POST", runner.url("/api/vps/create"), vm_body(42), timeout=120)
    assert status == 200, (status, body, runner.output()[-4000:])
    assert body == {"success": True, "vm_ip": "10.200.0.10", "ssh_ready": False, "network_mode": "standard"}
    assert ns.exec("ip", "-o", "link", "show", "tap-1ef51593").stdout.count("master kohaku-br0") == 1
    assert "10.200.0.1/24" in ns.exec("ip", "-o", "addr", "show", "kohaku-br0").stdout
    rules = ns.exec("iptables", "-S", "FORWARD").stdout + ns.exec("iptables", "-t", "nat", "-S", "POSTROUTING").stdout
    assert rules.count("kohakuriver-vm") == 3, rules
    statuses = [u["status"] for u in host.updates_for(42)]
    assert statuses[:2] == ["pending", "assigning"], statuses
    assert host.updates_for(42)[1]["message"] == "Provisioning VM \u2014 installing packages via cloud-init"
    status, st = http("GET", runner.url("/api/vps/42/vm-status"))
    assert status == 200 and st["vm_ip"] == "10.200.0.10" and st["ssh_ready"] is False
    assert st["last_heartbeat"] is None and st["gpu_pci_addresses"] == []
    pid = st["pid"]
    assert qemu_alive(pid)
    assert (inst / "42" / "vm-state.json").exists() and (inst / "42" / "qemu_cmd.json").exists()
    # Listed to the host as running work.
    host.wait_for("heartbeat", pred=lambda r: 42 in (r.json().get("running_tasks") or []))
    # A duplicate create is refused.
    assert http("POST", runner.url("/api/vps/create"), vm_body(42), timeout=60)[0] == 409

    # ---- V7: agent calls only from the VM's address
    ns.exec("ip", "addr", "add", "10.200.0.10/32", "dev", "kohaku-br0")  # "be" the VM
    ns.exec("ip", "addr", "add", "10.200.0.99/32", "dev", "kohaku-br0")  # another VM
    hb_url = runner.url("/api/vps/42/vm-heartbeat").replace(ns.inner_ip, "10.200.0.1")
    ph_url = runner.url("/api/vps/42/vm-phone-home").replace(ns.inner_ip, "10.200.0.1")
    assert agent_call(ns, "10.200.0.99", ph_url)[0] == 403
    assert agent_call(ns, "10.200.0.99", hb_url, {"task_id": 42})[0] == 403
    assert http("POST", runner.url("/api/vps/42/vm-phone-home"), b"")[0] == 403  # from outside
    assert http("GET", runner.url("/api/vps/42/vm-status"))[1]["ssh_ready"] is False
    assert agent_call(ns, "10.200.0.10", ph_url) == (200, {"status": "ok"})
    up = host.wait_for("update", pred=lambda r: r.json()["task_id"] == 42 and r.json()["status"] == "running")[-1].json()
    assert up["message"] == "" and up["started_at"]
    hb = {"task_id": 42, "timestamp": None, "gpus": [], "system": {"load_1m": 0.5}, "status": "healthy"}
    before = time.time()
    assert agent_call(ns, "10.200.0.10", hb_url, hb) == (200, {"status": "ok"})
    st = http("GET", runner.url("/api/vps/42/vm-status"))[1]
    assert st["ssh_ready"] is True and st["last_heartbeat"] >= before - 1  # runner clock (V24)

    # ---- the SSH port relays to {vm_ip}:22 (a stand-in sshd inside the namespace)
    sshd = ns.popen("python3", "-c", SSHD_22, "10.200.0.10")
    try:
        wait_until(lambda: ns.exec("python3", "-c", PROBE_22, check=False).returncode == 0, 20, "the stand-in sshd")
        _relay_bounds(ns, runner)
    finally:
        sshd.kill()
        sshd.wait()
    # A taken SSH port fails the create (V25) and leaves nothing behind.
    status, body = http("POST", runner.url("/api/vps/create"), vm_body(45, ssh_port=40022), timeout=120)
    assert status == 500 and "40022" in body["detail"], body
    assert not ns.link_exists("tap-" + _tap(45))
    assert http("GET", runner.url("/api/vps/45/vm-status"))[0] == 404

    # ---- pause / resume through QMP (V23), both routes the host uses
    assert http("POST", runner.url("/api/vps/pause/42")) == (200, {"message": "VPS 42 paused."})
    assert http("POST", runner.url("/api/vps/resume/42")) == (200, {"message": "VPS 42 resumed."})
    ctl = {"task_id": "42", "container_name": "kohakuriver-vps-42"}
    assert http("POST", runner.url("/api/pause"), ctl)[0] == 200
    assert http("POST", runner.url("/api/resume"), ctl)[0] == 200

    # ---- restart (V8): answered at once, new QEMU in the background
    assert http("POST", runner.url("/api/vps/42/vm-restart"), timeout=15) == (200, {"message": "VM 42 restarted."})
    wait_until(lambda: (s := http("GET", runner.url("/api/vps/42/vm-status"))[1]).get("pid") not in (None, pid)
               and qemu_alive(s["pid"]), 90, "the restarted QEMU")
    assert not qemu_alive(pid)
    pid = http("GET", runner.url("/api/vps/42/vm-status"))[1]["pid"]
    assert ns.link_exists("tap-1ef51593")

    # ---- a second VM that never phones home: the watchdog stops it (V6)
    status, body = http("POST", runner.url("/api/vps/create"), vm_body(43, ssh_port=40023), timeout=120)
    assert status == 200 and body["vm_ip"] == "10.200.0.11", body
    pid43 = http("GET", runner.url("/api/vps/43/vm-status"))[1]["pid"]

    # ---- runner restart keeps the VMs (V26) and re-adopts them (§10)
    runner.stop()
    assert qemu_alive(pid) and qemu_alive(pid43)
    n_running = len([u for u in host.updates_for(42) if u["status"] == "running"])
    runner = start_in_netns(make_runner(host, start=False, **cfg), ns)
    up = host.wait_for("update", count=n_running + 1,
                       pred=lambda r: r.json()["task_id"] == 42 and r.json()["status"] == "running")[-1].json()
    assert up["message"] == "VM recovered after runner restart"
    st = http("GET", runner.url("/api/vps/42/vm-status"))[1]
    assert st["pid"] == pid and st["vm_ip"] == "10.200.0.10"
    listing = http("GET", runner.url("/api/vps/vm-instances"))[1]
    by_id = {i["task_id"]: i for i in listing["instances"]}
    assert by_id["42"]["qemu_running"] is True and by_id["42"]["qemu_pid"] == pid and by_id["42"]["in_task_store"]
    assert http("DELETE", runner.url("/api/vps/vm-instances/42"))[0] == 409  # running, no force

    # ---- stop leaves no QEMU, TAP or socket behind; 200 again (V9); one
    # final `stopped` once QEMU is gone (issue 16 point 5)
    assert http("POST", runner.url("/api/vps/stop/42"), timeout=60) == (200, {"message": "VPS 42 stopped."})
    assert not qemu_alive(pid)
    final = host.wait_for("update", pred=lambda r: r.json()["task_id"] == 42 and r.json()["completed_at"])
    assert [u.json()["status"] for u in final] == ["stopped"]
    assert not ns.link_exists("tap-1ef51593")
    assert not (Path(cfg["VM_RUN_DIR"]) / "42.qmp").exists()
    assert not (inst / "42" / "qemu.pid").exists() and not (inst / "42" / "vm-state.json").exists()
    assert (inst / "42" / "root.qcow2").exists()  # the disk stays (§6)
    assert http("POST", runner.url("/api/vps/stop/42"))[0] in (200, 404)
    assert http("GET", runner.url("/api/vps/42/vm-status"))[0] == 404
    # The freed address is handed out again.
    status, body = http("POST", runner.url("/api/vps/create"), vm_body(44, ssh_port=40024), timeout=120)
    assert status == 200 and body["vm_ip"] == "10.200.0.10", body
    # Force delete kills the tracked VM first.
    status, body = http("DELETE", runner.url("/api/vps/vm-instances/44?force=true"), timeout=60)
    assert status == 200 and body["freed_bytes"] > 0, body
    assert not (inst / "44").exists() and not ns.link_exists("tap-" + _tap(44))
    restart = lambda old: (old.stop(), start_in_netns(make_runner(host, start=False, **cfg), ns))[1]
    runner = _qemu_that_will_not_die(ns, host, runner, restart, inst, pid43)
    listing = http("GET", runner.url("/api/vps/vm-instances"))[1]
    assert all(not i["qemu_running"] for i in listing["instances"])


def _relay_connect(ns, exchange=True):
    """From this machine (HOST_ADDRESS) to the relay: returns the socket and
    the first line it got (b"" when the relay closed it)."""
    c = socket.create_connection((ns.inner_ip, 40022), timeout=30)
    line = c.recv(100)
    if exchange and line:
        c.sendall(b"SSH-2.0-client\r\n")
        assert c.recv(100).startswith(b"echo:SSH-2.0-client")
    return c, line


def _relay_metric(runner, outcome=None):
    """A relay counter by outcome, or (None) the open-connections gauge."""
    text = urllib.request.urlopen(runner.url("/metrics"), timeout=10).read().decode()
    name = (f'kohakuriver_runner_vm_ssh_relay_connections_total{{outcome="{outcome}"}} ' if outcome
            else "kohakuriver_runner_vm_ssh_relay_open_connections ")
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    raise AssertionError(f"no {name}in:\n{text}")


def _relay_bounds(ns, runner):
    """Issue 16 point 4 (VM_SSH_RELAY_MAX_CONNECTIONS=8, _MAX_PER_SOURCE=3,
    _HANDSHAKE_TIMEOUT_SECONDS=3 in this test's configuration)."""
    c, line = _relay_connect(ns)
    assert line.startswith(b"SSH-2.0-standin")
    c.close()
    refused_before = _relay_metric(runner, "refused_per_source")
    # Another address (not the host, not an allowed client): 3 at a time.
    got = json.loads(ns.exec("python3", "-c", RELAY_CLIENTS, "10.200.0.99", ns.inner_ip, "40022", "5").stdout)
    assert got == ["ssh", "ssh", "ssh", "closed", "closed"], got
    assert _relay_metric(runner, "refused_per_source") == refused_before + 2
    wait_until(lambda: _relay_metric(runner) == 0, 30, "the relay to count its connections closed")
    # The host (HOST_ADDRESS) is exempt from the per-source cap, not from the
    # total: 8 relayed sessions, then refused.
    held = [_relay_connect(ns) for _ in range(8)]
    assert all(line.startswith(b"SSH-2.0-standin") for _, line in held)
    extra, line = _relay_connect(ns)
    assert line == b""
    extra.close()
    for c, _ in held:
        c.close()
    wait_until(lambda: _relay_metric(runner) == 0, 30, "the relay to count its connections closed")
    # A connection that never sends its identification line is closed; one
    # that did is never timed out (it outlives the handshake window).
    timeouts_before = _relay_metric(runner, "handshake_timeout")
    session, _ = _relay_connect(ns)
    silent, line = _relay_connect(ns, exchange=False)
    assert line.startswith(b"SSH-2.0-standin")
    assert silent.recv(100) == b""  # closed by the relay (socket timeout: 30 s)
    assert _relay_metric(runner, "handshake_timeout") == timeouts_before + 1
    session.sendall(b"still here")
    assert session.recv(100) == b"echo:still here"
    session.close()
    silent.close()


def _still_tracked(ns, host, runner, inst, task_id, pid):
    """The VM keeps everything while its QEMU lives: tracked, TAP, state
    file, listed to the host as running work, no final report."""
    assert qemu_alive(pid)
    status, st = http("GET", runner.url(f"/api/vps/{task_id}/vm-status"))
    assert status == 200 and st["pid"] == pid, (status, st)
    assert ns.link_exists("tap-" + _tap(task_id))
    assert (inst / str(task_id) / "vm-state.json").exists()
    n = len(host.of_kind("heartbeat"))
    host.wait_for("heartbeat", count=n + 1)
    assert task_id in (host.of_kind("heartbeat")[-1].json().get("running_tasks") or [])
    assert [u for u in host.updates_for(task_id) if u["completed_at"]] == []


def _qemu_that_will_not_die(ns, host, runner, restart, inst, pid43):
    """Issue 16 point 5, with a QEMU frozen in a cgroup-v1 freezer group (it
    holds the SIGKILL until thawed)."""
    # A kill during a restart cancels the restart (was 409); 200 at once.
    ctl43 = {"task_id": "43", "container_name": "kohakuriver-vps-43"}
    with Frozen(pid43) as frozen:
        assert http("POST", runner.url("/api/vps/43/vm-restart"), timeout=15) == (200, {"message": "VM 43 restarted."})
        assert http("POST", runner.url("/api/kill"), ctl43, timeout=60) == (200, {"message": "Task 43 killed."})
        assert http("POST", runner.url("/api/kill"), ctl43, timeout=60) == (200, {"message": "Task 43 killed."})
        wait_until(lambda: f"VM 43: QEMU pid {pid43} is still there after SIGKILL" in runner.output(), 60,
                   "the runner to find QEMU 43 alive after its SIGKILL")
        assert sigkill_pending(pid43)
        _still_tracked(ns, host, runner, inst, 43, pid43)
        assert http("POST", runner.url("/api/vps/pause/43"))[0] == 409  # being ended
        frozen.thaw()
        final = host.wait_for("update", timeout=60,
                              pred=lambda r: r.json()["task_id"] == 43 and r.json()["completed_at"])
    assert [u.json()["status"] for u in final] == ["killed"]
    assert not qemu_alive(pid43)
    assert not ns.link_exists("tap-" + _tap(43)) and not (inst / "43" / "vm-state.json").exists()
    assert http("GET", runner.url("/api/vps/43/vm-status"))[0] == 404
    assert not (inst / "43" / "qemu.pid").exists()  # the restart never started a new QEMU

    # A plain stop of a QEMU that will not die: 200 (was 500, and the VM was
    # forgotten with its IP and TAP freed while QEMU ran on).
    status, body = http("POST", runner.url("/api/vps/create"), vm_body(46, ssh_port=40026), timeout=120)
    assert status == 200, body
    pid46 = http("GET", runner.url("/api/vps/46/vm-status"))[1]["pid"]
    with Frozen(pid46) as frozen:
        assert http("POST", runner.url("/api/vps/stop/46"), timeout=60) == (200, {"message": "VPS 46 stopped."})
        assert sigkill_pending(pid46)
        _still_tracked(ns, host, runner, inst, 46, pid46)
        # Its address is still taken: the next VM gets another one.
        status, body = http("POST", runner.url("/api/vps/create"), vm_body(47, ssh_port=40027), timeout=120)
        assert status == 200 and body["vm_ip"] != http("GET", runner.url("/api/vps/46/vm-status"))[1]["vm_ip"], body
        # The stop is durable: a restarted runner finishes it, and never
        # reports the VM running again.
        runner = restart(runner)
        wait_until(lambda: http("GET", runner.url("/api/vps/46/vm-status"))[0] == 200, 30, "VM 46 to be tracked")
        _still_tracked(ns, host, runner, inst, 46, pid46)
        assert [u["status"] for u in host.updates_for(46) if u["status"] == "running"] == []
        frozen.thaw()
        final = host.wait_for("update", timeout=60,
                              pred=lambda r: r.json()["task_id"] == 46 and r.json()["completed_at"])
    assert [u.json()["status"] for u in final] == ["stopped"]
    assert not qemu_alive(pid46) and not ns.link_exists("tap-" + _tap(46))
    assert http("GET", runner.url("/api/vps/46/vm-status"))[0] == 404
    assert http("POST", runner.url("/api/kill"), {"task_id": "47", "container_name": "kohakuriver-vps-47"},
                timeout=60) == (200, {"message": "Task 47 killed."})
    final = host.wait_for("update", pred=lambda r: r.json()["task_id"] == 47 and r.json()["completed_at"])
    assert [u.json()["status"] for u in final] == ["killed"]
    return runner


def test_vm_watchdog_stops_silent_vm(host_any, make_runner, tmp_path):
    """V6: a VM whose agent never calls is stopped and reported failed."""
    _need_vm_tools()
    host = host_any
    cfg = vm_dirs(tmp_path)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{cfg['VM_IMAGES_DIR']}/blank.qcow2", "64M"], check=True)
    inst = Path(cfg["VM_INSTANCES_DIR"])
    with VmNetns() as ns:
        try:
            cfg = dict(cfg, HOST_ADDRESS=ns.outer_ip, VM_CLOUD_INIT_TIMEOUT_SECONDS=5)
            runner = start_in_netns(make_runner(host, start=False, **cfg), ns)
            status, body = http("POST", runner.url("/api/vps/create"), vm_body(77), timeout=120)
            assert status == 200, (status, body, runner.output()[-3000:])
            pid = http("GET", runner.url("/api/vps/77/vm-status"))[1]["pid"]
            up = host.wait_for("update", timeout=90,
                               pred=lambda r: r.json()["task_id"] == 77 and r.json()["status"] == "failed")[-1].json()
            assert up["message"] == "Cloud-init timed out after 5s" and up["completed_at"]
            wait_until(lambda: not qemu_alive(pid), 30, "QEMU to be stopped by the watchdog")
            assert not ns.link_exists("tap-" + _tap(77))
            assert http("GET", runner.url("/api/vps/77/vm-status"))[0] == 404
        finally:
            kill_qemus_of(inst)


def _tap(task_id):
    import hashlib
    return hashlib.sha3_224(str(task_id).encode()).hexdigest()[:8]
