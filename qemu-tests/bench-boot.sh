#!/usr/bin/env bash
# npm run bench:boot — boot-to-marker (QEMU start → the root's /sbin/init prints its marker),
# medians of BK_RUNS (default 3) boots each, same machine, image and kernel, in one run:
#   a  bootkey: attested remote unlock (enrolled in a first boot, as in run-tests.sh)
#   d  Clevis + Tang (the peer a user would pick instead): a Tang server on the host (tangd under
#      socat on a free port, reached from the guest as 10.0.2.2), `clevis luks bind` of the same
#      image, an initrd with clevis-dracut's modules (unpacked from the Debian package: it depends
#      on `dracut`, which conflicts with initramfs-tools) and the same network as bootkey's
#   b  systemd-cryptenroll's local TPM2 unlock (no attestation; MicroOS's default): the same
#      image enrolled on the host against the VM's swtpm, PCR 7 bound (its value replayed into
#      the swtpm from the OVMF Secure-Boot-off event log first), initrd with dracut's tpm2-tss,
#      rd.luks.options=tpm2-device=auto
#   c  the passphrase typed at systemd-cryptsetup's prompt as soon as it shows
# Also: initrd sizes (zstd) with/without the module, and the agent's own phases from its console
# line: process start-up, token read, TPM commands, TLS connect, attest-begin round trip,
# attest-finish round trip (network + the server's verification), reply; its first TPM command
# after the process start. Results: qemu-tests/work/boot/bench.txt, a table, then one JSON line
# (the last line of the output).
# BK_REPORT_ONLY=1: no build, no boot: the report of the boots already in qemu-tests/work/boot
# (BK_RUNS = how many rounds completed), e.g. after a run was cut short on a loaded machine.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/boot-env.sh"
RUNS=${BK_RUNS:-3}

median() { sort -n | awk 'NF {v[++n]=$1} END {if (n) print (n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2); else print "n/a"}'; }
t_of() { awk -v n="$2" '$1==n{print $2; exit}' "$W/$1/console.log.times" 2>/dev/null; }

if [ "${BK_REPORT_ONLY:-}" != 1 ]; then
bench_tools() { local c; for c in clevis jose luksmeta curl socat icupkg dracut qemu-system-x86_64 /usr/libexec/tangd /usr/libexec/tangd-keygen /usr/libexec/clevis-luks-askpass; do command -v "$c" >/dev/null || echo "$c"; done; }
if [ -n "$(bench_tools)" ]; then   # a clean machine: install what the benchmark needs (Debian 12)
  bk_log "missing: $(bench_tools | tr '\n' ' ')- running scripts/setup.sh with BOOTKEY_SETUP_QEMU=1"
  BOOTKEY_SETUP_QEMU=1 bash "$BK_ROOT/scripts/setup.sh" >&2
  [ -z "$(bench_tools)" ] || { bk_log "still missing: $(bench_tools | tr '\n' ' ')"; exit 1; }
fi
bk_env_build
TANG_PID=
trap 'bk_server_stop "$W/server"; [ -z "$TANG_PID" ] || kill "$TANG_PID" 2>/dev/null' EXIT
bk_server_start "$W/server" "$BK_PORT" || { bk_log "FATAL: the key-release server did not start on port $BK_PORT (see above)"; exit 1; }

# Tang on the host: keys made once, tangd per connection under socat, a free port
mkdir -p "$W/tang/db"
[ -n "$(ls "$W/tang/db")" ] || /usr/libexec/tangd-keygen "$W/tang/db" >/dev/null
TANG_PORT=$(bk_free_port)
socat TCP-LISTEN:"$TANG_PORT",bind=127.0.0.1,reuseaddr,fork EXEC:"/usr/libexec/tangd $W/tang/db" 2>"$W/tang/socat.err" &
TANG_PID=$!
for i in $(seq 50); do curl -sf -o "$W/tang/adv.jws" "http://127.0.0.1:$TANG_PORT/adv" && break; sleep 0.1; done
[ -s "$W/tang/adv.jws" ] || { bk_log "FATAL: tangd did not answer on 127.0.0.1:$TANG_PORT"; cat "$W/tang/socat.err" >&2; exit 1; }

