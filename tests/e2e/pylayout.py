"""What the Python runner (upstream KohakuRiver, commit 6506617) leaves on a
node when its systemd unit stops it (`KillMode=process`: only the runner
process is killed; its `docker run` children and their containers live on).

Everything here is made the way upstream makes it, with the upstream source
lines cited, so the switch tests run against the real layout:
  * task containers: the exact `docker run --rm` argv of
    runner/services/task_executor.py build_docker_run_command (lines 235-405),
    spawned attached by a parent process (execute_task, lines 688-699:
    asyncio.create_subprocess_exec with stdout/stderr pipes) that then dies;
  * its state store LOCAL_TEMP_DIR/.kohakuriver/runner-state.db
    (runner/config.py get_state_db_path, lines 140-148): a KohakuVault
    (SQLite) file, table `running_tasks` (storage/vault.py TaskStateStore,
    lines 152-192), key str(task_id), value = KohakuVault's 10-byte header
    (encoding 4, MessagePack) + a MessagePack map, in WAL mode, with the
    last writes still in the -wal because the writer was killed.
"""
import os
import shlex
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

DOCKER = "/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker") else "docker"

# kohakuvault kv/header.rs: magic 0x89 'K', version 1, encoding 4
# (MessagePack), flags 0, 3 reserved bytes, magic 'V' 'K'.
KVAULT_MSGPACK_HEADER = b"\x89K\x01\x04\x00\x00\x00\x00VK"

# Bytes the real KohakuVault 1.1.0 wrote for TaskStateStore.add_task(12,
# "kohakuriver-task-12") (captured once from the library; the encoder below
# must reproduce them).
REAL_KVAULT_VALUE_12 = (b"\x89K\x01\x04\x00\x00\x00\x00VK\x85\xafallocated_cores\x90\xaeallocated_gpus\x90"
                        b"\xaecontainer_name\xb3kohakuriver-task-12\xa9numa_node\xc0\xa7task_id\x0c")


def msgpack(v) -> bytes:
    """The MessagePack subset the store's values use (rmp-serde as used by
    KohakuVault: maps with sorted keys as Python dicts iterate them after
    PyO3 conversion — the runner's dicts are packed key-sorted)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if 0 <= v < 1 << 8:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v < 1 << 16:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v < 1 << 64:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(msgpack(x) for x in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(msgpack(k) + msgpack(v[k]) for k in sorted(v))
    raise TypeError(v)


def task_entry(task_id: int, container_name: str) -> bytes:
    # storage/vault.py TaskStateStore.add_task, lines 180-186.
    return KVAULT_MSGPACK_HEADER + msgpack({"task_id": task_id, "container_name": container_name,
                                            "allocated_cores": [], "allocated_gpus": [], "numa_node": None})


# The Python runner's own KohakuVault connection, in a process of its own so
# that it can be killed like the runner: its writes stay in the -wal, no
# checkpoint (the test's own connection would checkpoint on close).
_STORE_WRITER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE IF NOT EXISTS kohakuvault_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
db.execute("CREATE TABLE IF NOT EXISTS running_tasks (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL)")
print("ready", flush=True)
for line in sys.stdin:
    key, value = line.split()
    db.execute("INSERT OR REPLACE INTO running_tasks VALUES (?, ?)", (bytes.fromhex(key), bytes.fromhex(value)))
    print("ok", flush=True)
"""


