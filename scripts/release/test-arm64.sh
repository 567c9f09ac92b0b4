#!/usr/bin/env bash
# Runs the arm64 release unit tests (scripts/release.sh --arch aarch64
# --tests) under qemu-aarch64-static -L <Debian 11 arm64 sysroot>, minus
# the listed exclusions (scripts/release/qemu-user-exclusions.txt: what
# qemu-user cannot emulate, each with its reason).
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=$(grep -v '^#' scripts/release/qemu-user-exclusions.txt | awk 'NF{print $1}' | paste -sd'|')
exec ctest --test-dir build-release-aarch64 --output-on-failure -j "${JOBS:-2}" --timeout 120 -E "$exclude"
