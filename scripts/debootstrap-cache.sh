#!/bin/sh
# Creates the clean Debian 12 root the package test installs the .debs into (cached; gitignored):
#   scripts/debootstrap-cache.sh [DIR]      default .cache/debootstrap-bookworm
# minbase + the packages' dependencies (openssl, systemd, dracut-core, cryptsetup-bin), so that
# `dpkg -i` needs no network later. Mirror: $BOOTKEY_DEBIAN_MIRROR (default deb.debian.org).
set -eu
dir=${1:-$(dirname "$0")/../.cache/debootstrap-bookworm}
mirror=${BOOTKEY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ -x "$dir/usr/bin/dpkg" ] && { echo "debootstrap-cache: $dir exists"; exit 0; }
rm -rf "$dir.tmp"
debootstrap --variant=minbase --include=openssl,systemd,init-system-helpers,dracut-core,cryptsetup-bin \
    bookworm "$dir.tmp" "$mirror"
rm -rf "$dir.tmp/var/cache/apt/archives/"*.deb
mv "$dir.tmp" "$dir"
echo "debootstrap-cache: $dir"
