"""Runner-side access to a VM over SSH and the VM port forward, against the
real runner (vm.md §1, §7.4, §11.4; execution.md §6.3, §6.4, §7.4;
tunnel-overlay.md §2.3.3, ruling T8).

Like test_vm_service's lifecycle test, the runner runs in a network
namespace with VM_QEMU_ACCEL=tcg and a blank base image (QEMU runs, no
guest boots). What the runner believes is the VM's address, 10.200.0.10, is
given to the namespace's bridge, and a real OpenSSH sshd listens there with
the runner's generated public key in its authorized_keys: the terminal, the
filesystem API and the watch then go through libssh to that sshd exactly as
they would to a guest (the "guest" filesystem is this machine's, so the
test works in its own directory). TCP and UDP echo servers on the same
address stand in for services inside the VM."""
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from taskutil import http
from test_vm_service import _need_vm_tools, host_any, vm_body, vm_dirs  # noqa: F401
from vmutil import VmNetns, kill_qemus_of, start_in_netns, wait_until
from wsclient import CLOSE, CONNECTED, DATA, ERROR, Forward, WsClosed
from wsutil import read_until, recv_json, send_json, websocket

VM_IP = "10.200.0.10"


def _inotifywaits_of(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"inotifywait") and str(path).encode() in argv:
            found.append(proc.name)
    return found

SSHD_CONFIG = """ListenAddress {ip}
Port 22
HostKey {host_key}
AuthorizedKeysFile {auth}
StrictModes no
UsePAM no
PidFile none
PermitRootLogin yes
PasswordAuthentication no
"""

