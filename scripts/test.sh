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

log=$(mktemp)
echo "== uvu"
node --import tsx node_modules/uvu/bin.js test '\.test\.ts$' 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
total=$(sed -n 's/^ *Total: *\([0-9]*\).*/\1/p' "$log" | tail -1)
ok=$(sed -n 's/^ *Passed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
skipped=$(sed -n 's/^ *Skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
total=${total:-0}; ok=${ok:-0}; skipped=${skipped:-0}
bad=$((total - ok - skipped))
if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi   # a crash outside any test
passed=$((passed + ok)); failed=$((failed + bad))
rm -f "$log"
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