class PythonStateStore:
    """The store as the Python runner writes it (table definitions as
    KohakuVault creates them); kill() leaves it as a SIGKILLed runner does."""

    def __init__(self, local_temp_dir: str):
        d = Path(local_temp_dir) / ".kohakuriver"
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / "runner-state.db"
        self.writer = subprocess.Popen([sys.executable, "-c", _STORE_WRITER, str(self.path)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        assert self.writer.stdout.readline().strip() == "ready"

    def put(self, key: bytes, value: bytes):
        self.writer.stdin.write(f"{key.hex()} {value.hex()}\n")
        self.writer.stdin.flush()
        assert self.writer.stdout.readline().strip() == "ok"

    def add_task(self, task_id: int):
        self.put(str(task_id).encode(), task_entry(task_id, f"kohakuriver-task-{task_id}"))

    def kill(self):
        if self.writer.poll() is None:
            self.writer.send_signal(signal.SIGKILL)
            self.writer.wait(5)

    cleanup = kill

    def rows(self) -> dict:
        """What a later reader (the Python runner started again) sees."""
        self.kill()
        db = sqlite3.connect(self.path)
        try:
            return {bytes(k).decode(errors="replace"): bytes(v) for k, v in
                    db.execute("SELECT key, value FROM running_tasks")}
        finally:
            db.close()


# The parent that spawns `docker run` attached, like the Python runner's
# asyncio.create_subprocess_exec(..., stdout=PIPE, stderr=PIPE), prints the
# child's pid and waits for it. Killing this parent alone is KillMode=process.
_PARENT = r"""
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
print(p.pid, flush=True)
p.communicate()
"""


def docker_run_argv(cfg: dict, task_id: int, command: str, arguments: list, image: str) -> list:
    """build_docker_run_command (task_executor.py lines 235-405) with the
    Python runner's defaults: kohakuriver-net (config.py line 52), not
    privileged (--cap-add SYS_NICE, line 311), TUNNEL_ENABLED=False in its
    config (so no tunnel mount, env or wrapper, lines 328-330, 361-363, 391),
    no cores/memory/GPU limits, task env of _build_task_env (lines 482-506)."""
    name = f"kohakuriver-task-{task_id}"
    shared, local = cfg["SHARED_DIR"], cfg["LOCAL_TEMP_DIR"]
    argv = [DOCKER, "run", "--rm", "--name", name, "--network", "kohakuriver-net", "--cap-add", "SYS_NICE"]
    for mount in (f"{shared}/shared_data:/shared", f"{shared}/logs:/kohakuriver-logs", f"{local}:/local_temp"):
        host_path, container_path = mount.split(":")
        argv += ["--mount", f"type=bind,source={host_path},target={container_path}"]
    argv += ["--workdir", "/shared"]
    env = {"KOHAKURIVER_TASK_ID": str(task_id), "KOHAKURIVER_LOCAL_TEMP_DIR": local,
           "KOHAKURIVER_SHARED_DIR": shared}
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    argv.append(image)
    # Lines 372-388: container-side log paths, shell redirection, exec.
    inner = f"{command} {' '.join(shlex.quote(a) for a in arguments)}".strip()
    out = shlex.quote(f"/kohakuriver-logs/{task_id}/stdout.log")
    err = shlex.quote(f"/kohakuriver-logs/{task_id}/stderr.log")
    argv += ["/bin/sh", "-c", f"exec {inner} > {out} 2> {err}"]
    return argv


def ensure_python_network():
    # runner/app.py lines 213-243: kohakuriver-net, 172.30.0.0/16, gateway
    # 172.30.0.1 (config.py lines 52-56), created when missing.
    if subprocess.run([DOCKER, "network", "inspect", "kohakuriver-net"], capture_output=True).returncode != 0:
        subprocess.run([DOCKER, "network", "create", "--driver", "bridge", "--subnet", "172.30.0.0/16",
                        "--gateway", "172.30.0.1", "kohakuriver-net"], capture_output=True)


class PythonTask:
    """One task as the Python runner runs it: its log directory (execute_task
    lines 593-594), its store entry (add_task before spawning, lines 679-685),
    then the attached `docker run --rm`."""

    def __init__(self, cfg: dict, store: PythonStateStore, task_id: int, command: str, arguments: list, image: str):
        self.task_id = task_id
        self.name = f"kohakuriver-task-{task_id}"
        logs = Path(cfg["SHARED_DIR"]) / "logs" / str(task_id)
        logs.mkdir(parents=True, exist_ok=True)
        (Path(cfg["SHARED_DIR"]) / "shared_data").mkdir(parents=True, exist_ok=True)
        self.stdout_log = logs / "stdout.log"
        store.add_task(task_id)
        self.parent = subprocess.Popen([sys.executable, "-c", _PARENT,
                                        *docker_run_argv(cfg, task_id, command, arguments, image)],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        self.cli_pid = int(self.parent.stdout.readline())

    def wait_running(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run([DOCKER, "inspect", "-f", "{{.State.Running}}", self.name], capture_output=True,
                               text=True)
            if r.stdout.strip() == "true":
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} never ran")

    def kill_runner_only(self):
        """KillMode=process: SIGKILL to the runner process alone; the docker
        CLI child (now an orphan) and the container live on."""
        self.parent.send_signal(signal.SIGKILL)
        self.parent.wait(5)

    def cleanup(self):
        subprocess.run([DOCKER, "rm", "-f", self.name], capture_output=True)
        try:
            os.kill(self.cli_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- QEMU VMs
# What the Python runner leaves for a VM it started (standard network mode,
# no GPU), all read from its source:
#   * the QEMU argv of qemu/client.py _build_qemu_command (lines 612-714),
#     saved as instance_dir/qemu_cmd.json (_save_qemu_cmd, lines 593-600);
#     -daemonize with -pidfile instance_dir/qemu.pid (qemu/naming.py
#     vm_pidfile_path), QMP at /run/kohakuriver/vm/<id>.qmp (naming.py
#     vm_qmp_socket_path), 9p shares SHARED_DIR/shared_data and
#     LOCAL_TEMP_DIR/<id> (runner/services/vm_vps_manager.py
#     _build_vm_create_options, lines 112-135);
#   * instance_dir/vm-state.json and the store entry task_store[str(id)]
#     (vm_vps_manager.py _persist_vm_task_state, lines 138-186; container
#     name f"vm-{id}", line 340), json.dump(indent=2);
#   * TAP tap-<sha3_224(id)[:8]> on kohaku-br0 10.200.0.1/24
#     (vm_network_manager.py _tap_name lines 33-36, _create_tap_sync
#     lines 409-450) and its NAT rules (_setup_nat_firewall_rules, lines
#     211-265), see PYTHON_VM_NAT_RULES.

def python_qemu_argv(task_id: int, instance_dir: str, run_dir: str, cores: int, memory_mb: int, tap: str, mac: str,
                     shared_dir: str, local_temp_dir: str, accel: str = "kvm") -> list:
    """_build_qemu_command. accel="tcg" is the one change the tests make
    (KVM guests hang on the test machine): no -enable-kvm, accel=tcg and
    -cpu max for -cpu host. No OVMF_CODE file on the test machine, so no
    pflash drive (upstream leaves it out then, lines 622-660)."""
    argv = ["qemu-system-x86_64"]
    if accel == "kvm":
        argv.append("-enable-kvm")
    argv += ["-machine", f"q35,accel={accel}", "-cpu", "host" if accel == "kvm" else "max", "-smp", str(cores),
             "-m", f"{memory_mb}M", "-daemonize", "-pidfile", f"{instance_dir}/qemu.pid"]
    argv += ["-drive", f"file={instance_dir}/root.qcow2,format=qcow2,if=virtio,cache=writeback",
             "-drive", f"file={instance_dir}/seed.iso,format=raw,if=virtio,media=cdrom,readonly=on",
             "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
             "-qmp", f"unix:{run_dir}/{task_id}.qmp,server,nowait",
             "-serial", f"file:{instance_dir}/serial.log",
             "-display", "none", "-vga", "std",
             "-fsdev", f"local,id=fs_shared,path={shared_dir}/shared_data,security_model=passthrough",
             "-device", "virtio-9p-pci,fsdev=fs_shared,mount_tag=kohaku_shared",
             "-fsdev", f"local,id=fs_local,path={local_temp_dir}/{task_id},security_model=passthrough",
             "-device", "virtio-9p-pci,fsdev=fs_local,mount_tag=kohaku_local"]
    return argv


def python_vm_state(task_id: int, cores: int, vm_ip: str, tap: str, mac: str, ssh_port: int) -> dict:
    """_persist_vm_task_state's state_data, key order kept (standard mode:
    _create_standard_vm_network, vm_network_manager.py lines 370-389)."""
    return {"task_id": task_id, "container_name": f"vm-{task_id}", "allocated_cores": cores, "allocated_gpus": [],
            "numa_node": None, "vm_ip": vm_ip, "tap_device": tap, "mac_address": mac, "gpu_pci_addresses": [],
            "network_mode": "standard", "bridge_name": "kohaku-br0", "gateway": "10.200.0.1", "prefix_len": 24,
            "ssh_port": ssh_port}


# _setup_nat_firewall_rules: -t nat -A POSTROUTING, then -I FORWARD 1 for
# "-s" and for "-d" (so "-d" ends up first), as iptables-save prints them.
PYTHON_VM_NAT_RULES = ["-A POSTROUTING -s 10.200.0.0/24 ! -d 10.200.0.0/24 -j MASQUERADE",
                       "-A FORWARD -d 10.200.0.0/24 -j ACCEPT",
                       "-A FORWARD -s 10.200.0.0/24 -j ACCEPT"]
PYTHON_VM_NAT_COMMANDS = [["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.200.0.0/24", "!", "-d",
                           "10.200.0.0/24", "-j", "MASQUERADE"],
                          ["iptables", "-I", "FORWARD", "1", "-s", "10.200.0.0/24", "-j", "ACCEPT"],
                          ["iptables", "-I", "FORWARD", "1", "-d", "10.200.0.0/24", "-j", "ACCEPT"]]


def vm_store_entry(state: dict) -> bytes:
    return KVAULT_MSGPACK_HEADER + msgpack(state)


# ---------------------------------------------------------------- Docker VPS
def python_vps_argv(cfg: dict, task_id: int, image: str, ssh_public_key: str, cores: int) -> list:
    """runner/services/vps_creation.py _build_vps_docker_command (lines
    70-225) as create_vps calls it (lines 520-560): registry image used as
    is, mounts SHARED_DIR/shared_data:/shared and LOCAL_TEMP_DIR:/local_temp,
    workdir /shared, kohakuriver-net (no overlay), -p 0:22, SYS_NICE, no
    tunnel (TUNNEL_ENABLED=False), no memory limit or GPU, "upload" mode's
    setup (lines 195-210, apt for a debian image: _detect_package_manager)."""
    setup = ("apt update && apt install -y openssh-server && ssh-keygen -A && "
             "echo 'PasswordAuthentication no' >> /etc/ssh/sshd_config && "
             "echo 'PermitRootLogin yes' >> /etc/ssh/sshd_config && "
             "mkdir -p /run/sshd && chmod 0755 /run/sshd && mkdir -p /root/.ssh && "
             f"echo '{ssh_public_key}' > /root/.ssh/authorized_keys && "
             "chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys && /usr/sbin/sshd -D -e")
    argv = [DOCKER, "run", "--restart", "unless-stopped", "-d", "--name", f"kohakuriver-vps-{task_id}",
            "--network", "kohakuriver-net", "-p", "0:22", "--cap-add", "SYS_NICE"]
    for host_path, target in ((f"{cfg['SHARED_DIR']}/shared_data", "/shared"), (cfg["LOCAL_TEMP_DIR"], "/local_temp")):
        argv += ["--mount", f"type=bind,source={host_path},target={target}"]
    argv += ["--workdir", "/shared", "--cpus", str(cores), image, "/bin/sh", "-c", setup]
    return argv


def store_entry(task_id: int, container_name: str, cores: int = 0) -> bytes:
    # TaskStateStore.add_task as _finalize_vps_creation calls it (lines 412-418).
    return KVAULT_MSGPACK_HEADER + msgpack({"task_id": task_id, "container_name": container_name,
                                            "allocated_cores": cores, "allocated_gpus": [], "numa_node": None})


# ---------------------------------------------------------------- overlay
def python_overlay_commands(alloc: dict, runner_physical_ip: str, base_vni: int = 100, mtu: int = 1450) -> list:
    """What runner/services/overlay_manager.py RunnerOverlayManager.setup
    does (lines 85-115, defaults base VNI 100, port 4789, MTU 1450 of
    lines 62-75), as commands: the bridge kohaku-overlay with the gateway
    (_ensure_bridge_sync, lines 140-188), vxlan0 unicast to the host,
    learning off (_ensure_vxlan_sync, lines 190-262), enslaved
    (lines 265-288), the overlay route via the host's address on this
    runner's subnet (_ensure_overlay_routes, lines 329-364), FORWARD
    inserted at 1 and 2 and the NAT rule (_setup_firewall_rules, lines
    366-450), then the Docker network on that bridge
    (_setup_docker_network_sync, lines 489-537)."""
    cidr, gw, prefix = alloc["overlay_network_cidr"], alloc["overlay_gateway"], alloc["overlay_subnet"].split("/")[1]
    return [
        ["ip", "link", "add", "kohaku-overlay", "type", "bridge"],
        ["ip", "link", "set", "kohaku-overlay", "mtu", str(mtu), "up"],
        ["ip", "addr", "add", f"{gw}/{prefix}", "dev", "kohaku-overlay"],
        ["ip", "link", "add", "vxlan0", "type", "vxlan", "id", str(base_vni + alloc["runner_id"]), "local",
         runner_physical_ip, "remote", alloc["host_physical_ip"], "dstport", "4789", "nolearning"],
        ["ip", "link", "set", "vxlan0", "mtu", str(mtu), "up"],
        ["ip", "link", "set", "vxlan0", "master", "kohaku-overlay"],
        ["ip", "route", "add", cidr, "via", alloc["host_ip_on_runner_subnet"]],
        ["iptables", "-I", "FORWARD", "1", "-s", cidr, "-j", "ACCEPT"],
        ["iptables", "-I", "FORWARD", "2", "-d", cidr, "-j", "ACCEPT"],
        ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", cidr, "!", "-d", cidr, "-j", "MASQUERADE"],
        [DOCKER, "network", "create", "--driver", "bridge", "--subnet", alloc["overlay_subnet"], "--gateway", gw,
         "-o", "com.docker.network.bridge.name=kohaku-overlay", "-o", f"com.docker.network.driver.mtu={mtu}",
         "-o", "com.docker.network.bridge.enable_icc=true",
         "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "kohakuriver-overlay"],
    ]


def python_overlay_rule_removals(alloc: dict) -> list:
    cidr = alloc["overlay_network_cidr"]
    return [["iptables", "-D", "FORWARD", "-s", cidr, "-j", "ACCEPT"],
            ["iptables", "-D", "FORWARD", "-d", cidr, "-j", "ACCEPT"],
            ["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", cidr, "!", "-d", cidr, "-j", "MASQUERADE"]]


# Upstream's own code, in a venv with upstream installed
# (KR_UPSTREAM_VENV, see scripts/upstream-interop.sh).
_UPSTREAM_OVERLAY = r"""
import asyncio, json, sys
from kohakuriver.runner.services.overlay_manager import OverlayConfig, RunnerOverlayManager
a, phys = json.loads(sys.argv[1]), sys.argv[2]
asyncio.run(RunnerOverlayManager().setup(OverlayConfig(
    runner_id=a["runner_id"], subnet=a["overlay_subnet"], gateway=a["overlay_gateway"],
    host_overlay_ip=a["host_overlay_ip"], host_physical_ip=a["host_physical_ip"], runner_physical_ip=phys,
    overlay_network_cidr=a["overlay_network_cidr"], host_ip_on_runner_subnet=a["host_ip_on_runner_subnet"])))
print("upstream overlay set up", flush=True)
"""


def make_python_overlay(alloc: dict, runner_physical_ip: str) -> str:
    """Builds the Python runner's overlay: with upstream's own code when
    KR_UPSTREAM_VENV names a venv that has it, else with the commands
    above. Returns which."""
    import json
    venv = os.environ.get("KR_UPSTREAM_VENV")
    if venv:
        subprocess.run([f"{venv}/bin/python", "-c", _UPSTREAM_OVERLAY, json.dumps(alloc), runner_physical_ip],
                       check=True, capture_output=True, text=True, timeout=120)
        return "upstream code"
    for cmd in python_overlay_commands(alloc, runner_physical_ip):
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    return "reproduction"
