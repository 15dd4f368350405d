/**
 * Software verification throughput on one core (no TPM): quote verifications/s (ECDSA P-256,
 * RSASSA-2048, and the real GCE RSASSA-SHA1 quote), MakeCredentials/s and import blobs/s to RSA
 * 2048 and ECC P-256 EKs. Quotes are made in software with node:crypto keys in TPM shape (same
 * verification work as a TPM's). Standalone: node --import tsx bench/verify.ts
 */
import { generateKeyPairSync, sign, createHash, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TPM_ALG, TPM_ECC, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT } from '../src/tpm/constants.ts';
import { marshal } from '../src/tpm/marshal.ts';
import { writePCRSelection, marshalSignature, unmarshalPublic, SYM_AES128_CFB, SCHEME_NULL, type TPMTPublic, type TPMTSignature } from '../src/tpm/structures.ts';
import { verifyQuote } from '../src/tpm/quote.ts';
import { makeCredential } from '../src/tpm/credential.ts';
import { createImportBlob } from '../src/tpm/duplicate.ts';
import { objectName } from '../src/tpm/crypto.ts';
import type { PcrValues } from '../src/pcrs.ts';

const AK_ATTRS = TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.userWithAuth | TPMA_OBJECT.restricted | TPMA_OBJECT.sign;
const EK_ATTRS = TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.adminWithPolicy | TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt;

function tpmPublic(key: KeyObject, attrs: number, signing: boolean): TPMTPublic {
  const j = key.export({ format: 'jwk' });
  if (j.kty === 'RSA') {
    return { type: TPM_ALG.RSA, nameAlg: TPM_ALG.SHA256, objectAttributes: attrs, authPolicy: Buffer.alloc(0),
      parameters: { symmetric: signing ? { algorithm: TPM_ALG.NULL, keyBits: 0, mode: 0 } : { ...SYM_AES128_CFB }, scheme: signing ? { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 } : { ...SCHEME_NULL }, keyBits: 2048, exponent: 0 },
      unique: { rsa: Buffer.from(j.n!, 'base64url') } };
  }
  return { type: TPM_ALG.ECC, nameAlg: TPM_ALG.SHA256, objectAttributes: attrs, authPolicy: Buffer.alloc(0),
    parameters: { symmetric: signing ? { algorithm: TPM_ALG.NULL, keyBits: 0, mode: 0 } : { ...SYM_AES128_CFB }, scheme: signing ? { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 } : { ...SCHEME_NULL }, curveID: TPM_ECC.NIST_P256, kdf: { ...SCHEME_NULL } },
    unique: { x: Buffer.from(j.x!, 'base64url'), y: Buffer.from(j.y!, 'base64url') } };
}

/** A TPMS_ATTEST quote (Part 2 §10.12.12) over sha256 PCRs 0–7, and its TPMT_SIGNATURE. */
function softwareQuote(kind: 'ecc' | 'rsa') {
  const { publicKey, privateKey } = kind === 'ecc' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ak = tpmPublic(publicKey, AK_ATTRS, true);
  const pcrs: PcrValues = new Map([['sha256', new Map([...Array(8).keys()].map((i) => [i, createHash('sha256').update(`pcr${i}`).digest()]))]]);
  const sel = [{ hash: TPM_ALG.SHA256, pcrs: [...Array(8).keys()] }];
  const nonce = randomBytes(32);
  const pcrDigest = createHash('sha256').update(Buffer.concat([...pcrs.get('sha256')!.values()])).digest();
  const message = marshal((w) => {
    w.u32(TPM_GENERATED_VALUE).u16(TPM_ST.ATTEST_QUOTE).tpm2b(objectName(ak)).tpm2b(nonce);
    w.u64(123456n).u32(1).u32(0).u8(1).u64(0x2019102300163636n);
    writePCRSelection(w, sel);
    w.tpm2b(pcrDigest);
  });
  let sig: TPMTSignature;
  if (kind === 'ecc') {
    const rs = sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    sig = { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, signatureR: rs.subarray(0, 32), signatureS: rs.subarray(32) };
  } else {
    sig = { sigAlg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256, sig: sign('sha256', message, privateKey) };
  }
  return { akPublic: ak, message, signature: marshalSignature(sig), nonce, pcrs };
}

function rate(fn: () => unknown, ms = 1000): number {
  for (let i = 0; i < 20; i++) fn(); // warm-up
  let n = 0;
  const start = process.hrtime.bigint();
  const until = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    now = process.hrtime.bigint();
  }
  return Math.round((n * 1e9) / Number(now - start));
}

export async function benchVerify(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const kind of ['ecc', 'rsa'] as const) {
    const q = softwareQuote(kind);
    verifyQuote(q);
    out[`quote verifications/s (${kind === 'ecc' ? 'ECDSA P-256' : 'RSASSA 2048'}, 8 PCRs)`] = rate(() => verifyQuote(q));
  }
  const J = JSON.parse(readFileSync(new URL('../test/data/tpm/windows_gcp_shielded_vm.json', import.meta.url), 'utf8'));
  const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
  const gce = {
    akPublic: unmarshalPublic(b64(J.AK.Public)), message: b64(J.Quote.Quote), signature: b64(J.Quote.Signature), nonce: Buffer.alloc(0), allowSHA1: true,
    pcrs: new Map([['sha1', new Map((J.Log.PCRs as { Index: number; Digest: string }[]).map((p) => [p.Index, b64(p.Digest)]))]]) as PcrValues,
  };
  verifyQuote(gce);
  out['quote verifications/s (real GCE quote, RSASSA-SHA1, 24 PCRs)'] = rate(() => verifyQuote(gce));
  const secret = randomBytes(32);
  for (const kind of ['rsa', 'ecc'] as const) {
    const pair = kind === 'ecc' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ek = tpmPublic(pair.publicKey, EK_ATTRS, false);
    const name = Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]);
    out[`MakeCredentials/s (${kind === 'ecc' ? 'ECC P-256' : 'RSA 2048'} EK)`] = rate(() => makeCredential(ek, name, secret));
    out[`import blobs/s (${kind === 'ecc' ? 'ECC P-256' : 'RSA 2048'} EK)`] = rate(() => createImportBlob(ek, secret, { authPolicy: secret }));
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [k, v] of Object.entries(await benchVerify())) console.log(`${k.padEnd(64)} ${v}`);
}
