#!/usr/bin/env bash
# Portable release build: kohakuriver (needs only glibc >= 2.28) and a fully
# static tunnel-client (musl) for x86_64 and/or aarch64, built with the Zig
# toolchain from PyPI against third-party libraries built from Debian's
# source archives (scripts/release/: sources.lock, build-deps.sh; both cached
# by content under $KR_RELEASE_CACHE, default /var/cache/kr-release).
# Artefacts: dist/release/<arch>/{kohakuriver,tunnel-client}; checked by
# tests/e2e/test_release.py. Packages: scripts/release/package.sh.
# Usage: scripts/release.sh [--arch x86_64|aarch64|all] [--tests]   (default: x86_64)
#   --tests also builds the unit tests with the release toolchain
#   (ctest --test-dir build-release-<arch>; aarch64 runs under qemu-aarch64-static).
# JOBS (default 2) limits parallel compiles; run it under nice on a shared box.
set -euo pipefail
cd "$(dirname "$0")/.."
arches=x86_64
tests=OFF
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arches=$2; shift 2 ;;
    --arch=*) arches=${1#--arch=}; shift ;;
    --tests) tests=ON; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "release.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$arches" = all ] && arches="x86_64 aarch64"
for a in $arches; do
  case $a in x86_64|aarch64) ;; *) echo "release.sh: unknown arch $a" >&2; exit 2 ;; esac
done
jobs=${JOBS:-2}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
tc=$(scripts/release/toolchain.sh)
# ccache (CMakeLists.txt) checks the compiler by content: toolchain.sh
# rewrites the wrappers on every run, which would change their mtime.
export CCACHE_COMPILERCHECK=content

configure() {  # build dir, target triple, deps prefix, extra cmake args...
  local dir=$1 target=$2 deps=$3; shift 3
  KR_TOOLCHAIN="$tc" KR_TARGET="$target" KR_ARCH="${target%%-*}" KR_DEPS_PREFIX="$deps" \
  PKG_CONFIG_LIBDIR="$deps/lib/pkgconfig:$deps/share/pkgconfig" PKG_CONFIG_PATH= \
    cmake -S . -B "$dir" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/scripts/release/zig-toolchain.cmake" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DCMAKE_EXE_LINKER_FLAGS="-s" "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; return 1; }
}
build() {  # build dir, target triple, deps prefix, cmake targets...
  local dir=$1 target=$2 deps=$3; shift 3
  KR_TOOLCHAIN="$tc" KR_TARGET="$target" KR_ARCH="${target%%-*}" KR_DEPS_PREFIX="$deps" \
    cmake --build "$dir" -j "$jobs" --target "$@" >&2
}

for arch in $arches; do
  t0=$SECONDS
  deps=$(scripts/release/build-deps.sh "$arch")
  t_deps=$((SECONDS - t0))
  gnu="$arch-linux-gnu.2.28" musl="$arch-linux-musl"
  dir="build-release-$arch"
  mkdir -p "$dir" "$dir-tunnel-client"
  # Test programs of another architecture (gtest_discover_tests, ctest) run
  # under qemu-user with an arm64 glibc (Debian 11's, debootstrapped once:
  # tests/images/build-release-roots.sh; KR_ARM64_SYSROOT overrides it).
  emulator=
  if [ "$arch" != "$(uname -m)" ] && [ "$tests" = ON ]; then
    qemu=$(command -v "qemu-$arch-static") || { echo "release.sh: qemu-$arch-static is not installed" >&2; exit 1; }
    sysroot=${KR_ARM64_SYSROOT:-$(tests/images/build-release-roots.sh arm64)}
    emulator="$qemu;-L;$sysroot"
  fi
  configure "$dir" "$gnu" "$deps" -DKR_RELEASE=ON -DKR_BUILD_TESTS="$tests" -DCMAKE_CROSSCOMPILING_EMULATOR="$emulator" \
    -DKR_BUILD_COMMIT="$commit" -DKR_BUILD_TARGET="$gnu"
  build "$dir" "$gnu" "$deps" kohakuriver
  [ "$tests" = ON ] && build "$dir" "$gnu" "$deps" unit_tests
  configure "$dir-tunnel-client" "$musl" "" -DKR_TUNNEL_CLIENT_ONLY=ON -DKR_BUILD_TESTS=OFF
  build "$dir-tunnel-client" "$musl" "" tunnel-client
  out="dist/release/$arch"
  mkdir -p "$out"
  cp "$dir/kohakuriver" "$dir-tunnel-client/tunnel-client" "$out/"
  ln -sf kohakuriver "$out/kohakuriver.runner"
  python3 scripts/release/check_artifacts.py "$out" "$arch"
  echo "release.sh: $arch: deps ${t_deps}s (cached: $deps), project $((SECONDS - t0 - t_deps))s" >&2
  echo "$out"
done
