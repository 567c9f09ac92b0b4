#!/usr/bin/env bash
# Builds the Debian 12 package dist/debian12/kohakuriver-runner_<version>_<arch>.deb with
# CPack from the regular build directory: the binary and its
# kohakuriver.runner link (and tunnel-client when the project builds one),
# the systemd unit kohakuriver-runner.service, the default
# /etc/kohakuriver/runner_config.py (a conffile) and the maintainer scripts.
# Depends: is computed by dpkg-shlibdeps (package dpkg-dev) from the shared
# libraries the binary links.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dpkg-shlibdeps >/dev/null || {
  echo "package.sh: dpkg-shlibdeps not found (apt-get install dpkg-dev)" >&2; exit 1; }
BUILD_DIR=${BUILD_DIR:-build}
scripts/build.sh kohakuriver tunnel-client >/dev/null
out=$(mktemp -d "${TMPDIR:-/tmp}/kr-cpack.XXXX")
trap 'rm -rf "$out"' EXIT
(cd "$BUILD_DIR" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) || { cat "$out/cpack.log" >&2; exit 1; }
# dist/ itself holds the portable release packages of the same name
# (scripts/release/package.sh); this one needs Debian 12's libraries.
mkdir -p dist/debian12
deb=$(ls "$out"/*.deb)
cp "$deb" dist/debian12/
echo "dist/debian12/$(basename "$deb")"
