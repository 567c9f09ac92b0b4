#!/usr/bin/env bash
# Builds kr-test/debian:bookworm, a Debian 12 image made from Debian's
# packages (no container registry is reachable): debootstrap minbase plus
# openssh-server (VPS tests), inotify-tools (filesystem watch in inotify
# mode), procps and bash (terminal tests on a Debian image).
#
# Cached per machine, by content: the image carries the label
# kr.recipe=<sha of this script>; it is rebuilt only when this script
# changes. The debootstrapped rootfs tarball is also kept under
# $KR_IMAGE_CACHE (default /var/cache/kr-test) so that a wiped Docker data
# directory does not mean another debootstrap.
set -euo pipefail
IMAGE=${KR_DEBIAN_IMAGE:-kr-test/debian:bookworm}
CACHE=${KR_IMAGE_CACHE:-/var/cache/kr-test}
PACKAGES=openssh-server,inotify-tools,procps,bash,ca-certificates
recipe=$(sha256sum "$0" | cut -c1-16)

have=$(docker image inspect -f '{{index .Config.Labels "kr.recipe"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$recipe" ]; then exit 0; fi

mkdir -p "$CACHE"
tarball="$CACHE/debian-bookworm-$recipe.tar"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    echo "build-debian-image: debootstrap is not installed" >&2; exit 1; }
  # Use the machine's own configured Debian mirror (the only one reachable).
  mirror=$(grep -hoE '^(deb|URIs:)[^#]*https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
  [ -n "$mirror" ] || { echo "build-debian-image: no Debian mirror in /etc/apt/sources*" >&2; exit 1; }
  root=$(mktemp -d /tmp/kr-debian-root.XXXX)
  trap 'rm -rf "$root"' EXIT
  echo "build-debian-image: debootstrap bookworm from $mirror (once per machine)"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$mirror" >/tmp/kr-debootstrap.log 2>&1 || {
    tail -20 /tmp/kr-debootstrap.log >&2; exit 1; }
  # Images have no init: sshd needs its privilege-separation directory.
  mkdir -p "$root/run/sshd"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  # Older recipes' tarballs are dead weight.
  find "$CACHE" -name 'debian-bookworm-*.tar' ! -name "debian-bookworm-$recipe.tar" -delete
fi
docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["/bin/bash"]' \
  -c "LABEL kr.recipe=$recipe" \
  "$tarball" "$IMAGE" >/dev/null
echo "built $IMAGE (recipe $recipe)"
