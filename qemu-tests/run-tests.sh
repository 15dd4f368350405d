#!/usr/bin/env bash
# Whole-boot tests of bootkey in a dracut + systemd initrd (issue 5), each checking the serial console:
#   enroll  first boot: passphrase typed at the prompt, then `bootkey enroll` in the booted root
#   1       reboot: unlocked with no passphrase typed, marker reached
#   5       (same boot as 1) asking again in that boot is refused (released PCR extended)
#   2       another UKI command line: refused with the reason, the prompt still takes the passphrase
#   3       server stopped: after the deadline the prompt still works, no hang
#   4       the disk in another VM (another swtpm): refused
#   6       staging an update from the booted guest, Secure Boot on (snakeoil), its own VM (vm3):
#           6a enrol (passphrase typed); the kernel-install hook's staging is refused
#              (STAGING_NOT_ALLOWED: the default policy has no staging permission)
#           6b the update UKI boots: refused at boot (POLICY), the passphrase still works
#           (host: `policy staging --mode signed-by --cert snakeoil`, `admin set-policy`)
#           6c unattended unlock; the hook stages the update UKI signed by another key: refused
#              (UNLISTED_SIGNER, printed); the snakeoil-signed one: staged
#           6d the update UKI boots: unlocked with nothing typed
#           6e the update UKI signed by the other key: Secure Boot on, the firmware would not start
#              it; with Secure Boot off it boots and is refused (POLICY, secure-boot named), the
#              passphrase still works
#   7       runtime attestation (issue 12), IMA on (ima_policy=tcb), its own VM (vm4), 4 boots:
#           7a enrol (passphrase typed)
#           7b unattended unlock; the guest sends its IMA list (known-good) to the host, which
#              makes the runtime policy (`runtime-policy generate --from-log`) and sets it
#              (`admin set-runtime-policy`); `bootkey agent --interval $BK_RT_INTERVAL` attests
#              several times; then a script not in the policy runs: within one interval the
#              server's state is failed, naming that file
#           7c reboot: refused (RUNTIME_FAILED), the passphrase still works
#           7d `admin clear`: the next boot unlocks with nothing typed
#   qemu-tests/run-tests.sh [TEST...]    (default: all; "enroll" runs first whenever 1-5 need it)
# Prints "N passed, N failed"; exit 1 when any failed. Work files: qemu-tests/work/boot/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/boot-env.sh"

PASSED=0 FAILED=0 RESULTS=()
ok()   { PASSED=$((PASSED + 1)); RESULTS+=("PASS $1 (${BK_BOOT_SECONDS}s)"); bk_log "PASS $1 (${BK_BOOT_SECONDS}s)"; }
bad()  { FAILED=$((FAILED + 1)); RESULTS+=("FAIL $1: $2"); bk_log "FAIL $1: $2"; tail -n 40 "$W/$1/console.txt" >&2 || true; }
has()  { grep -Eq "$2" "$W/$1/console.txt"; }
typed() { [ -s "$W/$1/console.log.typed" ]; }   # console.py typed the passphrase in that boot

t0=$(date +%s)
bk_env_build
trap 'bk_server_stop "$W/server"' EXIT
bk_server_start "$W/server" "$BK_PORT" || { bk_log "FATAL: the key-release server did not start on port $BK_PORT (see above)"; exit 1; }

test_enroll() {
  bk_vm_new vm1
  cp "$W/root-fresh.img" "$W/root-vm1.img"
  local tok; tok=$(bk_enrol_token "$W/server" "$BK_PORT" qemu-vm1) || { bad enroll "no enrolment token from the server"; return 1; }
  bk_vm_boot enroll vm1 "$W/esp-good.img" "$W/root-vm1.img" rw "$(bk_ctl_enroll "$tok")" "$BK_PROMPT=$BK_PASS" || true
  if has enroll 'BOOTKEY-ENROLL-RC=0' && has enroll 'BOOTKEY-MARKER'; then ok enroll; else bad enroll "enrolment in the booted guest failed"; return 1; fi
}

