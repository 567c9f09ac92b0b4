#!/usr/bin/env bash
# Packages the release binaries of scripts/release.sh (dist/release/<arch>)
# for each architecture built there:
#   dist/kohakuriver-runner_<version>_{amd64,arm64}.deb    Depends: libc6 (>= 2.28) only
#   dist/kohakuriver-runner-<version>-1.{x86_64,aarch64}.rpm  same files, unit, scriptlets
#   dist/kohakuriver-runner-<version>-linux-{x86_64,aarch64}.tar.gz
#   dist/SHA256SUMS
# The version is project(VERSION) of CMakeLists.txt. Needs dpkg-deb and
# rpmbuild (scripts/install-deps.sh --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^project(kohakuriver_runner VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$version" ] || { echo "package.sh: no project(VERSION) in CMakeLists.txt" >&2; exit 1; }
arches=()
for a in x86_64 aarch64; do [ -x "dist/release/$a/kohakuriver" ] && arches+=("$a"); done
[ ${#arches[@]} -gt 0 ] || { echo "package.sh: nothing in dist/release (run scripts/release.sh)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kr-release-pkg.XXXX")
trap 'rm -rf "$work"' EXIT
# The sample configuration is what `init config --runner` writes (the same
# on every architecture): written by a binary that runs here.
native=dist/release/$(uname -m)/kohakuriver
[ -x "$native" ] || native=build/kohakuriver
"$native" init config --runner -o "$work" >/dev/null
config="$work/runner_config.py"

stage() {  # arch, root dir: the installed file tree (/usr prefix)
  local arch=$1 root=$2
  install -D -m 0755 "dist/release/$arch/kohakuriver" "$root/usr/bin/kohakuriver"
  install -D -m 0755 "dist/release/$arch/tunnel-client" "$root/usr/bin/tunnel-client"
  ln -sf kohakuriver "$root/usr/bin/kohakuriver.runner"
  install -D -m 0644 packaging/kohakuriver-runner.service "$root/usr/lib/systemd/system/kohakuriver-runner.service"
  install -D -m 0644 "$config" "$root/etc/kohakuriver/runner_config.py"
}

deb() {
  local arch=$1 debarch=amd64 qemu=qemu-system-x86 firmware=ovmf
  [ "$arch" = aarch64 ] && debarch=arm64 qemu=qemu-system-arm firmware=qemu-efi-aarch64
  local root="$work/deb-$arch"
  stage "$arch" "$root"
  mkdir -p "$root/DEBIAN"
  cp packaging/deb/conffiles packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
  chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
  cat >"$root/DEBIAN/control" <<C
Package: kohakuriver-runner
Version: $version
Architecture: $debarch
Maintainer: KohakuRiver runner maintainers <noreply@localhost>
Section: admin
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= 2.28)
Recommends: docker.io | docker-ce, iptables
Suggests: $qemu, $firmware
Description: KohakuRiver runner agent (native, portable build)
 Runs KohakuRiver tasks and VPS on a compute node: registers with the
 KohakuRiver host, reports node metrics, runs Docker containers and QEMU VMs.
 Statically linked except for glibc (2.28 or newer).
C
  dpkg-deb --root-owner-group -Zxz --build "$root" "dist/kohakuriver-runner_${version}_${debarch}.deb" >/dev/null
}

rpm_pkg() {
  local arch=$1
  local top="$work/rpm-$arch"
  mkdir -p "$top"/{BUILD,RPMS,SPECS,SOURCES,SRPMS}
  stage "$arch" "$top/root"
  # Scriptlets: the .deb's intent (state directory; daemon-reload; stop on
  # erase, not on upgrade; state removed never: rpm has no purge).
  cat >"$top/SPECS/kr.spec" <<S
Name: kohakuriver-runner
Version: $version
Release: 1
Summary: KohakuRiver runner agent (native, portable build)
License: see upstream
AutoReqProv: no
Requires: glibc >= 2.28
Recommends: docker-ce
%description
Runs KohakuRiver tasks and VPS on a compute node: registers with the
KohakuRiver host, reports node metrics, runs Docker containers and QEMU VMs.
Statically linked except for glibc (2.28 or newer).
%install
cp -a "$top/root/." %{buildroot}/
%post
mkdir -p /var/lib/kohakuriver && chmod 0700 /var/lib/kohakuriver
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
%preun
if [ \$1 -eq 0 ] && [ -d /run/systemd/system ]; then systemctl stop kohakuriver-runner.service >/dev/null 2>&1 || :; fi
%postun
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
if [ \$1 -ge 1 ] && [ -d /run/systemd/system ]; then systemctl try-restart kohakuriver-runner.service >/dev/null 2>&1 || :; fi
%files
/usr/bin/kohakuriver
/usr/bin/kohakuriver.runner
/usr/bin/tunnel-client
/usr/lib/systemd/system/kohakuriver-runner.service
%dir /etc/kohakuriver
%config(noreplace) /etc/kohakuriver/runner_config.py
S
  rpmbuild -bb --quiet --target "$arch-linux" --define "_topdir $top" \
    --define "__strip /bin/true" --define "debug_package %{nil}" --define "_build_id_links none" \
    "$top/SPECS/kr.spec" >"$top/rpmbuild.log" 2>&1 || { cat "$top/rpmbuild.log" >&2; return 1; }
  cp "$top/RPMS/$arch/kohakuriver-runner-$version-1.$arch.rpm" dist/
}

tarball() {
  local arch=$1
  local name="kohakuriver-runner-$version-linux-$arch"
  local d="$work/tar/$name"
  mkdir -p "$d"
  cp "dist/release/$arch/kohakuriver" "dist/release/$arch/tunnel-client" "$d/"
  ln -sf kohakuriver "$d/kohakuriver.runner"
  cp packaging/kohakuriver-runner.service "$config" "$d/"
  cat >"$d/README" <<R
KohakuRiver runner $version for $arch Linux (glibc 2.28 or newer).

  kohakuriver       the runner (needs only glibc; run 'kohakuriver --version')
  kohakuriver.runner  the same program under upstream's console script name
  tunnel-client     static; the runner bind-mounts it into containers
  runner_config.py  sample configuration (kohakuriver init config --runner)
  kohakuriver-runner.service  systemd unit of the packages (binary in /usr/bin)

Install:
  tar -xzf $name.tar.gz && cd $name
  install -m 0755 kohakuriver tunnel-client /usr/local/bin/
  ln -sf kohakuriver /usr/local/bin/kohakuriver.runner
  kohakuriver init config --runner          # writes ~/.kohakuriver/runner_config.py
  kohakuriver init service --runner         # writes and enables the systemd unit
Not included: Docker Engine, QEMU/OVMF (VMs), the NVIDIA driver (GPU metrics).
R
  tar -C "$work/tar" --owner=0 --group=0 -czf "dist/$name.tar.gz" "$name"
}

mkdir -p dist
for a in "${arches[@]}"; do
  deb "$a"; rpm_pkg "$a"; tarball "$a"
done
(cd dist && sha256sum kohakuriver-runner[_-]"$version"[_-]*.{deb,rpm,tar.gz} 2>/dev/null >SHA256SUMS)
ls dist/kohakuriver-runner*"$version"* dist/SHA256SUMS
