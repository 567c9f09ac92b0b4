#!/usr/bin/env bash
# Installs the build dependencies, builds, installs the binary under
# /usr/local and starts the runner in the foreground. Arguments are passed
# to `kohakuriver runner` (e.g. --config PATH, --bind IP, --port N); with
# none it uses ~/.kohakuriver/runner_config.py when present, else defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cmake --install build --prefix "${PREFIX:-/usr/local}" --strip --component runner >/dev/null
exec "${PREFIX:-/usr/local}/bin/kohakuriver" runner "$@"
