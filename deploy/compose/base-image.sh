#!/usr/bin/env bash
# base-image.sh TAG: makes the Debian 12 base image (debian:bookworm-slim by
# default) from Debian's packages with debootstrap, for machines that reach
# Debian's package mirror but no container registry.
#
# The mirror is the one this machine's apt uses (read from
# /etc/apt/sources.list.d/ and /etc/apt/sources.list at run time; nothing
# about this machine is written into the repository). The root file system
# is cached as a tarball in $COMPOSE_TEST_CACHE (default
# /var/cache/trygg-compose), so later runs only `docker import` it (~5 s
# instead of ~30 s); delete the tarball to refresh it.
#
# Needs root, debootstrap and a running docker (DOCKER_HOST).
set -euo pipefail
tag=${1:-debian:bookworm-slim}
cache=${COMPOSE_TEST_CACHE:-/var/cache/trygg-compose}
docker=${DOCKER:-docker}
tarball=$cache/debian-bookworm-minbase.tar

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image: $tag present"
  exit 0
fi

mirror() {
  local f url
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: the first URIs: line of a stanza for Debian's main archive.
    url=$(awk '/^URIs:/ {print $2}' "$f" | grep -v -- '-security' | head -1)
    [ -n "$url" ] && { echo "$url"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    url=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
    [ -n "$url" ] && { echo "$url"; return; }
  done
  echo http://deb.debian.org/debian
}

mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  url=$(mirror)
  root=$(mktemp -d "$cache/root.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "base-image: debootstrap bookworm from $url"
  debootstrap --variant=minbase bookworm "$root" "$url" >"$cache/debootstrap.log" 2>&1 || {
    tail -20 "$cache/debootstrap.log" >&2
    exit 1
  }
  # What the official slim image also does: no apt caches, no docs.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
"$docker" import "$tarball" "$tag" >/dev/null
echo "base-image: $tag imported from $tarball"