ECHO = r"""
import socket, sys, threading
ip, tport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, uport))
def udp():
    while True:
        data, peer = u.recvfrom(65536)
        u.sendto(b"udp:" + data, peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, tport)); t.listen(8)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = t.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
PROBE = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"


def test_vm_terminal_fs_watch_and_forward_over_ssh(host_any, make_runner, tmp_path):  # noqa: F811
    _need_vm_tools()
    sshd = Path("/usr/sbin/sshd")
    if not sshd.exists():
        pytest.fail("/usr/sbin/sshd is required (openssh-server: scripts/install-deps.sh --test)")
    cfg = vm_dirs(tmp_path)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{cfg['VM_IMAGES_DIR']}/blank.qcow2", "64M"], check=True)
    inst = Path(cfg["VM_INSTANCES_DIR"])
    home = tmp_path / "home"
    home.mkdir()
    procs = []
    with VmNetns() as ns:
        try:
            _run(ns, host_any, make_runner, cfg, home, tmp_path, procs)
        finally:
            for p in procs:
                p.kill()
                p.wait()
            kill_qemus_of(inst)


def _run(ns, host, make_runner, cfg, home, tmp_path, procs):
    cfg = dict(cfg, HOST_ADDRESS=ns.outer_ip, VM_CLOUD_INIT_TIMEOUT_SECONDS=3600, VM_POWERDOWN_TIMEOUT_SECONDS=2)
    runner = start_in_netns(make_runner(host, start=False, env={"HOME": str(home)}, **cfg), ns)
    base = f"{ns.inner_ip}:{runner.port}"

    # ---- the runner made its key at startup: ed25519, OpenSSH format, 0600
    key = home / ".kohakuriver" / "runner_ssh_key"
    wait_until(lambda: (key.parent / "runner_ssh_key.pub").exists(), 20, "the runner SSH key")
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600
    pub = (key.parent / "runner_ssh_key.pub").read_text().strip()
    assert pub.startswith("ssh-ed25519 ")
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == pub.split()[:2]

    # ---- a VM; its seed carries the runner key next to the user's (§7.4)
    status, body = http("POST", f"http://{base}/api/vps/create", vm_body(42), timeout=120)
    assert status == 200 and body["vm_ip"] == VM_IP, (status, body, runner.output()[-3000:])
    seed = (Path(cfg["VM_INSTANCES_DIR"]) / "42" / "seed.iso").read_bytes()
    assert pub.split()[1].encode() in seed
    assert b"AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests" in seed

    # Before anything listens on the VM's port 22: a clear failure, no hang.
    status, body = http("GET", f"http://{base}/api/fs/42/list?path=/", timeout=60)
    assert status == 500 and body["detail"].startswith("ls failed: SSH error: "), body

    # ---- "be" the VM: its address on the bridge, a real sshd there
    ns.exec("ip", "addr", "add", f"{VM_IP}/32", "dev", "kohaku-br0")
    sshd_dir = tmp_path / "sshd"
    sshd_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(sshd_dir / "host_key")], check=True)
    (sshd_dir / "authorized_keys").write_text(pub + "\n")
    (sshd_dir / "sshd_config").write_text(SSHD_CONFIG.format(ip=VM_IP, host_key=sshd_dir / "host_key",
                                                             auth=sshd_dir / "authorized_keys"))
    os.makedirs("/run/sshd", exist_ok=True)
    procs.append(ns.popen("/usr/sbin/sshd", "-D", "-e", "-f", str(sshd_dir / "sshd_config")))
    wait_until(lambda: ns.exec("python3", "-c", PROBE, VM_IP, "22", check=False).returncode == 0, 20, "sshd")

    # ---- filesystem API over SSH (execution.md §6.3)
    d = tmp_path / "guest"
    d.mkdir()
    api = f"http://{base}/api/fs/42"
    status, body = http("POST", f"{api}/write", {"path": f"{d}/sub/a.txt", "content": "hello vm\n"}, timeout=60)
    assert (status, body) == (200, {"path": f"{d}/sub/a.txt", "size": 9, "success": True}), body
    assert (d / "sub" / "a.txt").read_text() == "hello vm\n"
    blob = bytes(range(256)) * 1024  # 256 KiB, binary: above the argv limit upstream's echo hit
    status, body = http("POST", f"{api}/write", {"path": f"{d}/b.bin", "content": base64.b64encode(blob).decode(),
                                                 "encoding": "base64"}, timeout=60)
    assert status == 200 and body["size"] == len(blob), body
    assert (d / "b.bin").read_bytes() == blob
    status, body = http("GET", f"{api}/read?path={d}/b.bin&encoding=base64", timeout=60)
    assert status == 200 and base64.b64decode(body["content"]) == blob and body["truncated"] is False
    status, body = http("GET", f"{api}/read?path={d}/sub/a.txt", timeout=60)
    assert status == 200 and body["content"] == "hello vm\n" and body["encoding"] == "utf-8"
    status, body = http("GET", f"{api}/list?path={d}", timeout=60)
    assert status == 200 and sorted(e["name"] for e in body["entries"]) == ["b.bin", "sub"], body
    assert body["parent"] == str(d.parent)
    status, body = http("GET", f"{api}/stat?path={d}/b.bin", timeout=60)
    assert status == 200 and body["type"] == "file" and body["size"] == len(blob) and body["is_binary"], body
    assert http("POST", f"{api}/mkdir", {"path": f"{d}/new/deep"}, timeout=60)[0] == 200
    assert (d / "new" / "deep").is_dir()
    status, body = http("POST", f"{api}/rename", {"source": f"{d}/sub/a.txt", "destination": f"{d}/b.bin"}, timeout=60)
    assert status == 409, body
    assert http("POST", f"{api}/rename", {"source": f"{d}/sub/a.txt", "destination": f"{d}/c.txt"}, timeout=60)[0] == 200
    assert (d / "c.txt").exists() and not (d / "sub" / "a.txt").exists()
    status, body = http("DELETE", f"{api}/delete?path={d}/new", timeout=60)
    assert status == 400 and "recursive" in body["detail"], body
    assert http("DELETE", f"{api}/delete?path={d}/new&recursive=true", timeout=60)[0] == 200
    assert not (d / "new").exists()
    status, body = http("GET", f"{api}/read?path={d}/missing", timeout=60)
    assert (status, body) == (404, {"detail": f"File not found: {d}/missing"})
    assert http("GET", f"http://{base}/api/fs/99/list?path=/", timeout=60) == \
        (404, {"detail": "Task 99 not found on this runner."})

    # ---- terminal over SSH (execution.md §7.4): PTY of the client's size
    ws = websocket.create_connection(f"ws://{base}/ws/task/42/terminal", timeout=30)
    try:
        send_json(ws, {"type": "resize", "rows": 30, "cols": 100})
        assert recv_json(ws) == {"type": "output", "data": ""}
        send_json(ws, {"type": "input", "data": "stty size; echo MARK$((6*7)) TERM=$TERM\n"})
        out = read_until(ws, "MARK42 TERM=xterm-256color", timeout=30)
        assert "30 100" in out, out
        send_json(ws, {"type": "resize", "rows": 50, "cols": 160})
        time.sleep(0.3)
        send_json(ws, {"type": "input", "data": "stty size; echo $((40+2))DONE\n"})
        out = read_until(ws, "42DONE", timeout=30)
        assert "50 160" in out, out
        send_json(ws, {"type": "input", "data": "exit\n"})
        # The shell's end ends the session.
        with pytest.raises((websocket.WebSocketConnectionClosedException, AssertionError, TimeoutError)):
            read_until(ws, "\x01never", timeout=20)
    finally:
        ws.close()

    # ---- watch over SSH (§6.4): inotifywait in the "VM" when it has one
    ws = websocket.create_connection(f"ws://{base}/ws/fs/42/watch?paths={d}", timeout=30)
    try:
        first = recv_json(ws, timeout=60)
        assert first["type"] == "watching" and first["paths"] == [str(d)], first
        (d / "watched.txt").write_text("x")
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            m = recv_json(ws, timeout=deadline - time.monotonic())
            seen.append(m)
            if m.get("type") == "change" and m["path"] == f"{d}/watched.txt" and m["event"] == "CREATE":
                break
        else:
            raise AssertionError(f"no CREATE for watched.txt: {seen}")
        send_json(ws, {"type": "ping"})
        while (m := recv_json(ws, timeout=30))["type"] != "pong":
            pass
    finally:
        ws.close()
    # Nothing changes in the directory any more, so inotifywait writes
    # nothing and gets no SIGPIPE: it must end with its channel (it used to
    # live on, re-parented to init).
    wait_until(lambda: not _inotifywaits_of(d), timeout=20, what="the watch's inotifywait to end with its channel")

    # ---- port forward into the VM (tunnel-overlay.md §2.3.3, T8)
    procs.append(ns.popen("python3", "-c", ECHO, VM_IP, "7000", "7001"))
    wait_until(lambda: ns.exec("python3", "-c", PROBE, VM_IP, "7000", check=False).returncode == 0, 20, "echo")
    f = Forward(runner.port, "vm-42", 7000, "tcp", host=ns.inner_ip)
    try:
        f.connect(1, 7000)
        assert f.q(1).get(timeout=20) == (CONNECTED, b"")
        payload = os.urandom(300_000)
        f.send(1, payload)
        got = b""
        while len(got) < len(payload):
            mtype, data = f.next(1, timeout=30)
            assert mtype == DATA, (mtype, data)
            got += data
        assert got == payload
        f.close_id(1)
        # A port nobody listens on: ERROR with the reason, the session goes on.
        f.connect(2, 7999)
        mtype, data = f.next(2, timeout=30)
        assert mtype == ERROR and data.decode().startswith("Connection failed: "), (mtype, data)
    finally:
        f.close()
    u = Forward(runner.port, "vm-42", 7001, "udp", host=ns.inner_ip)
    try:
        u.connect(5, 7001)
        assert u.q(5).get(timeout=20) == (CONNECTED, b"")
        for i in range(3):  # one DATA = one datagram, both ways
            u.send(5, f"ping{i}".encode())
            assert u.next(5, timeout=20) == (DATA, f"udp:ping{i}".encode())
        u.close_id(5)
    finally:
        u.close()
    with pytest.raises(WsClosed) as e:
        Forward(runner.port, "vm-99", 7000, "tcp", host=ns.inner_ip)
    assert str(e.value) == "Error: Cannot resolve VM target: vm-99"

    # ---- stop: nothing of the VM left; SSH access ends with it
    assert http("POST", f"http://{base}/api/vps/stop/42", timeout=60)[0] == 200
    assert http("GET", f"http://{base}/api/fs/42/list?path=/", timeout=60)[0] == 404
