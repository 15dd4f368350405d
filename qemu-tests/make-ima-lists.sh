#!/usr/bin/env bash
# Real IMA measurement lists with the PCR values of their (virtual) machine: boots Debian's kernel
# (direct -kernel boot, SeaBIOS, swtpm with sha1+sha256 banks, TCG) with IMA on and a busybox
# initramfs (initramfs/ima-init.sh) that measures files with every template, then dumps the lists
# and /sys/class/tpm/tpm0/pcr-*/N. Knobs: BK_KVER (kernel), BK_PCR_BANKS (swtpm banks, default
# sha1,sha256), BK_IMA_CMDLINE (default "ima_template=ima-sig ima_hash=sha256"; add bkima.files=N
# for N more measured files), BK_IMA_MODULES (kernel modules the guest loads: ima-modsig entries
# with the modules' appended signatures). Writes into OUT (default test/data/ima/qemu-debian):
#   binary_runtime_measurements[_sha1|_sha256], ascii_runtime_measurements[...], pcrs.json (bootkey's
#   PCR JSON), pcrs.yaml (tpm2_pcrread layout), KERNEL (version + cmdline).
. "$(dirname "$0")/lib.sh"
OUT=${1:-$BK_ROOT/test/data/ima/qemu-debian}
bk_fetch_kernel
W=$BK_WORK/ima; rm -rf "$W"; mkdir -p "$W" "$OUT"
mods=()
for m in ${BK_IMA_MODULES:-}; do   # e.g. "crc8": uncompressed into the initramfs as /mods/crc8.ko
  f=$(find "$BK_KDIR/lib/modules" -name "$m.ko*" | head -1)
  [ -n "$f" ] || { bk_log "no module $m"; exit 1; }
  case $f in *.xz) xz -dc "$f" >"$W/$m.ko" ;; *.zst) zstd -dcq "$f" >"$W/$m.ko" ;; *) cp "$f" "$W/$m.ko" ;; esac
  mods+=("$W/$m.ko:/mods/$m.ko")
done
bk_build_initramfs "$W/initrd.zst" "$BK_ROOT/qemu-tests/initramfs/ima-init.sh" "${mods[@]}"
swtpm_setup --tpm2 --tpmstate "$W" --pcr-banks "${BK_PCR_BANKS:-sha1,sha256}" --overwrite >"$W/swtpm_setup.log" 2>&1
swtpm socket --tpm2 --tpmstate dir="$W" --ctrl type=unixio,path="$W/swtpm.sock" --terminate --log file="$W/swtpm.log" &
spid=$!
for i in $(seq 50); do [ -S "$W/swtpm.sock" ] && break; sleep 0.1; done
CMDLINE="console=ttyS0 panic=-1 ima_policy=tcb ${BK_IMA_CMDLINE:-ima_template=ima-sig ima_hash=sha256}"
t0=$(date +%s)
timeout --kill-after=10 "${BK_TIMEOUT:-400}" qemu-system-x86_64 -machine q35 -accel tcg -m 512 -display none -no-reboot -nic none \
  -chardev socket,id=chrtpm,path="$W/swtpm.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
  -kernel "$BK_VMLINUZ" -initrd "$W/initrd.zst" -append "$CMDLINE" \
  -serial file:"$W/console.log" -serial file:"$W/data.txt" || true
kill "$spid" 2>/dev/null || true
bk_log "boot took $(( $(date +%s) - t0 )) s"
grep -q '^=== DONE' "$W/data.txt" || { tail -30 "$W/console.log" >&2; bk_log "no dump"; exit 1; }
for n in $(sed -n 's/^=== BEGIN \(.*runtime_measurements.*\)/\1/p' "$W/data.txt"); do bk_extract "$W/data.txt" "$n" "$OUT/$n"; done
bk_extract "$W/data.txt" pcrs "$W/pcrs.txt"
bk_extract "$W/data.txt" policy "$OUT/policy"
bk_pcrs_json "$W/pcrs.txt" "sha1 sha256 sha384 sha512" >"$OUT/pcrs.json"
{ for b in $(awk '{print $1}' "$W/pcrs.txt" | uniq); do echo "  $b:"; awk -v b=$b '$1==b{printf "    %d : 0x%s\n",$2,toupper($3)}' "$W/pcrs.txt"; done; } | sed '1s/^/pcrs:\n/' >"$OUT/pcrs.yaml"
printf 'kernel %s\ncmdline %s\n' "$BK_KVER" "$CMDLINE" >"$OUT/KERNEL"
ls -l "$OUT"
