#!/usr/bin/env bash
# Regenerates test/data/qemu/<name>.bin (raw TCG2 event log from OVMF + the kernel's EFI stub)
# and <name>.pcrs.json (PCRs 0-23, sha1 + sha256, read by the guest from sysfs right after boot),
# plus <name>.ima.txt (IMA's log: IMA extends PCR 10 with boot_aggregate, outside the firmware log).
#   qemu-tests/make-eventlogs.sh [name ...]     default: all boots below
# Boots (OVMF 4M + swtpm, q35, TCG, ~15-25 s each):
#   uki-sb-off            UKI at \EFI\BOOT\BOOTX64.EFI, Secure Boot off
#   uki-sb-on             same UKI sbsigned with the snakeoil key, secboot OVMF + snakeoil vars
#   uki-sb-off-cmdline2   as uki-sb-off with another kernel command line in the UKI
#   sdboot-sb-off         systemd-boot as BOOTX64.EFI, type #1 entry (vmlinuz + initrd + options)
#   uki-sb-off-4banks     as uki-sb-off with swtpm's sha1+sha256+sha384+sha512 banks active (the
#                         log carries 4 digests per event; the .pcrs.json still has sha1 + sha256)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OUT=$BK_ROOT/test/data/qemu
B=$BK_WORK/eventlogs
mkdir -p "$OUT" "$B"
CMDLINE1="console=ttyS0 panic=-1 loglevel=4"
CMDLINE2="console=ttyS0 panic=-1 loglevel=4 bootkey.test=cmdline2"

bk_fetch_kernel
bk_log "kernel $BK_KVER; $(dpkg-query -W -f '${Package} ${Version}, ' ovmf systemd-boot-efi swtpm qemu-system-x86 busybox-static)"
bk_build_initramfs "$B/initrd.zst" "$BK_ROOT/qemu-tests/initramfs/dump-init.sh"

# Builds the ESP for boot NAME into $B/NAME.esp; prints "sb" or "nosb".
build() {
  local name=$1
  case $name in
    uki-sb-off|uki-sb-on|uki-sb-off-4banks)
      bk_build_uki "$B/uki1.efi" "$BK_VMLINUZ" "$B/initrd.zst" "$CMDLINE1"
      if [ "$name" = uki-sb-on ]; then
        bk_sign "$B/uki1.signed.efi" "$B/uki1.efi"
        bk_build_esp "$B/$name.esp" "$B/uki1.signed.efi:EFI/BOOT/BOOTX64.EFI"; echo sb
      else
        bk_build_esp "$B/$name.esp" "$B/uki1.efi:EFI/BOOT/BOOTX64.EFI"; echo nosb
      fi ;;
    uki-sb-off-cmdline2)
      bk_build_uki "$B/uki2.efi" "$BK_VMLINUZ" "$B/initrd.zst" "$CMDLINE2"
      bk_build_esp "$B/$name.esp" "$B/uki2.efi:EFI/BOOT/BOOTX64.EFI"; echo nosb ;;
    sdboot-sb-off)
      printf 'timeout 0\ndefault bootkey.conf\n' >"$B/loader.conf"
      printf 'title bootkey test\nlinux /bootkey/vmlinuz\ninitrd /bootkey/initrd.zst\noptions %s\n' \
        "$CMDLINE1" >"$B/bootkey.conf"
      bk_build_esp "$B/$name.esp" "$BK_SDBOOT:EFI/BOOT/BOOTX64.EFI" \
        "$B/loader.conf:loader/loader.conf" "$B/bootkey.conf:loader/entries/bootkey.conf" \
        "$BK_VMLINUZ:bootkey/vmlinuz" "$B/initrd.zst:bootkey/initrd.zst"
      echo nosb ;;
    *) bk_log "unknown boot $name"; return 1 ;;
  esac
}

names=("$@"); [ ${#names[@]} -gt 0 ] || names=(uki-sb-off uki-sb-on uki-sb-off-cmdline2 sdboot-sb-off uki-sb-off-4banks)
for name in "${names[@]}"; do
  sb=$(build "$name")
  bk_log "$name: booting ($sb)"
  run=$B/run-$name
  BK_PCR_BANKS=sha1,sha256; [ "$name" != uki-sb-off-4banks ] || BK_PCR_BANKS=sha1,sha256,sha384,sha512
  if ! bk_boot "$run" "$B/$name.esp" "$sb" || ! grep -q '^=== DONE' "$run/data.txt" 2>/dev/null; then
    bk_log "$name: boot failed after ${BK_BOOT_SECONDS}s; console:"; tail -n 30 "$run/console.log" >&2
    exit 1
  fi
  bk_log "$name: boot to poweroff ${BK_BOOT_SECONDS}s"
  bk_extract "$run/data.txt" eventlog "$OUT/$name.bin"
  bk_extract "$run/data.txt" pcrs "$run/pcrs.txt"
  bk_extract "$run/data.txt" ima "$OUT/$name.ima.txt"
  bk_extract "$run/data.txt" cmdline "$run/cmdline.txt"
  bk_pcrs_json "$run/pcrs.txt" >"$OUT/$name.pcrs.json"
  bk_check_replay "$OUT/$name.bin" "$OUT/$name.pcrs.json"   # tpm2-tools' replay, as a cross-check
  echo "$name $BK_BOOT_SECONDS" >>"$B/timings.txt"
  bk_log "$name: $(stat -c %s "$OUT/$name.bin") bytes of log; guest cmdline: $(cat "$run/cmdline.txt")"
done
