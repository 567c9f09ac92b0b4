#!/usr/bin/env bash
# Builds the local test images (no registry is reachable): a tiny image made
# by `docker import` of a busybox-static rootfs. Test scripts may use the
# docker CLI; the runner itself never does (Engine API only).
set -euo pipefail
IMAGE=${KR_TEST_IMAGE:-kr-test/busybox:test}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "busybox-static is not installed" >&2; exit 1; }
if ! file "$BUSYBOX" 2>/dev/null | grep -q static && ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "$BUSYBOX is not statically linked (install busybox-static)" >&2; exit 1
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/shared" "$root/usr/bin" "$root/usr/sbin" "$root/sbin"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$IMAGE" >/dev/null
echo "built $IMAGE"
