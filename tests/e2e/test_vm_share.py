"""A VM's 9p /local_temp share can never point outside what the runner made
for it (issue 16, point 1).

Every task and VPS container mounts LOCAL_TEMP_DIR read-write at
/local_temp; upstream shared {LOCAL_TEMP_DIR}/{id} with the VM (QEMU as
root, security_model=passthrough), so a container could replace
/local_temp/{id} with a symlink and the VM's next start or restart shared
the symlink's target. Here a real task container on the real dockerd plants
that symlink; a real QEMU (TCG, blank disk, in a network namespace: no
guest boot) is created and restarted, and what QEMU really opened for the
share (its open descriptors) is checked, not only its command line. A VM
saved by an older runner (share still in LOCAL_TEMP_DIR) is relaunched with
its share moved."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from taskutil import IMAGE, docker, final_report, http, new_task_id, remove_task_containers, submit
from test_vm_service import _need_vm_tools, host_any, vm_body, vm_dirs  # noqa: F401
from vmutil import VmNetns, kill_qemus_of, qemu_alive, start_in_netns, wait_until

VM_ID = 4242


def local_share_arg(pid):
    """The path= of QEMU's fs_local -fsdev (the guest's /local_temp)."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    for a in args:
        if a.startswith("local,id=fs_local,"):
            return next(f[5:] for f in a.split(",") if f.startswith("path="))
    raise AssertionError(f"no fs_local share in {args}")


def open_dirs(pid):
    """Directories QEMU holds open (its 9p backend keeps the share's root open)."""
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if os.path.isdir(target):
            out.add(os.path.realpath(target))
    return out


def assert_share_is_safe(pid, inst, local, victim):
    share = local_share_arg(pid)
    held = open_dirs(pid)
    assert str(victim) not in held, f"QEMU shares the tenant's symlink target {victim}: -fsdev path={share}"
    assert not os.path.islink(share) and os.path.realpath(share) == share, share
    assert share == str(inst / str(VM_ID) / "local_temp"), share
    assert share in held, (share, held)  # what QEMU really opened
    assert not share.startswith(str(local) + "/"), share


def plant_symlink(host, runner, local, target):
    """A task container replaces /local_temp/{VM_ID} with a symlink to `target`."""
    tid = new_task_id()
    submit(runner, tid, f"sh -c 'rm -rf /local_temp/{VM_ID}; ln -s {target} /local_temp/{VM_ID}; ls -l /local_temp'")
    assert final_report(host, tid, timeout=120)["status"] == "completed", host.updates_for(tid)
    assert os.readlink(local / str(VM_ID)) == str(target)


def test_container_symlink_cannot_redirect_a_vm_share(host_any, make_runner, tmp_path):
    _need_vm_tools()
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("Docker Engine is not reachable (scripts/ensure-dockerd.sh)")
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: tests/images/build-test-images.sh builds it")
    host = host_any
    cfg = vm_dirs(tmp_path)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{cfg['VM_IMAGES_DIR']}/blank.qcow2", "64M"], check=True)
    inst = Path(cfg["VM_INSTANCES_DIR"])
    victim = tmp_path / "victim"  # stands for "/" or any host directory
    victim.mkdir()
    (victim / "host-file").write_text("the node's\n")
    remove_task_containers()
    with VmNetns() as ns:
        try:
            _share(ns, host, make_runner, cfg, inst, tmp_path, victim)
        finally:
            kill_qemus_of(inst)
            remove_task_containers()


