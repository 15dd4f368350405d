#!/usr/bin/env bash
# Regenerates test/data/efi/: tiny-uki.efi (make-tiny.ts) and tiny-uki.signed.efi, sbsigned with
# a throwaway self-signed RSA key whose certificate is tiny-signer.pem (the key is not kept).
set -euo pipefail
cd "$(dirname "$0")"
node --import tsx make-tiny.ts
d=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/key.pem" -out tiny-signer.pem -days 36500 \
  -subj "/CN=bootkey tiny test signer" -sha256 2>/dev/null
sbsign --key "$d/key.pem" --cert tiny-signer.pem --output tiny-uki.signed.efi tiny-uki.efi
rm -rf "$d"
