#!/usr/bin/env bash
# The sanitizer leg of the suite (scripts/test.sh runs it after the main
# tests): one clang build in ./build-asan with ASan+UBSan everywhere and the
# libFuzzer targets, then
#   1. the unit tests,
#   2. each fuzz target on its seed corpus (tests/fuzz/corpus/<target>) and
#      then fuzzing for FUZZ_SECONDS (default 20),
#   3. the end-to-end tests of the request, kill and outbox paths, and of the
#      tunnel relay and shutdown with open WebSockets, against the sanitized
#      runner binary.
# Any sanitizer report fails it. Extra arguments go to pytest.
# --build-only: only build (scripts/test.sh builds beside the end-to-end
# suite at low priority, then runs this again for the tests).
# --fuzz-only: build and run only the fuzz targets (they link the small
# kr_parsers library, not the whole runner). Longer fuzzing by hand:
#   FUZZ_SECONDS=600 scripts/test-asan.sh --fuzz-only
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_TARGETS=(http_request runner_config task_request tunnel_frame)
fuzz_only=0
build_only=0
if [ "${1:-}" = "--fuzz-only" ]; then fuzz_only=1; shift; fi
if [ "${1:-}" = "--build-only" ]; then build_only=1; shift; fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DKR_SANITIZE=ON -DKR_FUZZ=ON
fi
start=$(date +%s)
if [ "$fuzz_only" -eq 1 ]; then
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" --target "${FUZZ_TARGETS[@]/#/fuzz_}"
else
  cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
fi
echo "test-asan: build took $(( $(date +%s) - start )) s"
[ "$build_only" -eq 1 ] && exit 0

# tests/asan.supp: third-party code only (see the file).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1:suppressions=$PWD/tests/asan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

rc=0
if [ "$fuzz_only" -eq 0 ]; then
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" || { echo "test-asan: unit tests FAILED" >&2; rc=1; }
fi

for t in "${FUZZ_TARGETS[@]}"; do
  work=$(mktemp -d)
  log="$BUILD_DIR/fuzz_$t.log"
  # New inputs go to a scratch directory; the checked-in seeds stay as they are.
  if "$BUILD_DIR/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$BUILD_DIR/fuzz_$t-" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log")
    corpus=$( (grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" || true) | tail -1 | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
    echo "test-asan: fuzz_$t: ${FUZZ_SECONDS} s, $execs runs, $speed exec/s, corpus $corpus (units/size)"
  else
    echo "test-asan: fuzz_$t FAILED (log: $log, crash input: $BUILD_DIR/fuzz_$t-*)" >&2
    tail -40 "$log" >&2
    rc=1
  fi
  rm -rf "$work"
done

if [ "$fuzz_only" -eq 0 ]; then
  export KR_BINARY="$PWD/$BUILD_DIR/kohakuriver"
  python3 -m pytest -q -p no:cacheprovider tests/e2e/test_robustness.py tests/e2e/test_request_limits.py "$@" \
    || { echo "test-asan: end-to-end request tests FAILED" >&2; rc=1; }
  # Kill and outbox (report delivery) paths of the task tests.
  python3 -m pytest -q -p no:cacheprovider tests/e2e/test_tasks.py \
    -k "kill or report or host_down or undelivered or outbox" "$@" \
    || { echo "test-asan: end-to-end kill/outbox tests FAILED" >&2; rc=1; }
  # The release symbol checker rejects this Debian-linked build (scripts/test.sh
  # leaves the test out of its run while this build compiles beside it).
  python3 -m pytest -q -p no:cacheprovider tests/e2e/test_release.py -k checker_rejects_the_debian_linked_build "$@" \
    || { echo "test-asan: the release checker test FAILED" >&2; rc=1; }
  # Shutdown with open WebSocket connections (tunnels and forwards) and the
  # tunnel relay itself (the unsanitized static tunnel-client: KR_TUNNEL_CLIENT,
  # the release's from scripts/test.sh, else ./build's).
  python3 -m pytest -q -p no:cacheprovider tests/e2e/test_tunnel.py \
    -k "exits_cleanly or 20mb or udp or client_restart or second_client" "$@" \
    || { echo "test-asan: end-to-end tunnel tests FAILED" >&2; rc=1; }
fi
exit "$rc"
