#!/usr/bin/env bash
# npm run bench:boot — boot-to-marker (QEMU start → the root's /sbin/init prints its marker),
# medians of BK_RUNS (default 3) boots each, same machine, image and kernel:
#   a  bootkey: attested remote unlock (enrolled in a first boot, as in run-tests.sh)
#   b  systemd-cryptenroll's local TPM2 unlock (no attestation; MicroOS's default): the same
#      image enrolled on the host against the VM's swtpm, PCR 7 bound (its value replayed into
#      the swtpm from the OVMF Secure-Boot-off event log first), initrd with dracut's tpm2-tss,
#      rd.luks.options=tpm2-device=auto
#   c  the passphrase typed at systemd-cryptsetup's prompt as soon as it shows
# Also: initrd sizes (zstd) with/without the module, and the agent's own phases from its console
# line: process start-up, token read, TPM commands, TLS connect, attest-begin round trip,
# attest-finish round trip (network + the server's verification), reply. Results: qemu-tests/work/boot/bench.txt
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/boot-env.sh"
RUNS=${BK_RUNS:-3}

median() { sort -n | awk 'NF {v[++n]=$1} END {if (n) print (n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2); else print "n/a"}'; }
t_of() { awk -v n="$2" '$1==n{print $2; exit}' "$W/$1/console.log.times" 2>/dev/null; }

bk_env_build
trap 'bk_server_stop "$W/server"' EXIT
bk_server_start "$W/server" "$BK_PORT" || { bk_log "FATAL: the key-release server did not start on port $BK_PORT (see above)"; exit 1; }

bk_build_dracut "$W/initrd-plain.zst" without
bk_build_dracut "$W/initrd-tpm2.zst" tpm2
bk_build_uki "$W/uki-plain.efi" "$BK_VMLINUZ" "$W/initrd-plain.zst" "$BK_CMDLINE"
bk_build_esp "$W/esp-plain.img" "$W/uki-plain.efi:EFI/BOOT/BOOTX64.EFI"
bk_build_uki "$W/uki-tpm2.efi" "$BK_VMLINUZ" "$W/initrd-tpm2.zst" "$BK_CMDLINE rd.luks.options=tpm2-device=auto"
bk_build_esp "$W/esp-tpm2.img" "$W/uki-tpm2.efi:EFI/BOOT/BOOTX64.EFI"

# (a) enrol once
bk_vm_new bvm1
cp "$W/root-fresh.img" "$W/root-bvm1.img"
tok=$(bk_enrol_token "$W/server" "$BK_PORT" bench-bvm1)
bk_vm_boot b-enroll bvm1 "$W/esp-good.img" "$W/root-bvm1.img" rw "$(bk_ctl_enroll "$tok")" "$BK_PROMPT=$BK_PASS" || true
grep -q 'BOOTKEY-ENROLL-RC=0' "$W/b-enroll/console.txt" || { bk_log "bench: enrolment failed"; exit 1; }

# (b) systemd-cryptenroll against the VM's swtpm on the host, PCR 7 as this firmware sets it
bk_vm_new bvm2
cp "$W/root-fresh.img" "$W/root-bvm2.img"
TPORT=$(bk_free_port 2)    # swtpm's data port and control port (TPORT+1): free ones, never fixed
swtpm socket --tpm2 --tpmstate dir="$W/bvm2" --server type=tcp,port="$TPORT",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((TPORT + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
SWTPM=$!; sleep 0.5
kill -0 "$SWTPM" 2>/dev/null || { bk_log "FATAL: swtpm could not start on ports $TPORT/$((TPORT + 1))"; exit 1; }
export TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=$TPORT
tpm2_eventlog "$BK_ROOT/test/data/qemu/uki-sb-off.bin" 2>/dev/null | awk '
  /PCRIndex:/ {pcr=$NF} /AlgorithmId:/ {alg=$NF} /Digest: "/ && pcr==7 {gsub(/"/, "", $NF); print alg, $NF}' |
  while read -r alg hex; do tpm2_pcrextend "7:$alg=$hex"; done
