#!/usr/bin/env bash
# Whole-boot tests of bootkey in a dracut + systemd initrd (issue 5), each checking the serial console:
#   enroll  first boot: passphrase typed at the prompt, then `bootkey enroll` in the booted root
#   1       reboot: unlocked with no passphrase typed, marker reached
#   5       (same boot as 1) asking again in that boot is refused (released PCR extended)
#   2       another UKI command line: refused with the reason, the prompt still takes the passphrase
#   3       server stopped: after the deadline the prompt still works, no hang
#   4       the disk in another VM (another swtpm): refused
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

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(1 2 3 4)
test_enroll || want=()
for t in "${want[@]}"; do
  case $t in 1|5) test_1_and_5 ;; 2) test_2 ;; 3) test_3 ;; 4) test_4 ;; enroll) ;; *) bk_log "unknown test $t" ;; esac
done
printf '%s\n' "${RESULTS[@]}"
echo "$PASSED passed, $FAILED failed ($(( $(date +%s) - t0 )) s)"
[ "$FAILED" = 0 ]
