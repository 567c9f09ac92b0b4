"""The portable release artefacts (scripts/release.sh): what they link, the
glibc floor, a static tunnel-client, and `--version`.

The artefact tests run on what scripts/release.sh left in dist/release/<arch>
(or KR_RELEASE_DIR/<arch>) and are skipped, with the reason, where it has not
been run; the checker itself is always tested against the Debian-linked
build, which it must reject.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts" / "release"))
import check_artifacts  # noqa: E402

RELEASE_DIR = Path(os.environ.get("KR_RELEASE_DIR", REPO / "dist" / "release"))
PROJECT_VERSION = re.search(r"project\(kohakuriver_runner VERSION ([0-9.]+)",
                            (REPO / "CMakeLists.txt").read_text()).group(1)


def release_dir(arch: str) -> Path:
    d = RELEASE_DIR / arch
    if not (d / "kohakuriver").is_file():
        pytest.skip(f"no release build in {d} (scripts/release.sh --arch {arch})")
    return d


def arm64_sysroot() -> str:
    """Debian 11's arm64 glibc, unpacked once (tests/images/build-release-roots.sh, cached)."""
    r = subprocess.run([str(REPO / "tests" / "images" / "build-release-roots.sh"), "arm64"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def run_for(arch: str, *argv: str) -> subprocess.CompletedProcess:
    """Runs a release binary natively, or an aarch64 one under qemu-user
    with an arm64 glibc as its root for the dynamic loader (-L)."""
    cmd = list(argv)
    if arch != os.uname().machine:
        qemu = shutil.which(f"qemu-{arch}-static")
        if not qemu:
            pytest.fail(f"qemu-{arch}-static not installed (scripts/install-deps.sh --release)")
        cmd = [qemu, "-L", arm64_sysroot(), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_checker_rejects_the_debian_linked_build():
    # A Debian-linked build, whatever KR_BINARY names: scripts/build.sh's, or
    # the sanitized one scripts/test.sh builds (scripts/test-asan.sh).
    builds = [REPO / d / "kohakuriver" for d in ("build", "build-asan")]
    binary = next((b for b in builds if b.is_file()), None)
    if binary is None:
        pytest.fail(f"no Debian-linked build: none of {[str(b) for b in builds]} (scripts/build.sh)")
    problems = check_artifacts.check_runner(binary, "x86_64")
    assert any("beyond glibc" in p and "libspdlog" in p for p in problems), problems
    assert check_artifacts.check_runner(binary, "aarch64"), "an x86_64 binary passed as aarch64"
    assert check_artifacts.check_static(binary, "x86_64"), "a dynamic binary passed as static"


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_release_binaries_need_only_glibc_2_28(arch):
    d = release_dir(arch)
    assert check_artifacts.check_dir(d, arch) == []
    needed = set(check_artifacts.needed_libraries(d / "kohakuriver"))
    assert needed <= check_artifacts.GLIBC_LIBRARIES
    assert max(check_artifacts.glibc_versions(d / "kohakuriver")) <= (2, 28)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_release_version_names_version_commit_and_target(arch):
    d = release_dir(arch)
    r = run_for(arch, str(d / "kohakuriver"), "--version")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"kohakuriver-runner (\S+) \(commit ([0-9a-f]{7,40}(?:-dirty)?), target (\S+)\)\n", r.stdout)
    assert m, r.stdout
    assert m.group(1) == PROJECT_VERSION
    assert m.group(3) == f"{arch}-linux-gnu.2.28"
    r = run_for(arch, str(d / "tunnel-client"), "--version")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_release_runner_writes_and_reads_configs(arch, tmp_path):
    """`init config --runner`, then every config fixture and the written file
    read back by `doctor` (its config line); under qemu-user for aarch64."""
    d = release_dir(arch)
    r = run_for(arch, str(d / "kohakuriver"), "init", "config", "--runner", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    written = tmp_path / "runner_config.py"
    assert "HOST_ADDRESS" in written.read_text()
    fixtures = sorted((REPO / "tests" / "fixtures" / "configs").glob("*.py"))
    assert fixtures
    for cfg in [written, *fixtures]:
        r = run_for(arch, str(d / "kohakuriver"), "doctor", "--config", str(cfg))
        config_lines = [ln for ln in r.stdout.splitlines() if ln[7:].startswith("config")]
        assert config_lines and config_lines[0].startswith("[ OK ]"), (cfg.name, r.stdout, r.stderr)
