#!/usr/bin/env bash
# Installs the Debian 12 packages the runner needs to build, run and test.
# Idempotent: apt runs only when a package is missing.
set -euo pipefail

BUILD_PKGS=(g++ cmake ninja-build ccache pkg-config
  libboost1.81-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libsqlite3-dev libnl-route-3-dev libssl-dev libssh-dev prometheus-cpp-dev)
TEST_PKGS=(libgtest-dev googletest docker.io busybox-static iproute2 procps debootstrap openssh-client openssh-server inotify-tools iptables iputils-ping
  qemu-system-x86 qemu-utils genisoimage python3-yaml
  python3-prometheus-client dpkg-dev
  clang libclang-rt-14-dev)  # ASan/UBSan + libFuzzer build (scripts/test-asan.sh)
# --vm: also the tools tests/images/build-vm-image.sh needs (the bootable
# test VM disk); implies --test.
VM_IMAGE_PKGS=(mtools dosfstools syslinux syslinux-common fdisk systemd-boot-efi e2fsprogs)

# --release: what scripts/release.sh and its packages need beyond the build
# (libnl's grammars: flex, bison; rpmbuild; qemu-user for the arm64 checks).
RELEASE_PKGS=(flex bison rpm qemu-user-static binutils xz-utils curl)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" = "--release" ]; then want=("${RELEASE_PKGS[@]}"); fi
if [ "${1:-}" = "--vm" ]; then want+=("${VM_IMAGE_PKGS[@]}"); set -- --test; fi
if [ "${1:-}" = "--test" ]; then want+=("${TEST_PKGS[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# The docker CLI/engine may come from another package than docker.io
# (e.g. docker-ce); accept any working dockerd.
if [ "${1:-}" = "--test" ] && command -v dockerd >/dev/null 2>&1; then
  tmp=(); for p in "${missing[@]}"; do [ "$p" = docker.io ] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if ! python3 -c 'import pytest' >/dev/null 2>&1 && [ "${1:-}" = "--test" ]; then
  missing+=(python3-pytest)
fi

# WebSocket client for the terminal/filesystem-watch e2e tests.
if ! python3 -c 'import websocket' >/dev/null 2>&1 && [ "${1:-}" = "--test" ]; then
  missing+=(python3-websocket)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
