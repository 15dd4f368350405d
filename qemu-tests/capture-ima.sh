#!/usr/bin/env bash
# Captures REAL IMA measurement lists from the whole-boot test guest (Debian's kernel, dracut
# systemd initrd, LUKS2 root, OVMF + swtpm under TCG), for test/data/ima/qemu-debian12/:
#   qemu-tests/capture-ima.sh [OUTDIR] [VARIANT...]
# VARIANT (default: sig-sha256 ng-sha1):
#   sig-sha256  ima_policy=tcb ima_template=ima-sig ima_hash=sha256   (Debian's defaults, explicit)
#   ng-sha1     ima_policy=tcb ima_template=ima-ng  ima_hash=sha1
#   ima         ima_policy=tcb ima_template=ima     ima_hash=sha1     (the oldest template)
# Per variant, in OUTDIR/VARIANT/: binary_runtime_measurements[_sha1|_sha256 when the kernel has
# them].gz, ascii_runtime_measurements.gz, pcrs.txt + pcrs.json (PCRs 0-10, sha1 and sha256, read
# by the guest from /sys/class/tpm/tpm0/pcr-*/N right before AND right after copying the lists;
# kept only when both reads are equal), binary_bios_measurements (the firmware event log, for
# boot_aggregate), cmdline, ls-ima.txt, uname.txt. The passphrase is typed at the prompt (no
# bootkey enrolment: the initrd agent finds no token and steps aside).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/boot-env.sh"
OUT=${1:-$BK_ROOT/test/data/ima/qemu-debian12}; shift || true
variants=("$@"); [ ${#variants[@]} -gt 0 ] || variants=(sig-sha256 ng-sha1)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)

bk_env_build

# The guest side: runs from the root's /sbin/init (busybox sh), writes base64 blocks to ttyS1.
# A known script is executed first so the list carries a BPRM_CHECK of a script on the root.
CTL=$(cat <<'EOF'
S=/dev/ttyS1
block() { echo "=== BEGIN $1" >$S; gzip -9 -c "$2" | base64 >$S; echo "=== END $1" >$S; }
mkdir -p /usr/local/bin && printf '#!/bin/sh\necho BOOTKEY-IMA-HELLO\n' >/usr/local/bin/bk-hello && chmod 0755 /usr/local/bin/bk-hello && /usr/local/bin/bk-hello
bootkey --version >/dev/null 2>&1; cryptsetup --version >/dev/null 2>&1
I=/sys/kernel/security/ima
ls -l $I/ >/tmp/ls-ima.txt; uname -a >/tmp/uname.txt; cat /proc/cmdline >/tmp/cmdline
pcrs() { for b in sha1 sha256; do for i in 0 1 2 3 4 5 6 7 8 9 10; do echo "$b $i $(cat /sys/class/tpm/tpm0/pcr-$b/$i)"; done; done; }
ok=no
for try in 1 2 3 4 5; do
  pcrs >/tmp/pcrs-a.txt
  for f in $I/*runtime_measurements*; do cat "$f" >/tmp/${f##*/}; done
  pcrs >/tmp/pcrs-b.txt
  if cmp -s /tmp/pcrs-a.txt /tmp/pcrs-b.txt; then ok=yes; break; fi
done
echo "BOOTKEY-IMA-CAPTURE tries=$try stable=$ok"
for f in /tmp/*runtime_measurements*; do block "${f##*/}" "$f"; done
block pcrs.txt /tmp/pcrs-b.txt; block ls-ima.txt /tmp/ls-ima.txt; block uname.txt /tmp/uname.txt; block cmdline /tmp/cmdline
block binary_bios_measurements /sys/kernel/security/tpm0/binary_bios_measurements
echo "=== DONE" >$S
EOF
)

for v in "${variants[@]}"; do
  case $v in
    sig-sha256) ima="ima_policy=tcb ima_template=ima-sig ima_hash=sha256" ;;
    ng-sha1)    ima="ima_policy=tcb ima_template=ima-ng ima_hash=sha1" ;;
    ima)        ima="ima_policy=tcb ima_template=ima ima_hash=sha1" ;;
    *) bk_log "unknown variant $v"; exit 2 ;;
  esac
  bk_build_uki "$W/uki-cap-$v.efi" "$BK_VMLINUZ" "$W/initrd-bootkey.zst" "$BK_CMDLINE $ima"
  bk_build_esp "$W/esp-cap-$v.img" "$W/uki-cap-$v.efi:EFI/BOOT/BOOTX64.EFI"
  bk_vm_new "vmcap-$v"
  bk_vm_boot "cap-$v" "vmcap-$v" "$W/esp-cap-$v.img" "$W/root-fresh.img" snapshot "$CTL" "$BK_PROMPT=$BK_PASS" || true
  d=$W/cap-$v
  grep -q '^=== DONE' <(tr -d '\r' <"$d/data.txt") || { bk_log "FAIL $v: the guest wrote no complete capture (see $d/console.txt)"; tail -20 "$d/console.txt" >&2; exit 1; }
  grep -q 'BOOTKEY-IMA-CAPTURE tries=[0-9] stable=yes' "$d/console.txt" || { bk_log "FAIL $v: PCR 10 moved while copying the lists"; exit 1; }
  o=$OUT/$v; rm -rf "$o"; mkdir -p "$o"
  for n in $(tr -d '\r' <"$d/data.txt" | sed -n 's/^=== BEGIN //p'); do
    case $n in
      *runtime_measurements*) bk_extract "$d/data.txt" "$n" "$o/$n.gz" ;;
      *) bk_extract "$d/data.txt" "$n" /dev/stdout | gunzip >"$o/$n" ;;
    esac
  done
  bk_pcrs_json "$o/pcrs.txt" >"$o/pcrs.json"
  bk_log "$v: $(zcat "$o/ascii_runtime_measurements.gz" | wc -l) entries, boot ${BK_BOOT_SECONDS}s -> $o"
done