want=$(sed -n 's/.*"sha256": {.*"7": "\([0-9a-f]*\)".*/\1/p' "$BK_ROOT/test/data/qemu/uki-sb-off.pcrs.json")
got=$(tpm2_pcrread sha256:7 | awk '/7 :/{print tolower(substr($3, 3))}')
[ "$want" = "$got" ] || { bk_log "bench: PCR 7 replay gave $got, want $want"; kill $SWTPM; exit 1; }
PASSWORD=$BK_PASS systemd-cryptenroll --tpm2-device="$TPM2TOOLS_TCTI" --tpm2-pcrs=7 "$W/root-bvm2.img" >/dev/null 2>"$W/cryptenroll.err" ||
  { cat "$W/cryptenroll.err" >&2; kill $SWTPM; exit 1; }
kill $SWTPM; wait $SWTPM 2>/dev/null || true

declare -A T
for i in $(seq "$RUNS"); do
  bk_vm_boot "b-a$i" bvm1 "$W/esp-good.img" "$W/root-bvm1.img" snapshot "" || true
  bk_vm_boot "b-b$i" bvm2 "$W/esp-tpm2.img" "$W/root-bvm2.img" snapshot "" || true
  bk_vm_boot "b-c$i" bvm1 "$W/esp-plain.img" "$W/root-bvm1.img" snapshot "" "$BK_PROMPT=$BK_PASS" || true
done
out=$W/bench.txt
{
  echo "bench:boot $(date -u +%FT%TZ), $RUNS runs each, TCG, -smp $BK_SMP -m $BK_MEM, kernel $BK_KVER"
  for m in a b c; do
    case $m in a) what="bootkey attested remote unlock";; b) what="systemd-cryptenroll TPM2 (PCR 7) local unlock";; c) what="passphrase typed at the prompt";; esac
    ms=$(for i in $(seq "$RUNS"); do t_of "b-$m$i" marker; done)
    prompts=$(for i in $(seq "$RUNS"); do t_of "b-$m$i" prompt; done)
    echo "($m) $what: boot-to-marker median $(echo "$ms" | median) s [$(echo $ms)]; prompt shown at median $(echo "$prompts" | median) s"
  done
  echo "initrd (zstd): without bootkey $(stat -c %s "$W/initrd-plain.zst") B, with bootkey $(stat -c %s "$W/initrd-bootkey.zst") B, tpm2-tss variant $(stat -c %s "$W/initrd-tpm2.zst") B"
  echo "SEA: $(stat -c %s "$BK_ROOT/dist/bootkey-linux-x64") B"
  for k in startup token tpm connect begin finish reply; do
    v=$(for i in $(seq "$RUNS"); do tr -d '\r' <"$W/b-a$i/console.log" | sed -n "s/.*phases ms:.* $k=\([0-9]*\).*/\1/p" | head -1; done | median)
    printf 'agent %s ms: %s\n' "$k" "$v"
  done
  h=$(for i in $(seq "$RUNS"); do tr -d '\r' <"$W/b-a$i/console.log" | sed -n 's/.*key handed to systemd-cryptsetup in \([0-9.]*\) s.*/\1/p' | head -1; done | median)
  echo "agent unit start to key handed (after process start-up): median $h s"
  for i in $(seq "$RUNS"); do grep -q 'key handed' "$W/b-a$i/console.txt" || echo "WARNING: run a$i did not unlock through bootkey"; done
  for i in $(seq "$RUNS"); do [ -s "$W/b-b$i/console.log.typed" ] && echo "WARNING: run b$i needed the passphrase"; [ -n "$(t_of "b-b$i" marker)" ] || echo "WARNING: run b$i did not reach the marker"; done
} | tee "$out"
