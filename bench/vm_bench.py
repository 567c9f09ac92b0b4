#!/usr/bin/env python3
"""QEMU VM benchmarks (issue: QEMU VM VPS), against the real runner started
inside a network namespace without an uplink (as the VM tests do), QEMU under
TCG:

  1. boot: create -> agent phone-home (`running` reported to the host) and
     create -> first SSH login with the user's key through the runner's SSH
     port, with tests/images/build-vm-image.sh's Debian image (1 vCPU,
     1024 MiB). Recorded, no ratio target under emulation.
  2. runner RSS: fresh, then with --vms VMs tracked (blank 64 MiB disks:
     QEMU runs, no guest OS; the runner's own cost per tracked VM is what is
     measured, not the guests'), then after they are stopped.

The load average before and after is printed with the results.

Usage: bench/vm_bench.py [--vms 3] [--no-boot]
Needs: build/kohakuriver, qemu-system-x86_64, ip, iptables, ssh, and for
the boot part the cached image (tests/images/build-vm-image.sh). Run as
root; hold the e2e lock exclusively (flock -x /tmp/kr-e2e.lock ...).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from conftest import RunnerProcess, free_port  # noqa: E402
from fixture_host import FixtureHost  # noqa: E402
from taskutil import http  # noqa: E402
from tunnelutil import rss_kib  # noqa: E402
from vmutil import VmNetns, kill_qemus_of, start_in_netns  # noqa: E402

IMAGES = Path(os.environ.get("KR_VM_IMAGES_DIR", "/var/cache/kr-test/vm-images"))


def vm_body(task_id, **fields):
    body = {"task_id": str(task_id), "required_cores": 1, "required_gpus": [], "required_memory_bytes": None,
            "target_numa_node_id": None, "container_name": "", "registry_image": None, "ssh_key_mode": "disabled",
            "ssh_public_key": None, "ssh_port": free_port(), "reserved_ip": None, "vps_backend": "qemu",
            "vm_image": "blank", "vm_disk_size": "1G", "memory_mb": 64}
    body.update(fields)
    return body


def ssh_ok(key, host, port):
    r = subprocess.run(["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                        "-o", "LogLevel=ERROR", f"root@{host}", "true"], capture_output=True, timeout=30)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=3)
    ap.add_argument("--no-boot", action="store_true")
    ap.add_argument("--boot-limit", type=int, default=1500)
    a = ap.parse_args()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="kr-vm-bench."))
    dirs = {k: tmp / k.lower() for k in ("VM_IMAGES_DIR", "VM_INSTANCES_DIR", "VM_RUN_DIR")}
    for d in dirs.values():
        d.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(dirs["VM_IMAGES_DIR"] / "blank.qcow2"), "64M"],
                   check=True)
    image = IMAGES / "debian-12-kr.qcow2"
    if not a.no_boot:
        if not image.is_file():
            sys.exit(f"{image} missing: run tests/images/build-vm-image.sh (or pass --no-boot)")
        os.symlink(image, dirs["VM_IMAGES_DIR"] / image.name)
    home = tmp / "home"
    home.mkdir()
    host = FixtureHost(bind="0.0.0.0").start()
    results = {}
    with VmNetns() as ns:
        cfg = {k: str(v) for k, v in dirs.items()}
        cfg.update(VM_QEMU_ACCEL="tcg", VM_FIRMWARE="", HOST_ADDRESS=ns.outer_ip, LOG_LEVEL="info",
                   VM_CLOUD_INIT_TIMEOUT_SECONDS=a.boot_limit, VM_POWERDOWN_TIMEOUT_SECONDS=2)
        runner = RunnerProcess(tmp, host, cfg, [], {"HOME": str(home)})
        start_in_netns(runner, ns)
        base = f"http://{ns.inner_ip}:{runner.port}"
        try:
            time.sleep(2)
            rss = {"fresh_KiB": rss_kib(runner.proc.pid)}
            ids = list(range(101, 101 + a.vms))
            for tid in ids:
                status, res = http("POST", f"{base}/api/vps/create", vm_body(tid), timeout=120)
                assert status == 200, (status, res, runner.output()[-2000:])
            time.sleep(3)
            rss[f"with_{a.vms}_vms_KiB"] = rss_kib(runner.proc.pid)
            for tid in ids:
                assert http("POST", f"{base}/api/vps/stop/{tid}", timeout=60)[0] == 200
            time.sleep(1)
            rss["after_stop_KiB"] = rss_kib(runner.proc.pid)
            rss["per_vm_KiB"] = (rss[f"with_{a.vms}_vms_KiB"] - rss["fresh_KiB"]) / a.vms
            results["runner_rss"] = rss

            if not a.no_boot:
                key = tmp / "user_key"
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
                port = free_port()
                body = vm_body(42, vm_image="debian-12-kr", vm_disk_size="4G", memory_mb=1024, ssh_port=port,
                               ssh_key_mode="upload", ssh_public_key=(tmp / "user_key.pub").read_text().strip())
                t0 = time.monotonic()
                status, res = http("POST", f"{base}/api/vps/create", body, timeout=300)
                assert status == 200, (status, res)
                t_create = time.monotonic() - t0
                host.wait_for("update", timeout=a.boot_limit,
                              pred=lambda r: r.json()["task_id"] == 42 and r.json()["status"] == "running"
                              and r.json()["message"] == "")
                t_home = time.monotonic() - t0
                while not ssh_ok(key, ns.inner_ip, port):
                    if time.monotonic() - t0 > a.boot_limit + 300:
                        raise SystemExit("no SSH login")
                    time.sleep(1)
                t_ssh = time.monotonic() - t0
                results["boot_seconds"] = {"create_request": round(t_create, 1),
                                           "create_to_phone_home": round(t_home, 1),
                                           "create_to_ssh_login": round(t_ssh, 1)}
                results["runner_rss"]["with_booted_vm_KiB"] = rss_kib(runner.proc.pid)
                http("POST", f"{base}/api/vps/stop/42", timeout=120)
        finally:
            runner.stop()
            kill_qemus_of(dirs["VM_INSTANCES_DIR"])
            host.stop()
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