test_1_and_5() {
  bk_vm_boot t1 vm1 "$W/esp-good.img" "$W/root-vm1.img" snapshot "$BK_CTL_AGAIN" || true
  if has t1 'key handed to systemd-cryptsetup' && has t1 'BOOTKEY-MARKER' && ! typed t1; then ok "1-unattended-unlock"
  else bad t1 "no unattended unlock"; fi
  if has t1 'BOOTKEY-AGAIN-RC=1' && has t1 'ALREADY_RELEASED'; then ok "5-second-release-refused"
  else bad t1 "a second release in the same boot was not refused with ALREADY_RELEASED"; fi
}

test_2() {
  bk_vm_boot t2 vm1 "$W/esp-cmdline2.img" "$W/root-vm1.img" snapshot "" \
    "REFUSED by[^\n]*[\s\S]*$BK_PROMPT|$BK_PROMPT[\s\S]*REFUSED by=$BK_PASS" || true
  if has t2 'REFUSED by .*POLICY' && has t2 'BOOTKEY-MARKER'; then ok "2-other-cmdline-refused-then-passphrase"
  else bad t2 "expected a POLICY refusal, then the passphrase boot"; fi
}

test_3() {
  bk_server_stop "$W/server"
  bk_vm_boot t3 vm1 "$W/esp-good.img" "$W/root-vm1.img" snapshot "" \
    "no key-release server reachable[\s\S]*$BK_PROMPT|$BK_PROMPT[\s\S]*no key-release server reachable=$BK_PASS" || true
  bk_server_start "$W/server" "$BK_PORT" || { bad t3 "the server did not restart on port $BK_PORT (see above)"; return 0; }
  if has t3 'no key-release server reachable within' && has t3 'BOOTKEY-MARKER'; then ok "3-server-down-prompt-after-deadline"
  else bad t3 "expected the deadline message, then the passphrase boot"; fi
}

test_4() {
  bk_vm_new vm2
  bk_vm_boot t4 vm2 "$W/esp-good.img" "$W/root-vm1.img" snapshot "" \
    "REFUSED by[\s\S]*$BK_PROMPT|$BK_PROMPT[\s\S]*REFUSED by=$BK_PASS" || true
  if has t4 'REFUSED by .*AK_MISMATCH' && has t4 'BOOTKEY-MARKER' && ! has t4 'key handed'; then ok "4-other-vm-refused"
  else bad t4 "expected a refusal for another TPM"; fi
}

