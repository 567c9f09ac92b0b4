#!/usr/bin/env bash
# Clean Debian root file systems for the release install tests
# (tests/e2e/test_release_install.py) and the arm64 sysroot of the
# qemu-user checks, all made with debootstrap from Debian's packages:
#   kr-test/release-root:{bullseye,bookworm,trixie}   amd64 minbase, imported into Docker
#   $CACHE/arm64-sysroot-bullseye-<recipe>/            arm64 minbase, unpacked only
#                                                     (debootstrap --foreign: no emulation
#                                                     needed; glibc 2.31 for qemu-aarch64 -L)
# Cached by content: the tarballs under $KR_IMAGE_CACHE (default
# /var/cache/kr-test) carry the sha of their recipe (RECIPE below: bump it
# when the way a root is made changes) in their name, the images a kr.recipe
# label; nothing is fetched again while both are there.
# Usage: build-release-roots.sh [amd64|arm64|all]   (default all); prints the arm64 sysroot.
set -euo pipefail
mirror=http://deb.debian.org/debian
CACHE=${KR_IMAGE_CACHE:-/var/cache/kr-test}
SUITES="bullseye bookworm trixie"
RECIPE="debootstrap --variant=minbase from $mirror, apt caches emptied; v1"
what=${1:-all}
mkdir -p "$CACHE"

bootstrap() {  # suite arch dir extra-args...
  local suite=$1 arch=$2 dir=$3; shift 3
  command -v debootstrap >/dev/null || { echo "build-release-roots: debootstrap is not installed" >&2; exit 1; }
  local log="$CACHE/debootstrap-$suite-$arch.log"
  echo "build-release-roots: debootstrap $suite ($arch) from $mirror" >&2
  debootstrap --arch="$arch" --variant=minbase "$@" "$suite" "$dir" "$mirror" >"$log" 2>&1 || {
    tail -20 "$log" >&2; exit 1; }
}

key() { echo "$RECIPE $*" | sha256sum | cut -c1-16; }

amd64_root() {  # suite
  local suite=$1 image="kr-test/release-root:$1" recipe; recipe=$(key "$1" amd64)
  local have; have=$(docker image inspect -f '{{index .Config.Labels "kr.recipe"}}' "$image" 2>/dev/null || true)
  [ "$have" = "$recipe" ] && return 0
  local tarball="$CACHE/release-root-$suite-amd64-$recipe.tar"
  if [ ! -s "$tarball" ]; then
    local root; root=$(mktemp -d /tmp/kr-release-root.XXXX)
    bootstrap "$suite" amd64 "$root"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    find "$CACHE" -name "release-root-$suite-amd64-*.tar" ! -name "$(basename "$tarball")" -delete
  fi
  docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' -c "LABEL kr.recipe=$recipe" "$tarball" "$image" >/dev/null
  echo "build-release-roots: built $image" >&2
}

arm64_sysroot() {
  local dir; dir="$CACHE/arm64-sysroot-bullseye-$(key bullseye arm64 --foreign)"
  if [ ! -e "$dir/lib/ld-linux-aarch64.so.1" ]; then
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    bootstrap bullseye arm64 "$dir.tmp" --foreign
    # --foreign leaves the packages unpacked but not configured: glibc's
    # files (ld-linux, libc, libm, ...) are all that qemu-user's -L needs.
    rm -rf "$dir.tmp/var/cache/apt/archives/"*.deb "$dir.tmp/debootstrap/debootstrap.log"
    find "$CACHE" -maxdepth 1 -name 'arm64-sysroot-bullseye-*' ! -name "$(basename "$dir")*" -exec rm -rf {} +
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

case $what in
  amd64) for s in $SUITES; do amd64_root "$s"; done ;;
  arm64) arm64_sysroot ;;
  all) for s in $SUITES; do amd64_root "$s"; done; arm64_sysroot ;;
  *) echo "usage: $0 [amd64|arm64|all]" >&2; exit 2 ;;
esac