# clevis-dracut's modules in a copy of /usr/lib/dracut (the package itself would pull `dracut`)
bk_build_dracut_clevis() {
  local out=$1
  local mods="$BK_DRACUT_MODULES clevis clevis-pin-tang systemd-networkd network" drivers="$BK_DRACUT_DRIVERS virtio_net"
  local key; key=$(bk_key "$BK_KVER" "$mods" "$drivers" "$(dpkg-query -W -f '${Version}' dracut-core systemd cryptsetup-bin clevis clevis-systemd)" "$(declare -f bk_build_dracut_clevis)")
  if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then return 0; fi
  bk_log "dracut (clevis + tang) -> $out"
  local d=$BK_WORK/clevis-dracut t
  rm -rf "$d" && mkdir -p "$d/deb"
  (cd "$d/deb" && apt-get -q -o APT::Sandbox::User=root download clevis-dracut >/dev/null)
  dpkg -x "$d"/deb/clevis-dracut_*.deb "$d/x"
  cp -a /usr/lib/dracut "$d/base"
  cp -a "$d"/x/usr/lib/dracut/modules.d/60clevis* "$d/base/modules.d/"
  t=$(mktemp -d)
  dracutbasedir=$d/base dracut --quiet --force --no-hostonly --reproducible --kver "$BK_KVER" \
      --kmoddir "$BK_KDIR/lib/modules/$BK_KVER" -m "$mods" --add-drivers "$drivers" \
      --filesystems ext4 --compress zstd --tmpdir "$t" "$out.tmp" 2>"$t/err" ||
    { grep -v "Skipping udev rule" "$t/err" >&2; rm -rf "$t"; return 1; }
  rm -rf "$t"
  mv "$out.tmp" "$out" && echo "$key" >"$out.key"
}

bk_build_dracut "$W/initrd-plain.zst" without
bk_build_dracut "$W/initrd-tpm2.zst" tpm2
bk_build_uki "$W/uki-plain.efi" "$BK_VMLINUZ" "$W/initrd-plain.zst" "$BK_CMDLINE"
bk_build_esp "$W/esp-plain.img" "$W/uki-plain.efi:EFI/BOOT/BOOTX64.EFI"
bk_build_uki "$W/uki-tpm2.efi" "$BK_VMLINUZ" "$W/initrd-tpm2.zst" "$BK_CMDLINE rd.luks.options=tpm2-device=auto"
bk_build_esp "$W/esp-tpm2.img" "$W/uki-tpm2.efi:EFI/BOOT/BOOTX64.EFI"
bk_build_dracut_clevis "$W/initrd-clevis.zst"
bk_build_uki "$W/uki-clevis.efi" "$BK_VMLINUZ" "$W/initrd-clevis.zst" "$BK_CMDLINE rd.neednet=1"
bk_build_esp "$W/esp-clevis.img" "$W/uki-clevis.efi:EFI/BOOT/BOOTX64.EFI"

# (d) the same image bound to Tang (a new pbkdf2-1000 keyslot, as clevis does; token clevis)
bk_vm_new bvm4
cp "$W/root-fresh.img" "$W/root-bvm4.img"
clevis luks bind -y -k "$W/passphrase" -d "$W/root-bvm4.img" tang "{\"url\":\"http://10.0.2.2:$TANG_PORT\",\"adv\":\"$W/tang/adv.jws\"}" 2>"$W/clevis-bind.err" ||
  { cat "$W/clevis-bind.err" >&2; bk_log "bench: clevis luks bind failed"; exit 1; }

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
  bk_vm_boot "b-d$i" bvm4 "$W/esp-clevis.img" "$W/root-bvm4.img" snapshot "" || true
