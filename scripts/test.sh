#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages,
# dockerd), builds, builds the local test images, then runs the unit tests
# (GoogleTest via ctest) and the end-to-end tests (pytest, real binary,
# real Docker Engine), then the sanitizer and fuzzing leg (test-asan.sh).
#
# The unit tests run on the portable x86_64 release build (scripts/release.sh:
# Zig toolchain, glibc 2.28 baseline, third-party libraries cached by content
# in /var/cache/kr-release; a cold cache builds them first), whose packages
# tests/e2e/test_release*.py check and install. The Debian-linked ./build
# builds `kohakuriver` and `tunnel-client` for the Debian 12 package
# (scripts/package.sh) and is, for now, the binary the end-to-end suite runs
# (KR_E2E_RELEASE=1 runs the suite on the release binary instead; it becomes
# the default once a whole run on it has passed — issue 17).
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
# The .deb and a local repository of its dependencies (for the offline
# install test; cached by content).
deb=$(scripts/package.sh | tail -n1)
tests/images/prepare-deb-repo.sh "$deb" >/dev/null
# Clean Debian 11/12/13 roots for the release package install tests
# (tests/e2e/test_release_install.py; cached by content in /var/cache/kr-test).
tests/images/build-release-roots.sh amd64

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
if [ "${KR_E2E_RELEASE:-0}" = 1 ]; then
  export KR_BINARY="$PWD/$release/kohakuriver" KR_TUNNEL_CLIENT="$PWD/$release/tunnel-client"
fi
python3 -m pytest -q -p no:cacheprovider tests/e2e "$@" || e2e_rc=$?
[ "$asan_rc" -eq 0 ] || echo "sanitizer/fuzz tests FAILED (scripts/test-asan.sh exit code $asan_rc)" >&2
# pytest's summary stays the last line; ctest's result is in the exit code.
[ "$unit_rc" -eq 0 ] || echo "unit tests FAILED (ctest exit code $unit_rc)" >&2
[ "$unit_rc" -eq 0 ] && [ "$e2e_rc" -eq 0 ] && [ "$asan_rc" -eq 0 ]
