#!/usr/bin/env bash
# Sets everything up and runs every test: type check, then the uvu suites (unit, corpus,
# swtpm and tpm2-tools cross-checks). Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BOOTKEY_SETUP_QEMU=${BOOTKEY_SETUP_QEMU:-0} bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

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

for spec in measuredboot:600 protocol:120 tpm:900 server:600 luks:300 e2e:1200 qemu:300 storm:1200; do
  dir=${spec%%:*}; limit=${spec##*:}
  [ -d "test/$dir" ] || continue
  if ! run_suite "$dir" "$limit"; then
    echo "test.sh: running test/$dir once more (a hang is a failure if it happens again)"
    run_suite "$dir" "$limit" || failed=$((failed + 1))
  fi
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
