#!/usr/bin/env bash
# Installs what bootkey's demo and tests need on Debian 12: system packages (only the
# missing ones) and the npm dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(swtpm swtpm-tools tpm2-tools openssl cryptsetup-bin postgresql)
# test/efi: cross-checks of the Authenticode code (pesign, osslsigncode, sbverify, pefile) and the
# UKIs it rebuilds the qemu-tests way (objcopy, zstd, cpio, busybox, sbsign + OVMF's snakeoil key).
PKGS+=(pesign osslsigncode sbsigntool python3-pefile binutils zstd cpio busybox-static ovmf)
# test/server/dashboard.test.ts: the dashboard in headless Chromium (driven over the DevTools pipe,
# no browser download) and the metrics output checked by promtool (Debian's prometheus package).
PKGS+=(chromium prometheus)
# test/ima/policy-sig.test.ts: IMA signatures made by evmctl (RSA, ECDSA) to cross-check src/ima/sig.ts.
PKGS+=(ima-evm-utils)
# test/packaging: the RPM and Debian packages (rpmbuild, rpmlint, lintian, a debootstrap root, groff,
# systemd-nspawn to run bootkey-server.service under systemd)
PKGS+=(rpm rpmlint lintian debootstrap groff-base systemd-container)
if [ "${BOOTKEY_SETUP_BENCH:-0}" = 1 ]; then
  PKGS+=(tang socat)
fi
if [ "${BOOTKEY_SETUP_QEMU:-0}" = 1 ]; then
  PKGS+=(qemu-system-x86 ovmf systemd-boot-efi mtools dosfstools fdisk busybox-static cpio zstd binutils sbsigntool
        dracut-core dracut-network e2fsprogs python3)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "setup: Node.js 20 or later is needed (apt-get install nodejs from a Node 20 source)" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
# The real signed Debian EFI binaries test/efi cross-checks (cached, gitignored). Not fatal:
# without them those tests skip, saying why.
bash scripts/fetch-efi.sh || echo "setup: scripts/fetch-efi.sh failed: test/efi will skip its cross-checks" >&2
