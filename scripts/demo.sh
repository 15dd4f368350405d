#!/usr/bin/env bash
# bootkey's main job, end to end on this machine, in about half a minute:
#
#   a key-release server (SQLite) + a "machine" whose TPM is a swtpm + a LUKS2 disk image.
#   The machine is enrolled, then unlocks its disk at "boot" only when its TPM quote and
#   measured-boot event log show the boot chain it was enrolled with.
#
# The machine's boots are our own OVMF boots (test/data/qemu): the swtpm's PCRs are extended
# with the digests of a real event log, so the log and the PCRs agree as after that boot.
# This host has no device-mapper, so the released key is proven with
# `cryptsetup open --test-passphrase` (the real initrd uses `bootkey unlock --name NAME`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v cryptsetup >/dev/null || { echo "demo: cryptsetup is needed (apt-get install cryptsetup-bin)" >&2; exit 1; }
node scripts/build.mjs
bootkey() { node dist/bootkey.js "$@"; }   # the esbuild bundle that `npm run build` makes
replay_log() { node --import tsx scripts/replay-log.ts --tpm "$TPM" --eventlog "$1"; }

work=$(mktemp -d)
cleanup() {
  [ -n "${srvpid:-}" ] && kill "$srvpid" 2>/dev/null
  [ -n "${swpid:-}" ] && kill "$swpid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

n=0
step() { n=$((n+1)); printf '\n\033[1m%d. %s\033[0m\n' "$n" "$*"; }
proves() { printf '   \033[32m→ %s\033[0m\n' "$*"; }
free_port_pair() { node -e '
  const net = require("net");
  (async () => { for (;;) {
    const a = net.createServer(); await new Promise(r => a.listen(0, "127.0.0.1", r)); const p = a.address().port; a.close();
    const b = net.createServer(); const ok = await new Promise(r => { b.once("error", () => r(false)); b.listen(p + 1, "127.0.0.1", () => r(true)); });
    if (ok) { b.close(); console.log(p); return; } } })();'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "demo: nothing listens on $1" >&2; exit 1; }

GOOD=test/data/qemu/uki-sb-on.bin     # OVMF, Secure Boot on, signed UKI
BAD=test/data/qemu/uki-sb-off.bin     # the same UKI, Secure Boot off

start_tpm() {
  tport=$(free_port_pair)
  swtpm socket --tpm2 --tpmstate dir="$work/tpm" --server type=tcp,port="$tport",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((tport+1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear 2>/dev/null &
  swpid=$!
  TPM="swtpm:host=127.0.0.1,port=$tport"
  wait_port "$tport"
  sleep 0.2
}
reboot_into() {
  # an orderly reboot: TPM2_Shutdown, power off, power on (PCRs reset), the firmware measures $1
  TPM2TOOLS_TCTI="$TPM" tpm2_shutdown -c 2>/dev/null || true
  kill "$swpid"; wait "$swpid" 2>/dev/null || true
  start_tpm
  replay_log "$1" >/dev/null
}

step "Key-release server: bootkey server init, then bootkey server on 127.0.0.1 (SQLite)"
bootkey server init --state "$work/server" >/dev/null
# Port 0: the kernel picks a free port and the server logs the one it got (never a fixed port,
# and a server that cannot bind exits at once with the reason instead of a later TLS error).
# (node directly, not the shell function, so that $! is the server's own pid)
node dist/bootkey.js server --state "$work/server" --listen "127.0.0.1:0" >"$work/server.log" 2>&1 &
srvpid=$!
sport=
for _ in $(seq 150); do
  sport=$(sed -n 's/^event=listening .* port=\([0-9]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$sport" ] && break
  kill -0 "$srvpid" 2>/dev/null || { echo "demo: the server exited:" >&2; cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$sport" ] || { echo "demo: the server did not report listening:" >&2; cat "$work/server.log" >&2; exit 1; }
SERVER="https://127.0.0.1:$sport"
echo "   listening at $SERVER; CA $work/server/ca.pem (clients pin it); the CA key is in $work/server-ca, not in the state"
# The admin token stays here; the enrolling host gets a one-use enrolment token.
bootkey admin --server "$SERVER" --ca "$work/server/ca.pem" --admin-token "$work/server/admin.token" \
  token create --uses 1 --expires 1h --comment demo-machine >"$work/enrol.out"
head -1 "$work/enrol.out" >"$work/enrol.token"
echo "   enrolment token $(sed -n 's/^# enrolment token \(t-[0-9a-f]*\).*/\1/p' "$work/enrol.out"): 1 use, 1 hour, can only enrol (bootkey admin token create)"

step "The machine's TPM: a swtpm with an EK certificate, booted into $GOOD"
mkdir -p "$work/tpm"
swtpm_setup --tpm2 --tpmstate "$work/tpm" --createek --create-ek-cert --lock-nvram --overwrite --pcr-banks sha1,sha256 >/dev/null
start_tpm
replay_log "$GOOD" | sed 's/^/   /'
proves "the TPM's PCRs are now those of a real Secure Boot boot, and the event log explains them"

step "A LUKS2 disk image with a passphrase (PBKDF2, fast for the demo)"
truncate -s 32M "$work/disk.img"
printf 'demo passphrase' > "$work/pass"
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$work/pass" "$work/disk.img"
echo "   $work/disk.img: keyslot 0 = the passphrase"

step "Enrol: prove the AK lives in this TPM, send quote + event log, add a keyslot and a bootkey token"
bootkey enroll --server "$SERVER" --ca "$work/server/ca.pem" --enrol-token "$work/enrol.token" \
  --tpm "$TPM" --device "$work/disk.img" --key-file "$work/pass" --eventlog "$GOOD" --machine-id demo-machine 2>&1 | sed 's/^/   /'
cryptsetup token export --token-id 0 "$work/disk.img" | node -e '
  const t = JSON.parse(require("fs").readFileSync(0, "utf8"));
  console.log(`   token 0: type ${t.type}, keyslots ${t.keyslots}, servers ${t.servers}, machine ${t.machine}, released PCR ${t.released_pcr},`);
  console.log(`            EK ${t.ek_alg} pinned (${t.ek.length} base64 chars), CA pinned, disk share ${t.share.slice(0, 8)}… (useless without the server share),`);
  console.log(`            signed by the server: machine, EK and released PCR (${t.sig.slice(0, 8)}…)`);'
proves "the server knows this EK/AK and the boot it expects; the disk holds only half of the key"

step "Boot: bootkey unlock --test (attest, receive the sealed share, unseal, extend PCR 15, check the key)"
bootkey unlock --device "$work/disk.img" --tpm "$TPM" --eventlog "$GOOD" --test --verbose 2>&1 | sed 's/^/   /'
proves "the derived key opens the LUKS2 keyslot (cryptsetup open --test-passphrase; no device-mapper on this host)"

step "A second unlock in the same boot is refused"
set +e
bootkey unlock --device "$work/disk.img" --tpm "$TPM" --eventlog "$GOOD" --test 2>&1 | sed 's/^/   /'
rc=${PIPESTATUS[0]}
set -e
echo "   exit status $rc"
[ "$rc" = 1 ] || { echo "demo: the second unlock was not refused" >&2; exit 1; }
proves "PCR 15 was extended after the release: the server refuses (ALREADY_RELEASED) and the old blob no longer unseals"

step "Reboot with Secure Boot OFF ($BAD): refused, with the policy's reasons"
reboot_into "$BAD"
set +e
bootkey unlock --device "$work/disk.img" --tpm "$TPM" --eventlog "$BAD" --test 2>&1 | sed 's/^/   /'
rc=${PIPESTATUS[0]}
set -e
echo "   exit status $rc"
[ "$rc" = 1 ] || { echo "demo: a Secure Boot off boot was not refused" >&2; exit 1; }
proves "a changed boot chain gets nothing, and the server says why"

step "Reboot into the enrolled chain again: unlocked"
reboot_into "$GOOD"
bootkey unlock --device "$work/disk.img" --tpm "$TPM" --eventlog "$GOOD" --test 2>&1 | sed 's/^/   /'
proves "nothing was broken by the refusals; every good boot unlocks once"

step "The server is down: bootkey unlock gives up at its deadline with exit status 3"
reboot_into "$GOOD"
kill "$srvpid"; wait "$srvpid" 2>/dev/null || true; srvpid=
set +e
bootkey unlock --device "$work/disk.img" --tpm "$TPM" --eventlog "$GOOD" --test --deadline 3 2>&1 | sed 's/^/   /'
rc=${PIPESTATUS[0]}
set -e
echo "   exit status $rc"
[ "$rc" = 3 ] || { echo "demo: expected exit status 3" >&2; exit 1; }
proves "no server, no key: the initrd falls back to the passphrase prompt"

echo
echo "   server log (one line per event, never a secret):"
sed 's/^/   | /' "$work/server.log" | cut -c1-160 | tail -8
printf '\ndemo: OK\n'