def _share(ns, host, make_runner, cfg, inst, tmp_path, victim):
    cfg = dict(cfg, HOST_ADDRESS=ns.outer_ip, VM_CLOUD_INIT_TIMEOUT_SECONDS=3600, VM_POWERDOWN_TIMEOUT_SECONDS=1)
    runner = start_in_netns(make_runner(host, start=False, **cfg), ns)
    local = Path(runner.config["LOCAL_TEMP_DIR"])

    # ---- create after the container planted the symlink
    plant_symlink(host, runner, local, victim)
    status, body = http("POST", runner.url("/api/vps/create"), vm_body(VM_ID, ssh_port=40042), timeout=120)
    assert status == 200, (status, body, runner.output()[-3000:])
    pid = http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]["pid"]
    assert_share_is_safe(pid, inst, local, victim)
    assert os.listdir(victim) == ["host-file"]  # nothing made through the link
    saved = json.loads((inst / str(VM_ID) / "qemu_cmd.json").read_text())
    assert f"local,id=fs_local,path={inst}/{VM_ID}/local_temp,security_model=passthrough" in saved

    # ---- restart after a guest chmod of its share root and a fresh symlink
    os.chmod(inst / str(VM_ID) / "local_temp", 0o777)
    plant_symlink(host, runner, local, victim)
    assert http("POST", runner.url(f"/api/vps/{VM_ID}/vm-restart"), timeout=15)[0] == 200
    wait_until(lambda: (s := http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]).get("pid") not in (None, pid)
               and qemu_alive(s["pid"]), 90, "the restarted QEMU")
    pid = http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]["pid"]
    assert_share_is_safe(pid, inst, local, victim)
    assert os.stat(inst / str(VM_ID) / "local_temp").st_mode & 0o7777 == 0o755

    # ---- a VM saved by an older runner (share in LOCAL_TEMP_DIR): the next
    # relaunch moves the share (never through a link) and rewrites the argv
    runner.stop()
    cmd_json = inst / str(VM_ID) / "qemu_cmd.json"
    legacy = local / str(VM_ID)
    argv = [a.replace(f"{inst}/{VM_ID}/local_temp", str(legacy)) for a in json.loads(cmd_json.read_text())]
    cmd_json.write_text(json.dumps(argv))
    legacy.unlink()
    legacy.mkdir()
    (legacy / "old-data.txt").write_text("kept across the move\n")
    os.symlink(victim, legacy / "link-out")
    runner = start_in_netns(make_runner(host, start=False, **cfg), ns)
    wait_until(lambda: http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[0] == 200, 60, "the re-adopted VM")
    wait_until(lambda: "the share moves into" in runner.output(), 30, "the warning about the adopted QEMU's share")
    assert http("POST", runner.url(f"/api/vps/{VM_ID}/vm-restart"), timeout=15)[0] == 200
    wait_until(lambda: (s := http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]).get("pid") not in (None, pid)
               and qemu_alive(s["pid"]), 90, "the QEMU relaunched from the old command line")
    pid = http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]["pid"]
    assert_share_is_safe(pid, inst, local, victim)
    share = inst / str(VM_ID) / "local_temp"
    assert (share / "old-data.txt").read_text() == "kept across the move\n"
    assert os.readlink(share / "link-out") == str(victim)  # copied as a link, not followed
    assert not legacy.exists() and sorted(os.listdir(victim)) == ["host-file"]
    assert f"local,id=fs_local,path={share},security_model=passthrough" in json.loads(cmd_json.read_text())

    # The same old command line with a tenant's symlink at the old place:
    # nothing is copied from (or removed in) the link's target.
    runner.stop()
    cmd_json.write_text(json.dumps(argv))
    os.symlink(victim, legacy)
    runner = start_in_netns(make_runner(host, start=False, **cfg), ns)
    wait_until(lambda: http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[0] == 200, 60, "the re-adopted VM")
    assert http("POST", runner.url(f"/api/vps/{VM_ID}/vm-restart"), timeout=15)[0] == 200
    wait_until(lambda: (s := http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]).get("pid") not in (None, pid)
               and qemu_alive(s["pid"]), 90, "the second relaunch")
    pid = http("GET", runner.url(f"/api/vps/{VM_ID}/vm-status"))[1]["pid"]
    assert_share_is_safe(pid, inst, local, victim)
    assert not (share / "host-file").exists()
    assert os.readlink(legacy) == str(victim) and sorted(os.listdir(victim)) == ["host-file"]

    assert http("POST", runner.url(f"/api/vps/stop/{VM_ID}"), timeout=60) == (200, {"message": f"VPS {VM_ID} stopped."})
    assert not qemu_alive(pid)
