#!/usr/bin/env bash
# Fetches the real signed EFI binaries that test/efi/ cross-checks against (Debian 12 packages),
# into the gitignored test/data/efi-cache/ (cached: a second run does nothing). Run by
# scripts/setup.sh; the tests run it too and skip, saying why, only if the download is impossible.
#   scripts/fetch-efi.sh        prints nothing on success; test/data/efi-cache/MANIFEST lists the files
# The kernel is pinned to the one test/data/qemu/ was made with (its PCR 4 events hash it).
set -euo pipefail
cd "$(dirname "$0")/.."
C=test/data/efi-cache
KVER=${BK_KVER:-6.1.0-56-amd64}
PKGS=(shim-signed grub-efi-amd64-signed systemd-boot-efi fwupd-amd64-signed memtest86+ "linux-image-$KVER")
[ -f "$C/MANIFEST" ] && exit 0
mkdir -p "$C/deb" "$C/root"
for p in "${PKGS[@]}"; do
  ls "$C/deb/${p}_"*.deb >/dev/null 2>&1 && continue
  # Sandbox user root: the cache dir is not readable by _apt.
  if ! (cd "$C/deb" && apt-get -q -o APT::Sandbox::User=root download "$p" >/dev/null 2>&1); then
    # Package lists may be missing or stale (a superseded version is gone from the mirror).
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    (cd "$C/deb" && apt-get -q -o APT::Sandbox::User=root download "$p" >/dev/null) ||
      { echo "fetch-efi: cannot apt-get download $p (network? the version gone from the archive?)" >&2; exit 1; }
  fi
done
for d in "$C"/deb/*.deb; do dpkg -x "$d" "$C/root"; done
{
  echo "shim $C/root/usr/lib/shim/shimx64.efi.signed"
  echo "grub $C/root/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
  echo "sdboot $C/root/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
  echo "stub $C/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
  echo "fwupd $C/root/usr/libexec/fwupd/efi/fwupdx64.efi.signed"
  echo "kernel $C/root/boot/vmlinuz-$KVER"
  for m in "$C"/root/boot/memtest86+*.efi; do echo "memtest-$(basename "$m" .efi | sed 's/memtest86+//') $m"; done
} >"$C/MANIFEST.tmp"
while read -r _ f; do [ -f "$f" ] || { echo "fetch-efi: $f missing from its package" >&2; exit 1; }; done <"$C/MANIFEST.tmp"
for d in "$C"/deb/*.deb; do dpkg-deb -f "$d" Package Version | paste -sd' '; done >"$C/VERSIONS"
mv "$C/MANIFEST.tmp" "$C/MANIFEST"
