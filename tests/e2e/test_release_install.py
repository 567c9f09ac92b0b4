"""The portable release packages (issue 17) installed where they claim to work.

The amd64 .deb goes with `apt-get install ./x.deb` into clean Debian 11, 12
and 13 roots (debootstrap minbase, tests/images/build-release-roots.sh, run
as Docker containers with no Debian package beyond minbase, network of the
host so that the runner reaches the fixture host on loopback); the binary
then prints its version, writes a config and a unit, runs `doctor`, and
starts against the fixture host until it registered and sent two
heartbeats. Debian 11 has glibc 2.31, below 2.34: the runner there spawns
its children without posix_spawn_file_actions_addclosefrom_np.

The .rpm is checked with rpm(8) (files, requirements, scriptlets); the
tarball is installed as its README says. Skipped, with the reason, where
scripts/release.sh has not been run (dist/release/x86_64).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from conftest import REPO, free_port
from fixture_host import FixtureHost

RELEASE = REPO / "dist" / "release" / "x86_64"
VERSION = re.search(r"project\(kohakuriver_runner VERSION ([0-9.]+)",
                    (REPO / "CMakeLists.txt").read_text()).group(1)
SUITES = {"bullseye": "2.31", "bookworm": "2.36", "trixie": "2.41"}


def run(*cmd, timeout=300, check=True, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def packages() -> dict[str, Path]:
    if not (RELEASE / "kohakuriver").is_file():
        pytest.skip(f"no release build in {RELEASE} (scripts/release.sh)")
    run(str(REPO / "scripts" / "release" / "package.sh"))
    dist = REPO / "dist"
    found = {"deb": dist / f"kohakuriver-runner_{VERSION}_amd64.deb",
             "rpm": dist / f"kohakuriver-runner-{VERSION}-1.x86_64.rpm",
             "tar": dist / f"kohakuriver-runner-{VERSION}-linux-x86_64.tar.gz"}
    for p in found.values():
        assert p.is_file(), p
    return found


def deb_field(deb: Path, field: str) -> str:
    return run("dpkg-deb", "-f", str(deb), field).stdout.strip()


def test_deb_depends_only_on_libc6(packages):
    deb = packages["deb"]
    assert deb_field(deb, "Depends") == "libc6 (>= 2.28)"
    assert "docker" in deb_field(deb, "Recommends")
    files = run("dpkg-deb", "-c", str(deb)).stdout
    for f in ("./usr/bin/kohakuriver", "./usr/bin/tunnel-client", "./usr/bin/kohakuriver.runner -> kohakuriver",
              "./usr/lib/systemd/system/kohakuriver-runner.service", "./etc/kohakuriver/runner_config.py"):
        assert f in files, (f, files)
    sums = (REPO / "dist" / "SHA256SUMS").read_text()
    assert deb.name in sums and packages["rpm"].name in sums and packages["tar"].name in sums, sums


# What runs inside each clean root: install, then the operator's first steps,
# then the runner in the foreground (the test stops the container).
INSTALL_SCRIPT = r"""
set -e
DEBIAN_FRONTEND=noninteractive apt-get install -y -q /pkg/@DEB@ >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }
echo "=== glibc $(ldd --version | head -n1 | grep -oE '[0-9]+\.[0-9]+$')"
echo "=== version"; kohakuriver --version
echo "=== init config"; kohakuriver init config --runner -o /tmp/cfg; test -s /tmp/cfg/runner_config.py && echo wrote-config
echo "=== init service"; mkdir -p /tmp/svc; cd /tmp/svc
kohakuriver init service --runner --runner-config /tmp/kr/runner_config.py --no-install
grep -h '^ExecStart=' /tmp/svc/*.service
cd /
mkdir -p /tmp/kr/share /tmp/kr/local
cat >/tmp/kr/runner_config.py <<CFG
from kohakuengine import Config
RUNNER_BIND_IP = "127.0.0.1"
RUNNER_PORT = @RPORT@
HOST_ADDRESS = "127.0.0.1"
HOST_PORT = @HPORT@
SHARED_DIR = "/tmp/kr/share"
LOCAL_TEMP_DIR = "/tmp/kr/local"
STATE_DIR = "/tmp/kr/state"
DOCKER_SOCKET = "/tmp/kr/no-docker.sock"
HEARTBEAT_INTERVAL_SECONDS = 1
def config_gen():
    return Config.from_globals()
CFG
echo "=== doctor"; kohakuriver doctor --config /tmp/kr/runner_config.py || echo "doctor exit $?"
echo "=== runner"
exec kohakuriver runner --config /tmp/kr/runner_config.py
"""


def doctor_lines(out: str) -> dict[str, str]:
    block = out.split("=== doctor")[1].split("=== runner")[0]
    return {line[7:].split()[0]: line for line in block.splitlines() if line.startswith("[") and len(line) > 7}


@pytest.mark.parametrize("suite", list(SUITES))
def test_deb_installs_and_registers_on_debian(packages, suite):
    image = f"kr-test/release-root:{suite}"
    if run("docker", "image", "inspect", image, check=False).returncode != 0:
        pytest.fail(f"{image} is missing (tests/images/build-release-roots.sh)")
    host = FixtureHost().start()
    name = f"kr-release-{suite}-{uuid.uuid4().hex[:8]}"
    script = (INSTALL_SCRIPT.replace("@DEB@", packages["deb"].name)
              .replace("@RPORT@", str(free_port())).replace("@HPORT@", str(host.port)))
    proc = subprocess.Popen(["docker", "run", "--rm", "--name", name, "--network", "host", "--label", "kr.test=release",
                             "-v", f"{packages['deb'].parent}:/pkg:ro", image, "bash", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            host.wait_for("register", timeout=120)
            beats = host.wait_for("heartbeat", count=2, timeout=30)
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
            out = proc.communicate(timeout=60)[0]
    finally:
        host.stop()
    assert f"=== glibc {SUITES[suite]}" in out, out
    version = out.split("=== version")[1].split("===")[0].strip()
    assert re.fullmatch(rf"kohakuriver-runner {re.escape(VERSION)} \(commit \S+, target x86_64-linux-gnu\.2\.28\)",
                        version), out
    assert "wrote-config" in out, out
    assert "ExecStart=/usr/bin/kohakuriver runner --config /tmp/kr/runner_config.py" in out, out
    checks = doctor_lines(out)
    for name_ in ("config", "state-dir", "port"):
        assert checks.get(name_, "").startswith("[ OK ]"), (name_, out)
    assert checks["docker"].startswith("[FAIL]") and "| fix: " in checks["docker"], out
    assert "gpu" in checks, out
    reg = host.of_kind("register")[0].json()
    assert reg.get("hostname") and len(beats) >= 2, (reg, out)


def test_rpm_files_requirements_and_scriptlets(packages):
    if not shutil.which("rpm"):
        pytest.fail("rpm is not installed (scripts/install-deps.sh --release)")
    rpm = str(packages["rpm"])
    info = run("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n", rpm).stdout.strip()
    assert info == f"kohakuriver-runner {VERSION} 1 x86_64"
    files = run("rpm", "-qlp", rpm).stdout.split()
    assert files == sorted(["/etc/kohakuriver", "/etc/kohakuriver/runner_config.py", "/usr/bin/kohakuriver",
                            "/usr/bin/kohakuriver.runner", "/usr/bin/tunnel-client",
                            "/usr/lib/systemd/system/kohakuriver-runner.service"]), files
    config = run("rpm", "-qcp", rpm).stdout.split()
    assert config == ["/etc/kohakuriver/runner_config.py"]
    # /bin/sh: the interpreter of the scriptlets, added by rpmbuild.
    requires = sorted({r for r in run("rpm", "-qRp", rpm).stdout.splitlines() if not r.startswith("rpmlib(")})
    assert requires == ["/bin/sh", "glibc >= 2.28"], requires
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    assert "postinstall scriptlet" in scripts and "systemctl daemon-reload" in scripts, scripts
    assert "preuninstall scriptlet" in scripts and "systemctl stop kohakuriver-runner.service" in scripts, scripts
    # The binary in the .rpm is the one in the .deb.
    deb_bin = run("sh", "-c", f"dpkg-deb --fsys-tarfile {packages['deb']} | tar -xO ./usr/bin/kohakuriver | sha256sum")
    digests = dict(line.split() for line in run("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEDIGESTS}\n]", rpm)
                   .stdout.splitlines() if len(line.split()) == 2)
    assert digests["/usr/bin/kohakuriver"] == deb_bin.stdout.split()[0]


def test_tarball_installs_as_its_readme_says(packages, tmp_path):
    tar = packages["tar"]
    with tarfile.open(tar) as t:
        names = t.getnames()
    top = f"kohakuriver-runner-{VERSION}-linux-x86_64"
    for f in ("kohakuriver", "kohakuriver.runner", "tunnel-client", "kohakuriver-runner.service",
              "runner_config.py", "README"):
        assert f"{top}/{f}" in names, names
    run("tar", "-xzf", str(tar), "-C", str(tmp_path))
    d = tmp_path / top
    readme = (d / "README").read_text()
    assert "kohakuriver init service --runner" in readme
    assert (d / "kohakuriver.runner").is_symlink()
    r = run(str(d / "kohakuriver.runner"), "--version")
    assert r.stdout.startswith(f"kohakuriver-runner {VERSION} ")
    svc = tmp_path / "svc"
    svc.mkdir()
    run(str(d / "kohakuriver"), "init", "service", "--runner", "--runner-config", str(tmp_path / "c.py"),
        "--no-install", cwd=svc)
    unit = "".join(p.read_text() for p in svc.glob("*.service"))
    assert f"ExecStart={d / 'kohakuriver'} runner --config {tmp_path / 'c.py'}" in unit, unit