# Test 6: staging from the guest (see the header); vm3, Secure Boot on, the update disk attached to every boot.
admin_cli() { node "$BK_ROOT/dist/bootkey.js" admin --server "https://127.0.0.1:$BK_PORT" --ca "$W/server/ca.pem" --admin-token "$W/server/admin.token" "$@"; }
test_6() {
  local t6; t6=$(date +%s)
  # The enrolment boot (Secure Boot, enrolment, a 64 MB UKI hashed in the guest) took 196 s on a
  # 2-core host under load average 6.5: more room than the other tests' 240 s.
  local BK_TIMEOUT=${BK_VM_TIMEOUT:-420}
  export BK_VM_SB=sb BK_VM_UPD=$W/upd.img
  bk_vm_new vm3
  cp "$W/root-fresh.img" "$W/root-vm3.img"
  local tok; tok=$(bk_enrol_token "$W/server" "$BK_PORT" qemu-vm3) || { bad 6a "no enrolment token from the server"; unset BK_VM_SB BK_VM_UPD; return 1; }
  bk_vm_boot 6a vm3 "$W/esp-sb-good.img" "$W/root-vm3.img" rw "$(bk_ctl_enroll "$tok" | sed 's/bootkey-qemu-vm1/bootkey-qemu-vm3/'; bk_ctl_stage uki-upd.signed.efi)" "$BK_PROMPT=$BK_PASS" || true
  if has 6a 'BOOTKEY-ENROLL-RC=0' && has 6a 'staging refused by .*STAGING_NOT_ALLOWED' && has 6a 'BOOTKEY-STAGE-RC=1 ' && has 6a 'BOOTKEY-MARKER'; then ok "6a-enrol-sb-staging-not-allowed"
  else bad 6a "expected the enrolment, then STAGING_NOT_ALLOWED from the hook"; unset BK_VM_SB BK_VM_UPD; return 1; fi

  bk_vm_boot 6b vm3 "$W/esp-upd.img" "$W/root-vm3.img" snapshot "" \
    "REFUSED by[^\n]*[\s\S]*$BK_PROMPT|$BK_PROMPT[\s\S]*REFUSED by=$BK_PASS" || true
  if has 6b 'REFUSED by .*POLICY' && has 6b 'BOOTKEY-MARKER' && typed 6b; then ok "6b-update-without-staging-refused-then-passphrase"
  else bad 6b "expected a POLICY refusal of the unstaged update, then the passphrase boot"; fi

  local id; id=$(admin_cli list --json | node -e 'const l = JSON.parse(require("fs").readFileSync(0, "utf8")); const m = l.find((x) => x.machineId === "bootkey-qemu-vm3" && x.state === "active"); if (m) process.stdout.write(m.id)')
  admin_cli show "$id" --json | node -e 'process.stdout.write(JSON.stringify(JSON.parse(require("fs").readFileSync(0, "utf8")).policy))' >"$W/vm3-policy.json"
  node "$BK_ROOT/dist/bootkey.js" policy staging "$W/vm3-policy.json" --mode signed-by --cert "$BK_SNAKEOIL.pem" >&2 &&
    admin_cli set-policy "$id" --policy "$W/vm3-policy.json" >&2 || { bad 6c "could not set the staging permission of machine '$id'"; unset BK_VM_SB BK_VM_UPD; return 1; }

  bk_vm_boot 6c vm3 "$W/esp-sb-good.img" "$W/root-vm3.img" snapshot "$BK_CTL_NET
$(bk_ctl_stage uki-upd.other.efi uki-upd.signed.efi)" || true
  if has 6c 'key handed to systemd-cryptsetup' && ! typed 6c && has 6c 'staging refused by .*UNLISTED_SIGNER: .*CN ?= ?bootkey other signer' && has 6c 'BOOTKEY-STAGE-RC=1 uki-upd.other.efi' \
     && has 6c 'bootkey: staged s-[0-9a-f]{16} \(active\)' && has 6c 'BOOTKEY-STAGE-RC=0 uki-upd.signed.efi'; then ok "6c-unattended-other-key-refused-snakeoil-staged"
  else bad 6c "expected an unattended unlock, UNLISTED_SIGNER for the other key, the snakeoil-signed UKI staged"; fi

  bk_vm_boot 6d vm3 "$W/esp-upd.img" "$W/root-vm3.img" snapshot "" || true
  # The release matched the staged boot (what retirement counts on).
  local used; used=$(admin_cli staged list "$id" --json | node -e 'const l = JSON.parse(require("fs").readFileSync(0, "utf8")); process.stdout.write(String(l.filter((x) => x.state === "active" && x.used).length))')
  if has 6d 'key handed to systemd-cryptsetup' && has 6d 'BOOTKEY-MARKER' && ! typed 6d && [ "$used" = 1 ]; then ok "6d-staged-update-unlocks-unattended"
  else bad 6d "the staged update did not unlock unattended (or the release was not matched to it: $used)"; fi
  admin_cli staged list "$id" >&2 || true

  # Authenticode digests exclude the signature: this UKI has the staged digest. PCR 7 tells them apart.
  BK_VM_SB=nosb bk_vm_boot 6e vm3 "$W/esp-upd-other.img" "$W/root-vm3.img" snapshot "" \
    "REFUSED by[^\n]*[\s\S]*$BK_PROMPT|$BK_PROMPT[\s\S]*REFUSED by=$BK_PASS" || true
  if has 6e 'REFUSED by .*POLICY: .*secure-boot' && has 6e 'BOOTKEY-MARKER' && typed 6e && ! has 6e 'key handed'; then ok "6e-other-key-uki-sb-off-refused-then-passphrase"
  else bad 6e "expected a POLICY refusal naming Secure Boot, then the passphrase boot"; fi
  bk_log "test 6 (staging an update, 5 boots): $(( $(date +%s) - t6 )) s"
  unset BK_VM_SB BK_VM_UPD
}

