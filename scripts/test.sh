#!/usr/bin/env bash
# Sets everything up and runs every test: type check, build, the uvu suites (unit, corpus,
# swtpm and tpm2-tools cross-checks, server, end-to-end, storms), then the QEMU whole-boot tests. Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BOOTKEY_SETUP_QEMU=${BOOTKEY_SETUP_QEMU:-1} bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

failed=0; passed=0
echo "== typecheck"
if npx tsc --noEmit -p .; then passed=$((passed+1)); else failed=$((failed+1)); fi
echo "== build"
if node scripts/build.mjs; then passed=$((passed+1)); else failed=$((failed+1)); fi

# One uvu process per folder, each under a time limit: a hung suite cannot hold CI hostage,
# and suites never share a process (swtpm serves one connection at a time).
run_suite() { # dir, seconds
  local dir=$1 limit=$2 log rc total ok skipped bad
  log=$(mktemp)
  echo "== uvu test/$dir"
  timeout --kill-after=15 "$limit" node --import tsx node_modules/uvu/bin.js "test/$dir" '\.test\.ts$' 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  total=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/^ *Total: *\([0-9]*\).*/\1/p' | tail -1)
  ok=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/^ *Passed: *\([0-9]*\).*/\1/p' | tail -1)
  skipped=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/^ *Skipped: *\([0-9]*\).*/\1/p' | tail -1)
  rm -f "$log"
  total=${total:-0}; ok=${ok:-0}; skipped=${skipped:-0}
  bad=$((total - ok - skipped))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "test.sh: test/$dir did not finish within ${limit}s"
    return 124
  fi
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi   # a crash outside any test
  passed=$((passed + ok)); failed=$((failed + bad))
  return 0
}

# storm normally takes 1–2 min; it has hung twice (no CPU, no sockets, in its set-up), cause not
# found: a short limit makes such a hang cost minutes, and the retry usually passes.
for spec in measuredboot:600 ima:600 runtime:600 attacks:300 efi:300 config:120 protocol:120 hooks:60 tpm:900 server:600 luks:300 e2e:1200 qemu:300 storm:360 packaging:900; do
  dir=${spec%%:*}; limit=${spec##*:}
  [ -d "test/$dir" ] || continue
  if ! run_suite "$dir" "$limit"; then
    echo "test.sh: running test/$dir once more (a hang is a failure if it happens again)"
    run_suite "$dir" "$limit" || failed=$((failed + 1))
  fi
done
# Whole-boot tests (QEMU + OVMF + swtpm + dracut initrd + LUKS2 root, ~5 min under TCG); skip
# with BOOTKEY_SKIP_QEMU=1.
if [ "${BOOTKEY_SKIP_QEMU:-0}" != 1 ]; then
  echo "== whole-boot tests (qemu-tests/run-tests.sh)"
  qlog=$(mktemp)
  timeout --kill-after=30 2400 bash qemu-tests/run-tests.sh 2>&1 | tee "$qlog"
  qrc=${PIPESTATUS[0]}
  qline=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$qlog" | tail -1)
  rm -f "$qlog"
  qp=$(echo "$qline" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); qf=$(echo "$qline" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p')
  passed=$((passed + ${qp:-0})); failed=$((failed + ${qf:-0}))
  if [ "$qrc" -ne 0 ] && [ "${qf:-0}" -eq 0 ]; then failed=$((failed + 1)); echo "test.sh: the whole-boot tests did not complete (status $qrc)"; fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
