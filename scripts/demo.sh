#!/usr/bin/env bash
# The main job, end to end on this machine (today: the TPM layer). Starts a fresh swtpm,
# reads its EK (and certificate), derives the AK, quotes PCRs with a fresh nonce, verifies the
# quote in software, replays an event log and checks a measured-boot policy. Later issues grow
# this into: key-release server + enrolled virtual machine + unattended LUKS2 unlock.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/build.mjs
bootkey() { node dist/bootkey.js "$@"; }

work=$(mktemp -d); state="$work/tpm"; mkdir -p "$state"
cleanup() { [ -n "${swpid:-}" ] && kill "$swpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== swtpm: a fresh TPM with an EK certificate (swtpm's local CA)"
swtpm_setup --tpm2 --tpmstate "$state" --createek --create-ek-cert --lock-nvram --overwrite --pcr-banks sha1,sha256 >/dev/null
port=$(python3 -c 'import socket
for p in range(23400, 23500, 2):
    try:
        a=socket.socket(); a.bind(("127.0.0.1",p)); b=socket.socket(); b.bind(("127.0.0.1",p+1)); a.close(); b.close(); print(p); break
    except OSError: pass')
swtpm socket --tpm2 --tpmstate dir="$state" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((port+1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
swpid=$!
export BOOTKEY_TPM="swtpm:host=127.0.0.1,port=$port"
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

echo "== bootkey tpm info"
bootkey tpm info
echo "== bootkey tpm ek (RSA EK: name and certificate)"
bootkey tpm ek --alg rsa --public "$work/ek.pub" --cert "$work/ek.crt"
echo "== bootkey tpm ak (ECC P-256 AK, a primary: the same on every boot)"
bootkey tpm ak --alg ecc --public "$work/ak.pub"
nonce=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
echo "== bootkey tpm quote (nonce $nonce)"
bootkey tpm quote --ak-alg ecc --pcrs sha256:0,1,2,3,4,5,6,7 --nonce "$nonce" \
  --message "$work/quote.msg" --signature "$work/quote.sig" --public "$work/ak.pub" --pcr-values "$work/pcrs.json"
echo "== bootkey tpm checkquote (software verification)"
bootkey tpm checkquote --public "$work/ak.pub" --message "$work/quote.msg" --signature "$work/quote.sig" \
  --nonce "$nonce" --pcr-values "$work/pcrs.json"
echo "== the same quote with another nonce must be refused"
if bootkey tpm checkquote --public "$work/ak.pub" --message "$work/quote.msg" --signature "$work/quote.sig" \
  --nonce "00$nonce" --pcr-values "$work/pcrs.json"; then echo "demo: a wrong nonce was accepted" >&2; exit 1; fi

log=test/data/qemu/uki-sb-on.bin
if [ -f "$log" ]; then
  echo "== measured boot: replay an OVMF Secure Boot log, generate a policy, check it"
  bootkey eventlog replay "$log" | head -20
  bootkey policy generate "$log" -o "$work/policy.json"
  bootkey policy check "$work/policy.json" "$log"
  if [ -f test/data/qemu/uki-sb-off.bin ]; then
    echo "== the Secure Boot off log must be refused by that policy"
    if bootkey policy check "$work/policy.json" test/data/qemu/uki-sb-off.bin; then echo "demo: SB off accepted" >&2; exit 1; fi
  fi
fi
echo "demo: OK"
