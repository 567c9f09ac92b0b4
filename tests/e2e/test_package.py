"""The package that ships (issues 11, 17, 18): the portable amd64 .deb of
scripts/release/package.sh (dist/kohakuriver-runner_<version>_amd64.deb,
made from the release binaries in dist/release/x86_64). Its control data,
files, conffile and unit; it installs with `apt-get install ./x.deb` into a
clean Debian 12 container made from the test image with no network at all
(--network none, no APT sources: it needs nothing but libc6), and its
maintainer scripts leave a Python runner's unit that shadows the packaged one
alone (issue 18). tests/e2e/test_release_install.py installs the same
package into Debian 11, 12 and 13 roots and starts the runner there."""
import re
import uuid
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "kr-test/debian:bookworm"
RELEASE = REPO / "dist" / "release" / "x86_64"
VERSION = re.search(r"project\(kohakuriver_runner VERSION ([0-9.]+)",
                    (REPO / "CMakeLists.txt").read_text()).group(1)


def run(*cmd, timeout=600, check=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def deb():
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"{IMAGE} is missing (tests/images/build-debian-image.sh)")
    if not (RELEASE / "kohakuriver").is_file():
        pytest.fail(f"no release build in {RELEASE} (scripts/release.sh)")
    run(str(REPO / "scripts" / "release" / "package.sh"))
    path = REPO / "dist" / f"kohakuriver-runner_{VERSION}_amd64.deb"
    assert path.is_file(), path
    return path


def test_package_contents(deb):
    fields = run("dpkg-deb", "-f", str(deb)).stdout
    assert "Package: kohakuriver-runner" in fields
    assert "Recommends: docker.io | docker-ce, iptables" in fields
    assert run("dpkg-deb", "-f", str(deb), "Depends").stdout.strip() == "libc6 (>= 2.28)"
    files = run("dpkg-deb", "-c", str(deb)).stdout
    for f in ("./usr/bin/kohakuriver", "./usr/bin/kohakuriver.runner -> kohakuriver", "./usr/bin/tunnel-client",
              "./usr/lib/systemd/system/kohakuriver-runner.service", "./etc/kohakuriver/runner_config.py"):
        assert f in files, (f, files)
    control = Path(run("mktemp", "-d").stdout.strip())
    run("dpkg-deb", "-e", str(deb), str(control))
    assert (control / "conffiles").read_text().split() == ["/etc/kohakuriver/runner_config.py"]
    unit = run("sh", "-c", f"dpkg-deb --fsys-tarfile {deb} | tar -xO ./usr/lib/systemd/system/kohakuriver-runner.service").stdout
    assert "ExecStart=/usr/bin/kohakuriver runner --config /etc/kohakuriver/runner_config.py" in unit
    assert "WatchdogSec=" in unit and "KillMode=process" in unit and "Type=notify" in unit
    run("rm", "-rf", str(control))


def test_installs_offline_into_clean_debian(deb):
    name = f"kr-pkgtest-{uuid.uuid4().hex[:8]}"
    script = r"""
set -e
# A host with no APT source and no package list: libc6 is all it needs.
rm -rf /etc/apt/sources.list.d/* /etc/apt/sources.list /var/lib/apt/lists/*
# An older unit from `init service` (the Python runner's) must be pointed out.
mkdir -p /etc/systemd/system
PYUNIT='[Service]\nKillMode=process\nExecStart=/opt/kr/venv/bin/python -m kohakuriver.cli.runner --config /root/.kohakuriver/runner_config.py\n'
printf "$PYUNIT" > /etc/systemd/system/kohakuriver-runner.service
# systemd is neither installed nor PID 1 in this container: a systemctl (where
# apt's PATH finds it) says the unit is active and records what the
# maintainer scripts ask of it.
mkdir -p /run/systemd/system
printf '#!/bin/sh\necho "$*" >> /tmp/systemctl.log\nexit 0\n' > /usr/bin/systemctl
chmod +x /usr/bin/systemctl
DEBIAN_FRONTEND=noninteractive apt-get install -y -q /pkg/PKG 2>&1
echo "=== systemctl, Python unit active"
grep kohakuriver /tmp/systemctl.log || true
: > /tmp/systemctl.log
# Our own unit (`kohakuriver init service`) in the same place: restarted.
printf '[Service]\nExecStart=/usr/bin/kohakuriver runner --config /etc/kohakuriver/runner_config.py\n' > /etc/systemd/system/kohakuriver-runner.service
/var/lib/dpkg/info/kohakuriver-runner.postinst configure 0.0.1 >/dev/null
echo "=== systemctl, our unit active"
grep kohakuriver /tmp/systemctl.log || true
: > /tmp/systemctl.log
printf "$PYUNIT" > /etc/systemd/system/kohakuriver-runner.service
/var/lib/dpkg/info/kohakuriver-runner.prerm remove
echo "=== systemctl, remove with the Python unit"
grep kohakuriver /tmp/systemctl.log || true
echo "=== version"
kohakuriver --version
kohakuriver.runner --version
echo "=== init config"
kohakuriver init config --runner -o /tmp/cfg
test -s /tmp/cfg/runner_config.py
cmp /tmp/cfg/runner_config.py /etc/kohakuriver/runner_config.py && echo "default config = init config"
echo "=== conffile"
dpkg-query -W -f='${Conffiles}\n' kohakuriver-runner
""".replace("PKG", deb.name)
    try:
        p = run("docker", "run", "--rm", "--name", name, "--network", "none", "--label", "kr.test=package",
                "-v", f"{deb.parent}:/pkg:ro", IMAGE, "bash", "-c", script,
                timeout=300, check=False)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "WARNING: /etc/systemd/system/kohakuriver-runner.service exists" in out, out
    # Installing (or removing) the package never restarts or stops the
    # Python runner's unit that shadows the packaged one (issue 18).
    section = lambda name: out.split(f"=== systemctl, {name}\n")[1].split("===")[0]  # noqa: E731
    assert "try-restart" not in section("Python unit active") and "is-active" in section("Python unit active"), out
    assert "is not this package's runner" in out, out
    assert "try-restart kohakuriver-runner.service" in section("our unit active"), out
    assert "stop" not in section("remove with the Python unit"), out
    # Both names print "kohakuriver-runner <version> (commit …, target …)".
    version = out.split("=== version")[1].split("===")[0].strip().splitlines()
    assert len(version) == 2 and all(v.startswith("kohakuriver-runner ") and "(commit " in v for v in version), out
    assert "default config = init config" in out, out
    assert "/etc/kohakuriver/runner_config.py" in out.split("=== conffile")[1], out
