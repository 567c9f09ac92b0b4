#!/usr/bin/env bash
# Fetches every archive listed in sources.lock into the source cache
# ($KR_RELEASE_CACHE/src, default /var/cache/kr-release/src) and verifies its
# sha256. An archive already in the cache with the right hash is never fetched
# again, so a clean checkout keeps building after Debian drops a version from
# its pool (security updates do that). Only Debian's archive (deb.debian.org)
# and PyPI (pip) are contacted. Usage: fetch-sources.sh [name...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KR_RELEASE_CACHE:-/var/cache/kr-release}/src
mirror=${KR_DEBIAN_MIRROR:-http://deb.debian.org}
mkdir -p "$cache"

fetch_one() {  # name sha file locations...
  local name=$1 sha=$2 file=$3; shift 3
  local dest="$cache/$file"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then return 0; fi
  local tmp; tmp=$(mktemp -d "$cache/.fetch.XXXX")
  local loc
  for loc in "$@"; do
    case $loc in
      pypi:*) python3 -m pip download -q --no-deps --only-binary=:all: \
                --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
                -d "$tmp" "${loc#pypi:}" >&2 || continue ;;
      debian:*) curl -fsSL --retry 3 -o "$tmp/$file" "$mirror/debian/pool/${loc#debian:}/$file" || continue ;;
      debian-security:*) curl -fsSL --retry 3 -o "$tmp/$file" \
                "$mirror/debian-security/pool/updates/${loc#debian-security:}/$file" || continue ;;
      *) echo "fetch-sources: unknown location $loc" >&2; continue ;;
    esac
    if [ -f "$tmp/$file" ] && echo "$sha  $tmp/$file" | sha256sum -c --status; then
      mv "$tmp/$file" "$dest"; rm -rf "$tmp"; echo "fetched $file" >&2; return 0
    fi
    echo "fetch-sources: $file from $loc: missing or wrong sha256" >&2
  done
  rm -rf "$tmp"
  echo "fetch-sources: cannot get $name ($file, sha256 $sha); put it into $cache by hand" >&2
  return 1
}

rc=0
while read -r name sha file locs; do
  case $name in ''|'#'*) continue ;; esac
  if [ $# -gt 0 ]; then
    want=0; for n in "$@"; do [ "$n" = "$name" ] && want=1; done
    [ $want = 1 ] || continue
  fi
  # shellcheck disable=SC2086
  fetch_one "$name" "$sha" "$file" $locs || rc=1
done <"$here/sources.lock"
exit $rc
