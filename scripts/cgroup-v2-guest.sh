#!/usr/bin/env bash
# By-hand check of the runner on a cgroup v2 (unified hierarchy) node
# (issue 17 point 6). The build machines run cgroup v1, so this boots a
# Debian 12 guest under QEMU/TCG with Debian's default cgroup setup (no
# kernel parameter touches it), installs the runner package and docker.io
# in it and runs the command-task / Docker VPS end-to-end subset there.
# Not part of CI (TCG: one run takes tens of minutes). Results: docs/interop.md.
#
# Usage:
#   scripts/cgroup-v2-guest.sh image           build the guest disk and the test image rootfs (cached)
#   scripts/cgroup-v2-guest.sh boot            boot it (overlay disk; waits for ssh)
#   scripts/cgroup-v2-guest.sh ssh [cmd...]    run a command in the guest
#   scripts/cgroup-v2-guest.sh install DEB     hand in DEB and install it (apt-get install ./DEB)
#   scripts/cgroup-v2-guest.sh binary PATH     hand in a runner binary (and its non-glibc libraries)
#   scripts/cgroup-v2-guest.sh test [pytest-args...]
#                                              hand in tests/, build the test images, run the subset
#   scripts/cgroup-v2-guest.sh stop            power the guest off (kills QEMU if it hangs)
#   scripts/cgroup-v2-guest.sh all DEB|PATH    image + boot + install/binary + test + stop
#
# The guest: 2 vCPUs in two NUMA nodes (one CPU each, so NUMA/cpuset binding
# is exercised), 3.5 GiB, user-mode network (Debian's mirror stays reachable
# through it, nothing else is needed), ssh on 127.0.0.1:$KR_CGV2_SSH_PORT,
# the folder $CACHE/share on /mnt/share (9p). Everything it needs is
# debootstrapped on the build machine from Debian's packages: the guest never
# downloads anything. The test images are built inside the guest by the same
# scripts the CI uses (the Debian image from a rootfs tarball debootstrapped
# here, handed in through the share).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${KR_CGV2_DIR:-/var/cache/kr-test/cgroup-v2}
PORT=${KR_CGV2_SSH_PORT:-10622}
MEM=${KR_CGV2_MEM_MIB:-3584}
SHARE="$CACHE/share"
RUN="$CACHE/run"
KEY="$CACHE/id_ed25519"
recipe=$(sed -n '/^# --- image recipe/,/^# --- end of image recipe/p' "$0" | sha256sum | cut -c1-16)

die() { echo "cgroup-v2-guest: $*" >&2; exit 1; }
log() { echo "cgroup-v2-guest: $*" >&2; }

mirror() {
  grep -hoE '^(deb|URIs:)[^#]*https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true
}

