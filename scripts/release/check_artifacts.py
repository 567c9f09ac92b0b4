#!/usr/bin/env python3
"""Checks the portable release binaries (scripts/release.sh) with readelf.

kohakuriver: dynamically linked only against glibc's own libraries, highest
GLIBC_ symbol version <= 2.28, built for the named architecture.
tunnel-client: fully static (no program interpreter, no dynamic section).

Usage: check_artifacts.py DIR ARCH   (DIR holds kohakuriver and tunnel-client)
Exit status 1 and one line per problem when a check fails.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GLIBC_LIBRARIES = {
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
}
GLIBC_FLOOR = (2, 28)
MACHINES = {"x86_64": "X86-64", "aarch64": "AArch64"}


def readelf(*args: str) -> str:
    r = subprocess.run(["readelf", "--wide", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"readelf {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def needed_libraries(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", str(path)))


def glibc_versions(path: Path) -> set[tuple[int, ...]]:
    """Every GLIBC_x.y version the binary requires (version needs and dynamic symbols)."""
    text = readelf("-V", "--dyn-syms", str(path))
    return {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([0-9]+(?:\.[0-9]+)+)", text)}


def machine_matches(path: Path, arch: str) -> bool:
    m = re.search(r"Machine:\s+(.*)", readelf("-h", str(path)))
    return bool(m) and MACHINES[arch] in m.group(1)


def is_fully_static(path: Path) -> bool:
    return "INTERP" not in readelf("-l", str(path)) and not needed_libraries(path)


def check_runner(path: Path, arch: str) -> list[str]:
    problems = []
    if not machine_matches(path, arch):
        problems.append(f"{path}: not an {arch} binary")
    extra = [lib for lib in needed_libraries(path) if lib not in GLIBC_LIBRARIES]
    if extra:
        problems.append(f"{path}: needs libraries beyond glibc: {', '.join(extra)}")
    versions = glibc_versions(path)
    if not versions:
        problems.append(f"{path}: no GLIBC_ symbol versions (not linked against glibc?)")
    elif max(versions) > GLIBC_FLOOR:
        newer = sorted(v for v in versions if v > GLIBC_FLOOR)
        problems.append(f"{path}: needs GLIBC_{'.'.join(map(str, max(versions)))} "
                        f"(> 2.28; also {', '.join('.'.join(map(str, v)) for v in newer)})")
    return problems


def check_static(path: Path, arch: str) -> list[str]:
    problems = []
    if not machine_matches(path, arch):
        problems.append(f"{path}: not an {arch} binary")
    if not is_fully_static(path):
        problems.append(f"{path}: not fully static (has an interpreter or NEEDED libraries)")
    return problems


def check_dir(directory: Path, arch: str) -> list[str]:
    problems = []
    for name, check in (("kohakuriver", check_runner), ("tunnel-client", check_static)):
        path = directory / name
        problems += check(path, arch) if path.is_file() else [f"{path}: missing"]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in MACHINES:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check_dir(Path(argv[1]), argv[2])
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
