"""`kohakuriver doctor` on this machine (issue 11): one line per check, the
fix on failing lines, exit status 1 when a required check fails."""
import os
import socket
import subprocess

from conftest import BINARY, free_port


def doctor(runner_cfg_path):
    return subprocess.run([str(BINARY), "doctor", "--config", str(runner_cfg_path)], capture_output=True, text=True,
                          timeout=120)


def lines_by_check(out):
    res = {}
    for line in out.splitlines():
        if line.startswith("["):
            tag, name = line[1:5], line[7:].split()[0]
            res.setdefault(name, []).append((tag, line))
    return res


def test_doctor_passes_on_this_machine(host, make_runner):
    runner = make_runner(host, start=False)
    p = doctor(runner.config_path)
    assert p.returncode == 0, p.stdout + p.stderr
    checks = lines_by_check(p.stdout)
    for name in ("config", "docker", "cgroup", "host", "state-dir", "port", "gpu", "vm", "vfio", "policy"):
        assert name in checks, (name, p.stdout)
    assert checks["docker"][0][0] == " OK ", p.stdout
    assert "API " in checks["docker"][0][1]
    assert checks["cgroup"][0][0] == " OK " and "cgroup v" in checks["cgroup"][0][1]
    assert checks["host"][0][0] == " OK "
    assert checks["state-dir"][0][0] == " OK "
    assert checks["port"][0][0] == " OK "
    assert any("172.30.0.0/16" in line for _, line in checks["policy"]), p.stdout
    assert p.stdout.rstrip().endswith("All required checks passed")


def test_doctor_fails_with_fixes(make_runner, tmp_path):
    state = tmp_path / "open-state"
    state.mkdir()
    os.chmod(state, 0o777)
    # Something else listens on the runner port: the port check must not pass.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = free_port()
        s.bind(("127.0.0.1", port))
        s.listen()
        runner = make_runner(start=False, HOST_PORT=free_port(), STATE_DIR=str(state), RUNNER_BIND_IP="127.0.0.1",
                             RUNNER_PORT=port, DOCKER_SOCKET=str(tmp_path / "no-docker.sock"))
        p = doctor(runner.config_path)
    assert p.returncode == 1, p.stdout
    checks = lines_by_check(p.stdout)
    for name in ("docker", "host", "state-dir"):
        tag, line = checks[name][0]
        assert tag == "FAIL" and "| fix: " in line, (name, p.stdout)
    assert "chmod o-w" in checks["state-dir"][0][1]
    assert checks["port"][0][0] in ("WARN", "FAIL") and "| fix: " in checks["port"][0][1], p.stdout
    assert "required check(s) failed" in p.stdout


def test_doctor_reports_a_bad_config(tmp_path):
    cfg = tmp_path / "runner_config.py"
    cfg.write_text("RUNNER_PORT = 'eighty'\n")
    p = doctor(cfg)
    assert p.returncode == 1
    line = lines_by_check(p.stdout)["config"][0][1]
    assert line.startswith("[FAIL] config") and "RUNNER_PORT" in line and "| fix: " in line, p.stdout


def test_doctor_reports_a_python_runner_left_on_the_node(make_runner, tmp_path):
    """Switching from the Python runner (issue 18): its process, its unit
    (as upstream's `init service --runner` writes it) and its state store,
    each with the fix."""
    runner = make_runner(start=False)
    units = tmp_path / "units"
    units.mkdir()
    (units / "kohakuriver-runner.service").write_text(
        "[Service]\nExecStart=/usr/bin/python3 -m kohakuriver.cli.runner --config /root/.kohakuriver/runner_config.py\n"
        "KillMode=process\n")
    store = tmp_path / "local" / ".kohakuriver" / "runner-state.db"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"")
    # A process with the Python runner's command line (upstream's unit runs
    # `python -m kohakuriver.cli.runner`).
    fake = subprocess.Popen(["python3", "-c", "import time; time.sleep(120)", "-m", "kohakuriver.cli.runner"])
    try:
        p = subprocess.run([str(BINARY), "doctor", "--config", str(runner.config_path)], capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, KR_SYSTEMD_UNIT_DIR=str(units)))
    finally:
        fake.kill()
        fake.wait()
    checks = lines_by_check(p.stdout)
    assert p.returncode == 1, p.stdout
    tag, line = checks["python-runner"][0]
    assert tag == "FAIL" and str(fake.pid) in line and "systemctl stop kohakuriver-runner" in line, p.stdout
    tag, line = checks["python-unit"][0]
    assert tag == "WARN" and "KillMode=process" in line and "daemon-reload" in line, p.stdout
    tag, line = checks["python-store"][0]
    assert tag == "INFO" and "will be read once" in line, p.stdout