done
fi
[ "${BK_REPORT_ONLY:-}" != 1 ] || bk_fetch_kernel
load=$(cut -d' ' -f1-3 /proc/loadavg)
out=$W/bench.txt
med() { local m=$1 k=$2; for i in $(seq "$RUNS"); do t_of "b-$m$i" "$k"; done | median; }
runs() { local m=$1 k=$2; echo $(for i in $(seq "$RUNS"); do t_of "b-$m$i" "$k"; done); }
agent() { for i in $(seq "$RUNS"); do tr -d '\r' <"$W/b-a$i/console.log" | sed -n "$1" | head -1; done | median; }
sz() { stat -c %s "$1"; }
{
  echo "bench:boot $(date -u +%FT%TZ), $RUNS boots per configuration, TCG, -smp $BK_SMP -m $BK_MEM, kernel $BK_KVER, load average at the end $load"
  printf '| %-46s | %-9s | %-22s | %-13s | %-10s |\n' configuration "median s" "boots (s)" "prompt med s" "initrd MB"
  printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" ----------- ------------------------ --------------- ------------
  for m in c b d a; do
    case $m in
      a) what="bootkey attested remote unlock"; ird=$W/initrd-bootkey.zst;;
      b) what="systemd-cryptenroll TPM2 (PCR 7) local unlock"; ird=$W/initrd-tpm2.zst;;
      c) what="passphrase typed at the prompt"; ird=$W/initrd-plain.zst;;
      d) what="Clevis + Tang"; ird=$W/initrd-clevis.zst;;
    esac
    printf '| %-46s | %-9s | %-22s | %-13s | %-10s |\n' "($m) $what" "$(med $m marker)" "$(runs $m marker)" "$(med $m prompt)" "$(awk -v b="$(sz "$ird")" 'BEGIN{printf "%.1f", b/1e6}')"
  done
  echo "SEA: $(sz "$BK_ROOT/dist/bootkey-linux-x64") B ($(zstd -15 -q -T0 -c "$BK_ROOT/dist/bootkey-linux-x64" | wc -c) B zstd -15)"
  for k in startup token tpm connect begin finish reply; do
    printf 'agent %s ms: %s\n' "$k" "$(agent "s/.*phases ms:.* $k=\([0-9]*\).*/\1/p")"
  done
  echo "agent first TPM command after the process start: median $(agent 's/.*first TPM command at \([0-9]*\) ms.*/\1/p') ms"
  echo "agent waited for a route: median $(agent 's/.*waited \([0-9]*\) ms for a route.*/\1/p') ms (empty: none of the runs waited)"
  h=$(agent 's/.*key handed to systemd-cryptsetup in \([0-9.]*\) s.*/\1/p')
  echo "agent question to key handed: median $h s"
  for i in $(seq "$RUNS"); do grep -q 'key handed' "$W/b-a$i/console.txt" || echo "WARNING: run a$i did not unlock through bootkey"; done
  for i in $(seq "$RUNS"); do [ -s "$W/b-b$i/console.log.typed" ] && echo "WARNING: run b$i needed the passphrase"; [ -n "$(t_of "b-b$i" marker)" ] || echo "WARNING: run b$i did not reach the marker"; done
  for i in $(seq "$RUNS"); do [ -s "$W/b-d$i/console.log.typed" ] && echo "WARNING: run d$i needed the passphrase"; [ -n "$(t_of "b-d$i" marker)" ] || echo "WARNING: run d$i did not reach the marker"; done
  a=$(med a marker) d=$(med d marker)
  echo "bootkey - (Clevis + Tang) = $(awk -v a="$a" -v d="$d" 'BEGIN{ if (a+0 && d+0) printf "%.1f s", a-d; else print "n/a" }') (goal <= 1 s); initrd growth over (c): bootkey $(awk -v x="$(sz "$W/initrd-bootkey.zst")" -v y="$(sz "$W/initrd-plain.zst")" 'BEGIN{printf "%.1f MB", (x-y)/1e6}'), Clevis $(awk -v x="$(sz "$W/initrd-clevis.zst")" -v y="$(sz "$W/initrd-plain.zst")" 'BEGIN{printf "%.1f MB", (x-y)/1e6}') (goal <= 10 MB)"
  j() { local v; v=$(med "$1" marker); [ -n "$v" ] && [ "$v" != n/a ] && echo "$v" || echo null; }
  printf '{"bench":"boot","runs":%s,"load":"%s","marker_median_s":{"passphrase":%s,"cryptenroll_tpm2":%s,"clevis_tang":%s,"bootkey":%s},"initrd_bytes":{"plain":%s,"tpm2":%s,"clevis_tang":%s,"bootkey":%s},"sea_bytes":%s,"agent_first_tpm_ms":%s,"agent_startup_ms":%s}\n' \
    "$RUNS" "$load" "$(j c)" "$(j b)" "$(j d)" "$(j a)" \
    "$(sz "$W/initrd-plain.zst")" "$(sz "$W/initrd-tpm2.zst")" "$(sz "$W/initrd-clevis.zst")" "$(sz "$W/initrd-bootkey.zst")" \
    "$(sz "$BK_ROOT/dist/bootkey-linux-x64")" "$(agent 's/.*first TPM command at \([0-9]*\) ms.*/\1/p' | sed 's/^n\/a$/null/')" "$(agent 's/.*phases ms: startup=\([0-9]*\).*/\1/p' | sed 's/^n\/a$/null/')"
} | tee "$out"
