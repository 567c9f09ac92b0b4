#!/usr/bin/env bash
# Prepares a local APT repository with what a .deb needs beyond the clean
# Debian test image (kr-test/debian:bookworm), so the package can be
# installed into a container with no network at all.
#   usage: prepare-deb-repo.sh PACKAGE.deb   → prints the repository directory
# The dependency closure is resolved and downloaded on this machine (from its
# configured Debian mirror, with apt-get download); the repository is cached
# under $KR_IMAGE_CACHE keyed by the sorted list of package=version it holds,
# so it is fetched once per machine and dependency set.
set -euo pipefail
deb=$1
IMAGE=${KR_DEBIAN_IMAGE:-kr-test/debian:bookworm}
CACHE=${KR_IMAGE_CACHE:-/var/cache/kr-test}
command -v dpkg-scanpackages >/dev/null || { echo "prepare-deb-repo: dpkg-scanpackages missing (dpkg-dev)" >&2; exit 1; }

# Direct dependencies (alternatives: the first one), without version constraints.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/^ +//; s/ +$//' | { grep -v '^$' || true; })
# The image's own packages (read in a container without network).
installed=$(docker run --rm --network none "$IMAGE" dpkg-query -W -f '${Package}\n' | sort -u)
# A virtual package (e.g. libspdlog1.10-fmt9) stands for its first provider.
real() {
  for p in "$@"; do
    if apt-cache policy "$p" | grep -q 'Candidate: (none)' || [ -z "$(apt-cache policy "$p")" ]; then
      apt-cache showpkg "$p" | awk '/^Reverse Provides:/ {f=1; next} f && NF {print $1; exit}'
    else
      echo "$p"
    fi
  done
}
# The recursive closure as APT resolves it here, virtual packages replaced
# by providers until nothing changes.
roots=$(real $deps | sort -u)
while :; do
  out=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances $roots)
  closure=$(echo "$out" | { grep -E '^[a-z0-9]' || true; } | sort -u)
  virtuals=$(echo "$out" | { grep -E '^<' || true; } | tr -d '<>' | sort -u)
  more=$(comm -13 <(echo "$roots") <( (echo "$roots"; real $virtuals) | { grep -v '^$' || true; } | sort -u))
  [ -z "$more" ] && break
  roots=$( (echo "$roots"; echo "$more") | sort -u)
done
need=$(comm -23 <(echo "$closure") <(echo "$installed"))
list=""
for p in $need; do
  v=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
  [ -n "$v" ] && [ "$v" != "(none)" ] && list+="$p=$v"$'\n'
done
key=$( (echo "$IMAGE"; printf '%s' "$list") | sha256sum | cut -c1-16)
repo="$CACHE/debrepo-$key"
if [ ! -s "$repo/Packages" ]; then
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/debrepo-tmp.XXXX")
  if [ -n "$list" ]; then
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root $list >/dev/null) || { rm -rf "$tmp"; exit 1; }
  fi
  (cd "$tmp" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
  [ -s "$tmp/Packages" ] || echo "# no packages needed" >"$tmp/Packages"
  rm -rf "$repo"
  mv "$tmp" "$repo"
  chmod 755 "$repo"
  # Older dependency sets are dead weight.
  find "$CACHE" -maxdepth 1 -name 'debrepo-*' ! -name "debrepo-$key" -exec rm -rf {} +
fi
echo "$repo"