# --- image recipe (its text is hashed: the cached disk is rebuilt when it changes)
GUEST_PACKAGES=systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,openssh-server,python3,python3-pytest,python3-websocket,python3-prometheus-client,iproute2,netbase,procps,e2fsprogs,docker.io,apparmor,busybox-static,file,ca-certificates,iptables,util-linux,less
build_image() {
  local disk="$CACHE/debian-12-cgv2-$recipe.raw"
  if [ -s "$disk" ] && [ -s "$CACHE/vmlinuz-$recipe" ]; then echo "$disk"; return; fi
  for tool in debootstrap mkfs.ext4 ssh-keygen qemu-img; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  local m; m=$(mirror); [ -n "$m" ] || die "no Debian mirror in /etc/apt/sources*"
  mkdir -p "$CACHE" "$CACHE/debs"
  [ -s "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C kr-cgv2 -f "$KEY"
  local work; work=$(mktemp -d /var/tmp/kr-cgv2.XXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  local root="$work/root" start; start=$(date +%s)
  for attempt in 1 2 3; do
    log "debootstrap bookworm (guest) from $m, attempt $attempt"
    rm -rf "$root"
    if debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$GUEST_PACKAGES" bookworm "$root" "$m" \
        >"$work/debootstrap.log" 2>&1; then break; fi
    [ "$attempt" = 3 ] && { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    sleep 10
  done
  echo krcgv2 > "$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 krcgv2\n' > "$root/etc/hosts"
  printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$root/etc/fstab"
  printf '[Match]\nName=en*\n[Network]\nDHCP=yes\n' > "$root/etc/systemd/network/10-en.network"
  rm -f "$root/etc/resolv.conf"; echo 'nameserver 10.0.2.3' > "$root/etc/resolv.conf"
  mkdir -p "$root/root/.ssh" "$root/mnt/share"
  install -m 600 "$KEY.pub" "$root/root/.ssh/authorized_keys"
  echo 'UseDNS no' > "$root/etc/ssh/sshd_config.d/kr.conf"
  printf '9p\n9pnet_virtio\n' > "$root/etc/modules-load.d/kr-9p.conf"
  printf 'krshare /mnt/share 9p trans=virtio,version=9p2000.L,msize=524288,nofail 0 0\n' >> "$root/etc/fstab"
  : > "$root/etc/machine-id"; rm -f "$root/var/lib/dbus/machine-id"
  chroot "$root" systemctl enable systemd-networkd >/dev/null 2>&1
  # Nothing periodic competes with the tests for the two emulated CPUs.
  for t in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$t"
  done
  chroot "$root" apt-get clean
  rm -rf "$root/var/lib/apt/lists/"*
  local kver; kver=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1 | sed 's#.*/vmlinuz-##')
  cp "$root/boot/vmlinuz-$kver" "$CACHE/vmlinuz-$recipe"
  cp "$root/boot/initrd.img-$kver" "$CACHE/initrd-$recipe"
  truncate -s 12G "$work/disk.raw"
  mkfs.ext4 -q -L root -d "$root" "$work/disk.raw"
  mv "$work/disk.raw" "$disk"
  find "$CACHE" -maxdepth 1 \( -name 'debian-12-cgv2-*.raw' -o -name 'vmlinuz-*' -o -name 'initrd-*' \) \
    ! -name "*$recipe*" -delete
  rm -rf "$work"; trap - EXIT
  log "built $disk in $(( $(date +%s) - start )) s"
  echo "$disk"
}
# --- end of image recipe

# The Debian test image's rootfs tarball, debootstrapped here (fast) instead
# of in the guest (TCG): build-debian-image.sh finds it by its recipe name.
debian_image_tarball() {
  local r; r=$(sha256sum "$REPO/tests/images/build-debian-image.sh" | cut -c1-16)
  mkdir -p "$SHARE/imgcache"
  local t="$SHARE/imgcache/debian-bookworm-$r.tar"
  [ -s "$t" ] && return
  if [ -s "/var/cache/kr-test/debian-bookworm-$r.tar" ]; then cp "/var/cache/kr-test/debian-bookworm-$r.tar" "$t"; return; fi
  local pk; pk=$(sed -n 's/^PACKAGES=//p' "$REPO/tests/images/build-debian-image.sh")
  local root; root=$(mktemp -d /var/tmp/kr-cgv2-img.XXXX)
  log "debootstrap bookworm (Debian test image: $pk)"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$pk" bookworm "$root" "$(mirror)" \
    >"$CACHE/debootstrap-image.log" 2>&1 || { rm -rf "$root"; die "debootstrap of the test image failed"; }
  mkdir -p "$root/run/sshd"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" --numeric-owner -cf "$t.tmp" . && mv "$t.tmp" "$t"
  rm -rf "$root"
}

gssh() {
  ssh -q -i "$KEY" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=20 -o ServerAliveInterval=30 -o ServerAliveCountMax=10 -o LogLevel=ERROR root@127.0.0.1 "$@"
}

boot() {
  local disk; disk=$(build_image)
  mkdir -p "$RUN" "$SHARE"
  if [ -s "$RUN/qemu.pid" ] && kill -0 "$(cat "$RUN/qemu.pid")" 2>/dev/null; then
    log "guest already running (pid $(cat "$RUN/qemu.pid"))"; return
  fi
  rm -f "$RUN/overlay.qcow2"
  qemu-img create -q -f qcow2 -F raw -b "$disk" "$RUN/overlay.qcow2"
  log "booting (TCG, 2 vCPUs in 2 NUMA nodes, $MEM MiB); console: $RUN/console.log"
  local half=$(( MEM / 2 ))
  qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp 2 -m "$MEM" \
    -object memory-backend-ram,id=m0,size="${half}M" -object memory-backend-ram,id=m1,size="$(( MEM - half ))M" \
    -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1 \
    -kernel "$CACHE/vmlinuz-$recipe" -initrd "$CACHE/initrd-$recipe" \
    -append "root=/dev/vda rw console=ttyS0,115200 quiet" \
    -drive file="$RUN/overlay.qcow2",if=virtio,format=qcow2,cache=unsafe \
    -netdev user,id=n0,hostfwd=tcp:127.0.0.1:"$PORT"-:22 -device virtio-net-pci,netdev=n0 \
    -virtfs local,path="$SHARE",mount_tag=krshare,security_model=none,id=krshare \
    -display none -serial file:"$RUN/console.log" -monitor none \
    -daemonize -pidfile "$RUN/qemu.pid"
  local start; start=$(date +%s)
  until gssh true 2>/dev/null; do
    kill -0 "$(cat "$RUN/qemu.pid")" 2>/dev/null || die "QEMU exited; see $RUN/console.log"
    [ $(( $(date +%s) - start )) -lt 900 ] || die "no ssh after 900 s; see $RUN/console.log"
    sleep 5
  done
  log "ssh up after $(( $(date +%s) - start )) s"
}

stop() {
  [ -s "$RUN/qemu.pid" ] || return 0
  local pid; pid=$(cat "$RUN/qemu.pid")
  kill -0 "$pid" 2>/dev/null || { rm -f "$RUN/qemu.pid"; return 0; }
  gssh 'systemctl poweroff' 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 2; done
  if kill -0 "$pid" 2>/dev/null; then log "no clean poweroff in 120 s: killing QEMU $pid"; kill "$pid"; sleep 2; fi
  rm -f "$RUN/qemu.pid"
}

install_deb() {
  local deb=$1; [ -s "$deb" ] || die "no package $deb"
  cp "$deb" "$SHARE/"
  gssh "apt-get install -y -q /mnt/share/$(basename "$deb") >/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 1; }; kohakuriver --version"
}

# Hands in a runner binary without a package (e.g. ./build/kohakuriver): a
# stripped copy in /usr/local/bin, with the non-glibc libraries it links
# (a Debian-linked build) in /usr/local/lib.
install_binary() {
  local bin=$1; [ -x "$bin" ] || die "no binary $bin"
  rm -rf "$SHARE/bin" && mkdir -p "$SHARE/bin/lib"
  strip -o "$SHARE/bin/kohakuriver" "$bin"
  [ -x "$(dirname "$bin")/tunnel-client" ] && cp "$(dirname "$bin")/tunnel-client" "$SHARE/bin/"
  ldd "$bin" | awk '/=>/{print $3}' | grep -vE '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+)\.so' \
    | xargs -r -I{} cp -L {} "$SHARE/bin/lib/"
  gssh 'cp /mnt/share/bin/lib/* /usr/local/lib/ 2>/dev/null; ldconfig
    install -m755 /mnt/share/bin/kohakuriver /mnt/share/bin/tunnel-client /usr/local/bin/ 2>/dev/null || install -m755 /mnt/share/bin/kohakuriver /usr/local/bin/
    kohakuriver --version'
}

# The subset (issue 17 point 6): command tasks (limits, OOM, kill, pause/resume,
# NUMA/cpuset), task hardening, Docker VPS, exec-based terminal kill, metrics.
SUBSET=(tests/e2e/test_cgroup.py tests/e2e/test_tasks.py tests/e2e/test_vps.py tests/e2e/test_terminal_fs.py
        tests/e2e/test_metrics.py tests/e2e/test_task_hardening.py)

# One pytest per file (or node id) in the guest, detached from ssh (TCG: the
# whole subset takes about 40 minutes); logs in $SHARE/results/<spec>.log,
# summary.log there ends with DONE.
run_tests() {
  debian_image_tarball
  rm -rf "$SHARE/kr" "$SHARE/results"; mkdir -p "$SHARE/kr" "$SHARE/results"
  cp -a "$REPO/tests" "$SHARE/kr/"
  cat > "$SHARE/run-subset.sh" <<'GUEST'
#!/bin/bash
cd /root/kr || exit 1
R=/mnt/share/results
export KR_BINARY=${KR_BINARY:-$(command -v kohakuriver)} KR_TEST_TIMEOUT=${KR_TEST_TIMEOUT:-900}
for spec in "$@"; do
  name=$(echo "$spec" | sed "s#tests/e2e/##; s#[^A-Za-z0-9_.]#_#g")
  echo "=== $spec $(date -u +%T)" >> $R/summary.log
  python3 -m pytest -q -rA -p no:cacheprovider ${PYTEST_ARGS:-} "$spec" > "$R/$name.log" 2>&1
  echo "=== $spec rc=$? $(date -u +%T): $(tail -1 $R/$name.log)" >> $R/summary.log
done
echo DONE >> $R/summary.log
GUEST
  chmod +x "$SHARE/run-subset.sh"
  local args=("$@"); [ ${#args[@]} -gt 0 ] || args=("${SUBSET[@]}")
  # shellcheck disable=SC2029
  gssh "set -e; stat -fc 'cgroup fs: %T' /sys/fs/cgroup; cat /sys/fs/cgroup/cgroup.controllers
    docker info --format 'docker {{.ServerVersion}} cgroup v{{.CgroupVersion}} driver {{.CgroupDriver}}'
    kohakuriver doctor 2>&1 | grep cgroup || true
    rm -rf /root/kr && cp -a /mnt/share/kr /root/kr && cd /root/kr
    tests/images/build-test-images.sh
    KR_IMAGE_CACHE=/mnt/share/imgcache tests/images/build-debian-image.sh
    nohup /mnt/share/run-subset.sh ${args[*]} >/dev/null 2>&1 </dev/null &"
  log "running ${args[*]} in the guest; progress: $SHARE/results/summary.log"
  until grep -qx DONE "$SHARE/results/summary.log" 2>/dev/null; do
    kill -0 "$(cat "$RUN/qemu.pid")" 2>/dev/null || die "QEMU exited"
    sleep 20
  done
  cat "$SHARE/results/summary.log"
  ! grep -q ' rc=[1-9]' "$SHARE/results/summary.log"
}

cmd=${1:-}; shift || true
case "$cmd" in
  image) build_image; debian_image_tarball ;;
  boot) boot ;;
  ssh) gssh "$@" ;;
  install) install_deb "$1" ;;
  binary) install_binary "$1" ;;
  test) run_tests "$@" ;;
  stop) stop ;;
  all) what=$1; shift; boot; trap stop EXIT
    case "$what" in *.deb) install_deb "$what" ;; *) install_binary "$what" ;; esac
    run_tests "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
