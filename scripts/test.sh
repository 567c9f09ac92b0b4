#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages,
# dockerd), builds, builds the local test images, then runs the unit tests
# (GoogleTest via ctest) and the end-to-end tests (pytest, real binary,
# real Docker Engine), then the sanitizer and fuzzing leg (test-asan.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --vm  # --test plus the tools of the VM test image
scripts/ensure-dockerd.sh
scripts/build.sh
tests/images/build-test-images.sh
tests/images/build-debian-image.sh
# The bootable VM guest of tests/e2e/test_vm_boot.py (cached by content in
# /var/cache/kr-test/vm-images; the first build downloads ~300 MB of .debs).
tests/images/build-vm-image.sh >/dev/null
# The .deb and a local repository of its dependencies (for the offline
# install test; cached by content).
deb=$(scripts/package.sh | tail -n1)
tests/images/prepare-deb-repo.sh "$deb" >/dev/null

unit_rc=0
ctest --test-dir build --output-on-failure -j "$(nproc)" || unit_rc=$?
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
