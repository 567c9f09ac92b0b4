#!/usr/bin/env bash
# Unpacks the Zig toolchain (PyPI wheel, from the source cache) and writes
# compiler wrappers for the release targets into $KR_RELEASE_CACHE/toolchain.
# Prints the toolchain directory. Targets: <arch>-linux-gnu.2.28 (the runner:
# glibc 2.28 symbol baseline, libc++ linked statically) and <arch>-linux-musl
# (tunnel-client: fully static). Baseline CPU for each architecture.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${KR_RELEASE_CACHE:-/var/cache/kr-release}
wheel=$(awk '$1=="ziglang"{print $3}' "$here/sources.lock")
zig_version=$(awk '$1=="ziglang"{sub("pypi:ziglang==","",$4); print $4}' "$here/sources.lock")
tc="$root/toolchain/zig-$zig_version"
if [ ! -x "$tc/ziglang/zig" ]; then
  "$here/fetch-sources.sh" ziglang >&2
  rm -rf "$tc.tmp"; mkdir -p "$tc.tmp"
  python3 -m zipfile -e "$root/src/$wheel" "$tc.tmp"
  chmod +x "$tc.tmp/ziglang/zig"
  rm -rf "$tc"; mv "$tc.tmp" "$tc"
fi
mkdir -p "$tc/bin"
for arch in x86_64 aarch64; do
  for abi in gnu.2.28 musl; do
    t="$arch-linux-$abi"
    for tool in cc c++; do
      # Zig keeps its compiled libc++/libc stubs in its global cache: one
      # per target, built once (minutes) and reused.
      cat >"$tc/bin/$t-$tool.new" <<W
#!/bin/sh
export ZIG_GLOBAL_CACHE_DIR="\${ZIG_GLOBAL_CACHE_DIR:-$root/zig-cache}"
export ZIG_LOCAL_CACHE_DIR="\${ZIG_LOCAL_CACHE_DIR:-$root/zig-cache}"
exec "$tc/ziglang/zig" $tool -target $t -mcpu=baseline "\$@"
W
      chmod +x "$tc/bin/$t-$tool.new"; mv "$tc/bin/$t-$tool.new" "$tc/bin/$t-$tool"
    done
  done
done
for tool in ar ranlib; do
  printf '#!/bin/sh\nexec "%s/ziglang/zig" %s "$@"\n' "$tc" "$tool" >"$tc/bin/zig-$tool"
  chmod +x "$tc/bin/zig-$tool"
done
echo "$tc"