# Test 7: runtime attestation (see the header). vm4, IMA on the UKI's command line.
BK_RT_INTERVAL=${BK_RT_INTERVAL:-10}
mid() { admin_cli list --json | node -e 'const l = JSON.parse(require("fs").readFileSync(0, "utf8")); const m = l.find((x) => x.machineId === process.argv[1] && x.state === "active"); if (m) process.stdout.write(m.id)' "$1"; }
# runtime state of machine $1 as "state|reason|failedAt(epoch s)|failures joined by ;"
rt_state() {
  admin_cli show "$1" --json | node -e '
    const m = JSON.parse(require("fs").readFileSync(0, "utf8")); const r = m.runtime ?? {};
    const at = r.failedAt ? Math.floor(new Date(r.failedAt).getTime() / 1000) : "";
    process.stdout.write([r.state ?? "", (r.reason ?? "").replace(/\n/g, " "), at, (r.failures ?? []).join(";")].join("|"))'
}
test_7() {
  local t7; t7=$(date +%s)
  local BK_TIMEOUT=${BK_VM_TIMEOUT:-480}
  bk_env_build_ima
  local id
  if [ "${BK_T7_REUSE:-}" = 1 ] && [ -n "$(mid bootkey-qemu-vm4)" ]; then
    # BK_T7_REUSE=1 BK_PORT=<the earlier run's port>: vm4 as an earlier run enrolled it (its token
    # names that port); its runtime state starts again (no policy, no failure)
    id=$(mid bootkey-qemu-vm4)
    admin_cli clear "$id" >&2 || true; admin_cli set-runtime-policy "$id" --off >&2 || true
    bk_log "7a skipped: reusing vm4 ($id) enrolled by an earlier run on port $BK_PORT"
  else
    bk_vm_new vm4
    cp "$W/root-fresh.img" "$W/root-vm4.img"
    local tok; tok=$(bk_enrol_token "$W/server" "$BK_PORT" qemu-vm4) || { bad 7a "no enrolment token from the server"; return 1; }
    bk_vm_boot 7a vm4 "$W/esp-ima.img" "$W/root-vm4.img" rw "$(bk_ctl_enroll "$tok" | sed 's/bootkey-qemu-vm1/bootkey-qemu-vm4/')" "$BK_PROMPT=$BK_PASS" || true
    if has 7a 'BOOTKEY-ENROLL-RC=0' && has 7a 'BOOTKEY-MARKER' && grep -q 'ima_policy=tcb' <(tr -d '\r' <"$W/7a/console.log"); then ok "7a-enrol-ima-on"
    else bad 7a "enrolment with IMA on failed"; return 1; fi
    id=$(mid bootkey-qemu-vm4)
    [ -n "$id" ] || { bad 7a "no active machine bootkey-qemu-vm4 on the server"; return 1; }
  fi

  # 7b: the host makes the runtime policy from the list the guest sends, while the guest waits.
  local d=$W/7b
  rm -rf "$d" "$W/vm4-rp.done" "$W/vm4-ima-good.txt"
  ( for _ in $(seq 600); do
      [ -f "$d/data.txt" ] && tr -d '\r' <"$d/data.txt" | grep -q '^=== END ima-good$' && break; sleep 1
    done
    bk_extract "$d/data.txt" ima-good /dev/stdout | gunzip >"$W/vm4-ima-good.txt" &&
      node "$BK_ROOT/dist/bootkey.js" runtime-policy generate --from-log "$W/vm4-ima-good.txt" >"$W/vm4-runtime-policy.json" 2>"$W/vm4-rp.err" &&
      admin_cli set-runtime-policy "$id" "$W/vm4-runtime-policy.json" >"$W/vm4-rp.set" 2>&1 &&
      echo "runtime policy set $(date +%s)" >"$W/vm4-rp.done" || cat "$W/vm4-rp.err" "$W/vm4-rp.set" >&2 2>/dev/null
  ) &
  local watcher=$!
  bk_vm_boot 7b vm4 "$W/esp-ima.img" "$W/root-vm4.img" snapshot "$(bk_ctl_runtime)" || true
  kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true
  local n_ok; n_ok=$(grep -c 'BOOTKEY-AGENT: .*: attesting (' "$W/7b/console.txt" || true)
  local evil_at; evil_at=$(sed -n 's/^BOOTKEY-EVIL-AT \([0-9]*\).*/\1/p' "$W/7b/console.txt" | head -1)
  local seen_at; seen_at=$(sed -n 's/^BOOTKEY-AGENT-FAILED-AT \([0-9]*\).*/\1/p' "$W/7b/console.txt" | head -1)
  local st; st=$(rt_state "$id")
  local failed_at; failed_at=$(echo "$st" | cut -d'|' -f3)
  bk_log "7b: policy: $(cat "$W/vm4-rp.done" 2>/dev/null || echo 'not set'); attesting results before the script: $n_ok; script ran at ${evil_at:-?} (guest clock), the agent got the failure at ${seen_at:-?} (guest clock); server: $st"
  if has 7b 'key handed to systemd-cryptsetup' && ! typed 7b && [ "$n_ok" -ge 3 ]; then ok "7b-agent-attests-${n_ok}-times"
  else bad 7b "expected an unattended unlock and at least 3 successful runtime attestations (got $n_ok)"; fi
  # the delay on one clock (the guest's): script run -> the agent holds the server's failed verdict
  local delay=$(( ${seen_at:-99999} - ${evil_at:-0} ))
  BK_BOOT_SECONDS=$delay
  # one interval with the agent's ±10 % jitter, + 2 s: the report itself and the guest's 1 s polling
  local bound=$(( BK_RT_INTERVAL * 11 / 10 + 2 ))
  if [ "${st%%|*}" = failed ] && echo "$st" | grep -q '/usr/local/bin/bk-evil' && [ -n "$evil_at" ] && [ "$delay" -le "$bound" ]; then
    ok "7b-unknown-script-fails-within-one-interval (${delay}s <= ${bound}s)"
  else bad 7b "expected the server to fail the machine naming /usr/local/bin/bk-evil within ${bound}s of its run (delay ${delay}s; $st)"; fi

  bk_vm_boot 7c vm4 "$W/esp-ima.img" "$W/root-vm4.img" snapshot "" \
    "REFUSED by[^\n]*[\s\S]*$BK_PROMPT|$BK_PROMPT[\s\S]*REFUSED by=$BK_PASS" || true
  if has 7c 'REFUSED by .*RUNTIME_FAILED' && has 7c 'BOOTKEY-MARKER' && typed 7c && ! has 7c 'key handed'; then ok "7c-reboot-refused-runtime-failed-then-passphrase"
  else bad 7c "expected RUNTIME_FAILED, then the passphrase boot"; fi

  admin_cli clear "$id" >&2 || bad 7d "admin clear $id failed"
  bk_vm_boot 7d vm4 "$W/esp-ima.img" "$W/root-vm4.img" snapshot "" || true
  if has 7d 'key handed to systemd-cryptsetup' && has 7d 'BOOTKEY-MARKER' && ! typed 7d; then ok "7d-after-admin-clear-unlocks"
  else bad 7d "after admin clear the boot did not unlock unattended"; fi
  bk_log "test 7 (runtime attestation, $([ "${BK_T7_REUSE:-}" = 1 ] && echo 3 || echo 4) boots): $(( $(date +%s) - t7 )) s"
}

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(1 2 3 4 6 7)
case " ${want[*]} " in *" 1 "*|*" 2 "*|*" 3 "*|*" 4 "*|*" 5 "*|*" enroll "*) test_enroll || want=() ;; esac
for t in "${want[@]}"; do
  case $t in 1|5) test_1_and_5 ;; 2) test_2 ;; 3) test_3 ;; 4) test_4 ;; 6) test_6 ;; 7) test_7 ;; enroll) ;; *) bk_log "unknown test $t" ;; esac
done
printf '%s\n' "${RESULTS[@]}"
echo "$PASSED passed, $FAILED failed ($(( $(date +%s) - t0 )) s)"
[ "$FAILED" = 0 ]
