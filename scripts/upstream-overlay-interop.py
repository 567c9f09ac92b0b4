#!/usr/bin/env python3
"""Manual check: the unmodified upstream host with OVERLAY_ENABLED drives our
runner's VXLAN overlay. Not part of CI (the upstream source is not vendored).

    flock -x /tmp/kr-e2e.lock scripts/upstream-overlay-interop.py VENV

VENV: a virtualenv with upstream installed (`pip install <upstream tree>
"fastapi==0.115.12"`, see scripts/upstream-interop.sh). Uses the namespace
underlay of tests/e2e/test_overlay.py: the upstream host runs inside the hub
namespace (HOST_REACHABLE_ADDRESS 203.0.113.1), our runner in the root
namespace with real Docker, and a scripted second runner side registers with
the host through its API and builds what the reply tells it. The kernel here
has no `dummy` driver, so the host's `kohaku-host` link is pre-created as an
(empty) bridge, which the host then reuses. Changes host-wide state: hold
the e2e lock exclusively. Cleans up after itself.
"""
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import test_overlay as topo  # noqa: E402
from conftest import BINARY, RunnerProcess  # noqa: E402
from taskutil import docker, wait_until  # noqa: E402

HOST_PORT = 18800


def api(method, path, body=None, timeout=20):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{topo.HUB_PHYS}:{HOST_PORT}{path}", method=method, data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def main():
    venv = Path(sys.argv[1])
    w = Path(tempfile.mkdtemp(prefix="kr-overlay-interop-"))
    (w / "share" / "logs").mkdir(parents=True)
    topo.build_topology(hub_overlay=False, runner2=False)
    topo.ns("kro-hub", "ip", "link", "add", "kohaku-host", "type", "bridge")  # no dummy driver here
    (w / "host_config.py").write_text(f'''from kohakuengine import Config
HOST_BIND_IP = "{topo.HUB_PHYS}"
HOST_PORT = {HOST_PORT}
HOST_SSH_PROXY_PORT = 18802
HOST_REACHABLE_ADDRESS = "{topo.HUB_PHYS}"
OVERLAY_ENABLED = True
SHARED_DIR = "{w}/share"
DB_FILE = "{w}/kr.db"
def config_gen():
    return Config.from_globals()
''')
    host_log = open(w / "host.log", "wb")
    host = subprocess.Popen(["ip", "netns", "exec", "kro-hub", str(venv / "bin" / "kohakuriver.host"), "--config",
                             str(w / "host_config.py")], stdout=host_log, stderr=subprocess.STDOUT)
    runner = RunnerProcess(w, None, {"HOST_ADDRESS": topo.HUB_PHYS, "HOST_PORT": HOST_PORT}, [], None)
    container = None
    results = {}
    try:
        wait_until(lambda: subprocess.run(["ip", "netns", "exec", "kro-hub", "python3", "-c",
                                           f"import socket; socket.create_connection(('{topo.HUB_PHYS}', {HOST_PORT}), 1)"],
                                          capture_output=True).returncode == 0, timeout=60, what="upstream host up")
        runner.start()
        runner.wait_listening()

        def overlay_state():
            with urllib.request.urlopen(runner.url("/healthz"), timeout=5) as r:
                return json.loads(r.read()).get("overlay", {})
        wait_until(lambda: overlay_state().get("state") in ("ready", "failed"), timeout=60, what="overlay settled")
        st = overlay_state()
        results["runner overlay after registering with the upstream host"] = st
        assert st["state"] == "ready", st
        results["host vxkr devices"] = topo.ns("kro-hub", "ip", "-d", "-o", "link", "show", "type", "vxlan").stdout

        # A second runner side registers through the host's own API.
        reply = api("POST", "/api/register", {"hostname": "kro-r2", "url": f"http://{topo.R2_PHYS}:18901",
                                              "total_cores": 1, "total_ram_bytes": 1 << 30,
                                              "numa_topology": None, "gpu_info": None})
        results["second runner allocation"] = reply["overlay"]
        topo.build_runner2(reply["overlay"])
        c2 = reply["overlay"]["overlay_subnet"].split("/")[0].rsplit(".", 1)[0] + ".2"

        # A task with an address reserved through the host's reservation API.
        node = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
        res = api("POST", f"/api/overlay/ip/reserve?runner={node}")
        results["reservation"] = {k: res[k] for k in ("ip", "runner")}
        sub = api("POST", "/api/submit", {"command": "sleep", "arguments": ["300"], "registry_image": "kr-test/busybox:test",
                                          "targets": [node], "ip_reservation_token": res["token"]})
        tid = sub["task_ids"][0]
        container = f"kohakuriver-task-{tid}"
        wait_until(lambda: docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip() == "true",
                   timeout=90, what="task container running")
        nets = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout)
        ip = nets["kohakuriver-overlay"]["IPAddress"]
        results["task container address"] = ip
        results["reserved ip honoured"] = ip == res["ip"]
        for target in ("10.128.0.1", c2):
            ok = docker("exec", container, "ping", "-c", "3", "-W", "2", target, check=False).returncode == 0
            results[f"container -> {target}"] = ok
        results[f"{c2} -> container"] = topo.ns("kro-c2", "ping", "-c", "3", "-W", "2", ip, check=False).returncode == 0
        results["host status of task"] = api("GET", f"/api/status/{tid}")["status"]
    finally:
        print(json.dumps(results, indent=2))
        if container:
            docker("rm", "-f", container, check=False)
        runner.stop()
        host.terminate()
        host.wait(timeout=20)
        subprocess.run([str(BINARY), "overlay", "cleanup", "--config", str(runner.config_path)], capture_output=True)
        topo.teardown_topology()
        print(f"work dir: {w}")


if __name__ == "__main__":
    main()
