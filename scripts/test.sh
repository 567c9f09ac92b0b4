#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages,
# dockerd), builds, builds the local test images, then runs the unit tests
# (GoogleTest via ctest) and the end-to-end tests (pytest, real binary,
# real Docker Engine), then the sanitizer and fuzzing leg (test-asan.sh).
#
# The project is built once for the unsanitized legs: the portable x86_64
# release build (scripts/release.sh --tests: Zig toolchain, glibc 2.28
# baseline, third-party libraries cached by content in /var/cache/kr-release;
# a cold cache builds them first). The unit tests, the end-to-end suite
# (KR_BINARY / KR_TUNNEL_CLIENT: dist/release/x86_64) and the package tests
# (tests/e2e/test_package.py, test_release*.py: the .deb, .rpm and .tar.gz
# of scripts/release/package.sh) all run on what ships (issue 17). The
# sanitized leg builds its own ./build-asan (clang, Debian's libraries).
# scripts/build.sh's Debian-linked ./build is a developer build only; KR_BINARY
# and KR_TUNNEL_CLIENT set by the caller run the end-to-end suite on another
# binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --vm  # --test plus the tools of the VM test image
scripts/install-deps.sh --release  # flex/bison, rpm, qemu-user-static (the release build and its checks)
scripts/ensure-dockerd.sh
release=$(JOBS=$(nproc) scripts/release.sh --arch x86_64 --tests | tail -n1)
tests/images/build-test-images.sh
tests/images/build-debian-image.sh
# The bootable VM guest of tests/e2e/test_vm_boot.py (cached by content in
# /var/cache/kr-test/vm-images; the first build downloads ~300 MB of .debs).
tests/images/build-vm-image.sh >/dev/null
# Clean Debian 11/12/13 roots for the release package install tests
# (tests/e2e/test_release_install.py; cached by content in /var/cache/kr-test).
tests/images/build-release-roots.sh amd64

export KR_BINARY="${KR_BINARY:-$PWD/$release/kohakuriver}"
export KR_TUNNEL_CLIENT="${KR_TUNNEL_CLIENT:-$PWD/$release/tunnel-client}"

unit_rc=0
ctest --test-dir "build-release-x86_64" --output-on-failure -j "$(nproc)" || unit_rc=$?
# ASan+UBSan build (clang, ./build-asan): the unit tests, each fuzz target
# for a short fixed time, and the request/kill/outbox end-to-end tests
# against the sanitized runner (docs/fuzzing.md). KR_ASAN_FUZZ_ONLY=1 keeps
# only the fuzz targets (a quick local run; CI runs everything).
asan_rc=0
if [ "${KR_ASAN_FUZZ_ONLY:-0}" = 1 ]; then
  scripts/test-asan.sh --fuzz-only || asan_rc=$?
else
  scripts/test-asan.sh || asan_rc=$?
fi
e2e_rc=0
python3 -m pytest -q -p no:cacheprovider tests/e2e "$@" || e2e_rc=$?
[ "$asan_rc" -eq 0 ] || echo "sanitizer/fuzz tests FAILED (scripts/test-asan.sh exit code $asan_rc)" >&2
# pytest's summary stays the last line; ctest's result is in the exit code.
[ "$unit_rc" -eq 0 ] || echo "unit tests FAILED (ctest exit code $unit_rc)" >&2
[ "$unit_rc" -eq 0 ] && [ "$e2e_rc" -eq 0 ] && [ "$asan_rc" -eq 0 ]
