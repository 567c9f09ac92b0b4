#!/usr/bin/env bash
# Builds debian-12-kr.qcow2, the small bootable cloud-init guest the VM tests
# boot under TCG (vm.md §15.3). Made from Debian's packages only: debootstrap
# a root filesystem with cloud-init, netplan, sshd and python3 (the guest
# agent's interpreter), then assemble an MBR disk with a FAT ESP (syslinux
# for BIOS/SeaBIOS, systemd-boot for UEFI) and an ext4 root, all without loop
# devices or mounts.
#
# Test-only tweak (vm.md §15.4): cloud-init's package stage is dropped from
# cloud_final_modules, because the test namespace has no uplink and the apt
# stage would spend minutes retrying DNS. The seed the runner writes stays
# exactly what production VMs get.
#
# Output: $KR_VM_IMAGES_DIR/debian-12-kr.qcow2 (default
# /var/cache/kr-test/vm-images). Cached per machine by content: the file
# debian-12-kr.recipe beside it holds the hash of this script; the image is
# rebuilt only when this script changes.
#
# Usage: tests/images/build-vm-image.sh [--force]
set -euo pipefail
OUT_DIR=${KR_VM_IMAGES_DIR:-/var/cache/kr-test/vm-images}
NAME=debian-12-kr
recipe=$(sha256sum "$0" | cut -c1-16)
image="$OUT_DIR/$NAME.qcow2"
if [ "${1:-}" != "--force" ] && [ -s "$image" ] && [ "$(cat "$OUT_DIR/$NAME.recipe" 2>/dev/null)" = "$recipe" ]; then
  echo "$image"
  exit 0
fi

for tool in debootstrap qemu-img mkfs.fat mmd mcopy syslinux sfdisk mkfs.ext4; do
  command -v "$tool" >/dev/null || {
    echo "build-vm-image: $tool is missing (scripts/install-deps.sh --vm installs the tools)" >&2; exit 1; }
done
for f in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/systemd/boot/efi/systemd-bootx64.efi; do
  [ -f "$f" ] || { echo "build-vm-image: $f is missing (syslinux-common / systemd-boot-efi)" >&2; exit 1; }
done
# The machine's own configured Debian mirror (the only one reachable).
mirror=$(grep -hoE '^(deb|URIs:)[^#]*https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
[ -n "$mirror" ] || { echo "build-vm-image: no Debian mirror in /etc/apt/sources*" >&2; exit 1; }

work=$(mktemp -d /var/tmp/kr-vm-image.XXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
start=$(date +%s)

# 1. Root filesystem. python3-cffi-backend must be named: debootstrap does not
#    resolve python3-cryptography's virtual dependency (cloud-init would stay
#    unconfigured). netplan.io, not ifupdown: cloud-init 22.4's ENI renderer
#    rejects the `to: default` route of the seed. isc-dhcp-client: cloud-init
#    depends on it.
PACKAGES=systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,cloud-init,python3-cffi-backend,netplan.io,isc-dhcp-client,openssh-server,python3,iproute2,netbase,sudo,procps,e2fsprogs
# Downloaded .debs are kept between attempts (and runs): a flaky mirror
# connection then costs one retry, not a new download of everything.
debs="${KR_IMAGE_CACHE:-/var/cache/kr-test}/vm-debs"
mkdir -p "$debs"
for attempt in 1 2 3 4; do
  echo "build-vm-image: debootstrap bookworm from $mirror (attempt $attempt)"
  rm -rf "$rootfs"
  if debootstrap --variant=minbase --cache-dir="$debs" --include="$PACKAGES" bookworm "$rootfs" "$mirror" \
      >"$work/debootstrap.log" 2>&1; then
    break
  fi
  if [ "$attempt" = 4 ]; then tail -30 "$work/debootstrap.log" >&2; exit 1; fi
  grep -E '^E:' "$work/debootstrap.log" >&2 || true
  sleep 10
done

# 2. Image tweaks.
echo 'LABEL=root / ext4 errors=remount-ro 0 1' > "$rootfs/etc/fstab"
printf 'datasource_list: [ NoCloud, None ]\n' > "$rootfs/etc/cloud/cloud.cfg.d/90-kr-test.cfg"
printf 'system_info:\n  network:\n    renderers: [netplan]\n' > "$rootfs/etc/cloud/cloud.cfg.d/91-kr-renderer.cfg"
{ echo "cloud_final_modules:"
  awk '/^cloud_final_modules:/{f=1;next} f&&/^$/{f=0} f' "$rootfs/etc/cloud/cloud.cfg" | grep -v package-update-upgrade-install
} > "$rootfs/etc/cloud/cloud.cfg.d/92-kr-test-nopkg.cfg"
grep -q ' - ' "$rootfs/etc/cloud/cloud.cfg.d/92-kr-test-nopkg.cfg" || {
  echo "build-vm-image: could not derive cloud_final_modules from cloud.cfg" >&2; exit 1; }
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
chroot "$rootfs" systemctl enable systemd-networkd >/dev/null 2>&1
chroot "$rootfs" apt-get clean
rm -rf "$rootfs/var/lib/apt/lists/"*

# 3. Disk: MBR; p1 = FAT32 ESP (type ef, active) with kernel, initrd,
#    syslinux and systemd-boot; p2 = ext4 "root" filled from the directory.
kver=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1 | sed 's#.*/vmlinuz-##')
cmdline="root=LABEL=root ro console=tty0 console=ttyS0,115200"
export MTOOLS_SKIP_CHECK=1
esp="$work/esp.img"
truncate -s 128M "$esp" && mkfs.fat -F 32 -n ESP "$esp" >/dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" "$rootfs/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$esp" "$rootfs/boot/initrd.img-$kver" ::/initrd.img
printf 'DEFAULT debian\nTIMEOUT 1\nLABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' "$cmdline" > "$work/syslinux.cfg"
mcopy -i "$esp" "$work/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$esp"
mcopy -i "$esp" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI
printf 'default debian.conf\ntimeout 0\n' > "$work/loader.conf"
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
printf 'title Debian\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$cmdline" > "$work/debian.conf"
mcopy -i "$esp" "$work/debian.conf" ::/loader/entries/debian.conf
truncate -s 2800M "$work/root.img" && mkfs.ext4 -q -L root -d "$rootfs" "$work/root.img"
disk="$work/disk.raw"
truncate -s 3000M "$disk"
printf 'label: dos\nstart=2048, size=262144, type=ef, bootable\nstart=264192, type=83\n' | sfdisk -q "$disk"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$esp" of="$disk" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=512 seek=264192 conv=notrunc,sparse status=none
mkdir -p "$OUT_DIR"
qemu-img convert -c -O qcow2 "$disk" "$work/$NAME.qcow2"
mv "$work/$NAME.qcow2" "$image"
echo "$recipe" > "$OUT_DIR/$NAME.recipe"
echo "build-vm-image: built $image ($(du -h "$image" | cut -f1), $(( $(date +%s) - start )) s)" >&2
echo "$image"
