/**
 * A real quote: Windows on a GCE Shielded VM (google/go-attestation testdata, see
 * test/data/tpm/SOURCES.md). RSA 2048 AK, RSASSA-SHA1 signature over the sha1 bank, PCRs 0–23,
 * empty nonce.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { verifyQuote, type VerifyQuoteOptions } from '../../src/tpm/quote.ts';
import { unmarshalPublic, unmarshalAttest } from '../../src/tpm/structures.ts';
import { objectName } from '../../src/tpm/crypto.ts';
import { TPM_ALG, TPM_ST } from '../../src/tpm/constants.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import type { PcrValues } from '../../src/pcrs.ts';

const J = JSON.parse(readFileSync(new URL('../data/tpm/windows_gcp_shielded_vm.json', import.meta.url), 'utf8'));
const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
const ak = unmarshalPublic(b64(J.AK.Public), 'GCE AK');
const message = b64(J.Quote.Quote);
const signature = b64(J.Quote.Signature);
const nonce = b64(J.Quote.Nonce);
// Log.PCRs: DigestAlg is Go's crypto.Hash (3 = SHA-1, 5 = SHA-256).
const GO_HASH: Record<number, 'sha1' | 'sha256'> = { 3: 'sha1', 5: 'sha256' };
const pcrs: PcrValues = new Map();
for (const p of J.Log.PCRs as { Index: number; Digest: string; DigestAlg: number }[]) {
  const bank = GO_HASH[p.DigestAlg];
  if (!pcrs.has(bank)) pcrs.set(bank, new Map());
  pcrs.get(bank)!.set(p.Index, b64(p.Digest));
}
const opts: VerifyQuoteOptions = { akPublic: ak, message, signature, nonce, pcrs, allowSHA1: true };

function code(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (e) {
    if (!(e instanceof TpmError)) throw e;
    return e.code;
  }
}

test('the GCE quote verifies: AK attributes, signature, magic, type, nonce, all 24 sha1 PCRs', () => {
  assert.is(ak.type, TPM_ALG.RSA);
  const r = verifyQuote(opts);
  assert.ok(r.akAttributesChecked);
  assert.ok(r.pcrsVerified);
  assert.is(r.hashName, 'sha1');
  assert.is(r.sigAlg, TPM_ALG.RSASSA);
  assert.equal(r.pcrSelect, [{ hash: TPM_ALG.SHA1, pcrs: [...Array(24).keys()] }]);
  assert.is(r.pcrs!.get('sha1')!.size, 24);
  // qualifiedSigner is a Name with the AK's nameAlg; the AK's own Name is computable.
  assert.is(objectName(ak).length, 34);
  assert.is(r.attest.qualifiedSigner.readUInt16BE(0), TPM_ALG.SHA256);
});

test('SHA-1 is refused unless allowed, and when SHA-256 is required', () => {
  assert.is(code(() => verifyQuote({ ...opts, allowSHA1: false })), 'VERIFY_HASH');
  assert.is(code(() => verifyQuote({ ...opts, requireHash: 'sha256' })), 'VERIFY_HASH');
});

test('every changed byte of the quote is refused', () => {
  for (let i = 0; i < message.length; i++) {
    for (const bit of [0x01, 0x80]) {
      const m = Buffer.from(message);
      m[i] ^= bit;
      assert.is(code(() => verifyQuote({ ...opts, message: m })), 'VERIFY_SIGNATURE', `quote byte ${i}`);
    }
  }
  assert.is(code(() => verifyQuote({ ...opts, message: message.subarray(0, -1) })), 'VERIFY_SIGNATURE');
  assert.is(code(() => verifyQuote({ ...opts, message: Buffer.concat([message, Buffer.alloc(1)]) })), 'VERIFY_SIGNATURE');
});

test('every changed byte of the signature is refused', () => {
  for (let i = 0; i < signature.length; i++) {
    const s = Buffer.from(signature);
    s[i] ^= 0x01;
    const c = code(() => verifyQuote({ ...opts, signature: s }));
    // bytes 0–3 are sigAlg and hash (→ another algorithm or hash), 4–5 the size (→ parse error)
    assert.ok(c === 'VERIFY_SIGNATURE' || (i < 4 && c === 'VERIFY_HASH'), `signature byte ${i}: ${c}`);
  }
});

test('any other nonce is refused; every changed PCR value is refused', () => {
  for (let n = 1; n <= 32; n++) assert.is(code(() => verifyQuote({ ...opts, nonce: Buffer.alloc(n, n) })), 'VERIFY_NONCE');
  for (let i = 0; i < 24; i++) {
    const p: PcrValues = new Map([['sha1', new Map(pcrs.get('sha1')!)]]);
    const v = Buffer.from(p.get('sha1')!.get(i)!);
    v[19] ^= 1;
    p.get('sha1')!.set(i, v);
    assert.is(code(() => verifyQuote({ ...opts, pcrs: p })), 'VERIFY_PCR_DIGEST', `PCR ${i}`);
  }
});

test('the AK\'s own creation attestation (same key, real TPM) is not a quote: VERIFY_TYPE', () => {
  const att = b64(J.AK.CreateAttestation);
  assert.is(unmarshalAttest(att).type, TPM_ST.ATTEST_CREATION);
  assert.is(code(() => verifyQuote({ ...opts, message: att, signature: b64(J.AK.CreateSignature) })), 'VERIFY_TYPE');
});

test.run();
