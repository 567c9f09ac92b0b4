#!/usr/bin/env bash
# Manual interoperability checks of port forwarding (not part of CI; needs
# the upstream source tree and network access for pip/cargo):
#
#   scripts/tunnel-interop.sh client /path/to/venv/bin/python
#     our build/tunnel-client against the upstream Python runner's tunnel
#     server (upstream's own /ws/tunnel and /ws/forward handlers, served by
#     uvicorn in a throw-away venv).
#   scripts/tunnel-interop.sh server /path/to/tunnel-client-built-by-cargo
#     the upstream Rust tunnel-client against our runner's tunnel server.
#
# Both move a 20 MB file byte-exact over TCP, run a UDP echo, get the
# `Error:` text for an absent tunnel and the OS error for a closed port
# (bench/tunnel_interop.py does the talking).
set -euo pipefail
MODE=${1:?client|server}
ARG=${2:?path}
cd "$(dirname "$0")/.."
exec python3 bench/tunnel_interop.py "$MODE" "$ARG"
