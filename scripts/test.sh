#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages,
# dockerd), builds (the local test images beside the build), then runs the
# unit tests (GoogleTest via ctest) and the end-to-end tests (pytest, real
# binary, real Docker Engine) while the sanitized build compiles at low
# priority, then the sanitizer and fuzzing leg (test-asan.sh).
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
# The test images, the VM disk and the release roots are built (or found in
# their caches) beside the release build: on a new machine that is mostly
# downloads, debootstrap and dpkg, which leaves the CPU to the compiler.
#   tests/images/build-test-images.sh, build-debian-image.sh: the task/VPS images
#   build-vm-image.sh: the bootable guest of tests/e2e/test_vm_boot.py
#     (cached by content in /var/cache/kr-test/vm-images; the first build
#     downloads ~300 MB of .debs)
#   build-release-roots.sh amd64: clean Debian 11/12/13 roots for the release
#     package install tests (tests/e2e/test_release_install.py)
images_log=$(mktemp /tmp/kr-test-images.XXXXXX)
( set -e
  tests/images/build-test-images.sh
  tests/images/build-debian-image.sh
  tests/images/build-vm-image.sh >/dev/null
  tests/images/build-release-roots.sh amd64 ) >"$images_log" 2>&1 &
images_pid=$!
release=$(JOBS=$(nproc) scripts/release.sh --arch x86_64 --tests | tail -n1)
images_rc=0
wait "$images_pid" || images_rc=$?
cat "$images_log"
rm -f "$images_log"
[ "$images_rc" -eq 0 ] || { echo "building the test images FAILED (exit code $images_rc)" >&2; exit 1; }

export KR_BINARY="${KR_BINARY:-$PWD/$release/kohakuriver}"
export KR_TUNNEL_CLIENT="${KR_TUNNEL_CLIENT:-$PWD/$release/tunnel-client}"

# The ASan+UBSan build (clang, ./build-asan) compiles at the lowest priority
# beside the unit and end-to-end tests, which wait on Docker, QEMU and
# timers much of the time; its tests run after them (below).
asan_log=$(mktemp /tmp/kr-asan-build.XXXXXX)
nice -n 19 scripts/test-asan.sh --build-only >"$asan_log" 2>&1 &
asan_build_pid=$!

unit_rc=0
ctest --test-dir "build-release-x86_64" --output-on-failure -j "$(nproc)" || unit_rc=$?
e2e_log=$(mktemp /tmp/kr-e2e.XXXXXX)
set +e
# The checker's rejection of a Debian-linked build needs ./build-asan, still
# compiling: test-asan.sh runs that test after its build.
python3 -m pytest -q -p no:cacheprovider tests/e2e \
  --deselect tests/e2e/test_release.py::test_checker_rejects_the_debian_linked_build "$@" 2>&1 | tee "$e2e_log"
e2e_rc=${PIPESTATUS[0]}
set -e
e2e_summary=$(tail -n1 "$e2e_log")
rm -f "$e2e_log"

# ASan+UBSan: the unit tests, each fuzz target for a short fixed time, and
# the request/kill/outbox end-to-end tests against the sanitized runner
# (docs/fuzzing.md). KR_ASAN_FUZZ_ONLY=1 keeps only the fuzz targets (a
# quick local run; CI runs everything).
asan_rc=0
wait "$asan_build_pid" || asan_rc=$?
cat "$asan_log"
rm -f "$asan_log"
if [ "$asan_rc" -ne 0 ]; then
  echo "the ASan build FAILED" >&2
elif [ "${KR_ASAN_FUZZ_ONLY:-0}" = 1 ]; then
  scripts/test-asan.sh --fuzz-only || asan_rc=$?
else
  scripts/test-asan.sh || asan_rc=$?
fi
[ "$asan_rc" -eq 0 ] || echo "sanitizer/fuzz tests FAILED (scripts/test-asan.sh exit code $asan_rc)" >&2
[ "$unit_rc" -eq 0 ] || echo "unit tests FAILED (ctest exit code $unit_rc)" >&2
# The main end-to-end summary stays the last line.
echo "end-to-end (release binary): $e2e_summary"
[ "$unit_rc" -eq 0 ] && [ "$e2e_rc" -eq 0 ] && [ "$asan_rc" -eq 0 ]
