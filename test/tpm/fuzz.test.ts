/**
 * Bounded, seeded fuzzing (fast-check, fixed seed, ~5 s): random and mutated bytes into every
 * unmarshaller of src/tpm/structures.ts and the verifier's parsers and checks. Only TpmError
 * may come out (no RangeError, TypeError, node:crypto errors or hangs).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import {
  unmarshalPublic, unmarshalPublic2B, unmarshalAttest, unmarshalSignature, readPCRSelection, readDigestList,
  readSymDef, readScheme, readKeyedHashScheme, marshalPublic2B, marshalSignature,
} from '../../src/tpm/structures.ts';
import { unmarshal } from '../../src/tpm/marshal.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { unmarshalCredentialFile, marshalCredentialFile, makeCredential } from '../../src/tpm/credential.ts';
import { parsePcrsSerialized, parsePcrsValues, parseTpm2ToolsPcrs } from '../../src/tpm/pcrfile.ts';
import { verifyQuote } from '../../src/tpm/quote.ts';
import { publicKeyFromTPMT, objectName, encryptSeed } from '../../src/tpm/crypto.ts';
import { createImportBlob } from '../../src/tpm/duplicate.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import type { PcrValues } from '../../src/pcrs.ts';

const SEED = 0x5eed;
const J = JSON.parse(readFileSync(new URL('../data/tpm/windows_gcp_shielded_vm.json', import.meta.url), 'utf8'));
const V = JSON.parse(readFileSync(new URL('../data/tpm/kdf-ecc-vectors.json', import.meta.url), 'utf8'));
const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
const akBytes = b64(J.AK.Public);
const quoteBytes = b64(J.Quote.Quote);
const sigBytes = b64(J.Quote.Signature);
const eccPub = Buffer.from(V.eccEncaps[2].publicKey, 'hex');
const ak = unmarshalPublic(akBytes);
const pcrs: PcrValues = new Map([['sha1', new Map((J.Log.PCRs as { Index: number; Digest: string }[]).map((p) => [p.Index, b64(p.Digest)]))]]);

// Samples of every input kind, to mutate.
const serializedPcrs = (() => {
  const b = Buffer.alloc(4 + 128 + 4 + 532);
  b.writeUInt32LE(1, 0);
  b.writeUInt16LE(TPM_ALG.SHA256, 4);
  b[6] = 3;
  b[7] = 0x03;
  b.writeUInt32LE(1, 132);
  b.writeUInt32LE(2, 136);
  b.writeUInt16LE(32, 140);
  b.writeUInt16LE(32, 140 + 66);
  return b;
})();
const SAMPLES: Buffer[] = [
  akBytes, marshalPublic2B(ak), eccPub, marshalPublic2B(unmarshalPublic(eccPub)), quoteBytes, b64(J.AK.CreateAttestation), sigBytes,
  marshalSignature({ sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, signatureR: Buffer.alloc(32, 1), signatureS: Buffer.alloc(32, 2) }),
  marshalCredentialFile({ credentialBlob: Buffer.alloc(44, 3), secret: Buffer.alloc(256, 4) }), serializedPcrs,
];

type Op = { op: 'set' | 'del' | 'ins' | 'trunc' | 'big'; pos: number; val: number };
const opArb: fc.Arbitrary<Op> = fc.record({ op: fc.constantFrom('set', 'del', 'ins', 'trunc', 'big'), pos: fc.nat(1 << 16), val: fc.integer({ min: 0, max: 255 }) });
function mutate(src: Buffer, ops: Op[]): Buffer {
  let b = Buffer.from(src);
  for (const o of ops) {
    if (b.length === 0) break;
    const p = o.pos % b.length;
    if (o.op === 'set') b[p] = o.val;
    else if (o.op === 'del') b = Buffer.concat([b.subarray(0, p), b.subarray(p + 1)]);
    else if (o.op === 'ins') b = Buffer.concat([b.subarray(0, p), Buffer.from([o.val]), b.subarray(p)]);
    else if (o.op === 'trunc') b = b.subarray(0, p);
    else if (p + 1 < b.length) b.writeUInt16BE(0xff00 | o.val, p); // a huge size/count field
  }
  return b;
}
const bytesArb = fc.oneof(
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...SAMPLES), fc.array(opArb, { minLength: 1, maxLength: 6 })).map(([s, ops]) => mutate(s, ops)) },
);

/** Runs fn; anything thrown must be a TpmError. */
function onlyTpmError(what: string, fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof TpmError)) throw new Error(`${what}: threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
}

const PARSERS: [string, (b: Buffer) => unknown][] = [
  ['unmarshalPublic', (b) => unmarshalPublic(b)],
  ['unmarshalPublic2B', (b) => unmarshalPublic2B(b)],
  ['unmarshalAttest', (b) => unmarshalAttest(b)],
  ['unmarshalSignature', (b) => unmarshalSignature(b)],
  ['readPCRSelection', (b) => unmarshal(b, 'sel', readPCRSelection)],
  ['readDigestList', (b) => unmarshal(b, 'dl', readDigestList)],
  ['readSymDef', (b) => unmarshal(b, 'sym', readSymDef)],
  ['readScheme', (b) => unmarshal(b, 'scheme', (r) => readScheme(r, 'x'))],
  ['readKeyedHashScheme', (b) => unmarshal(b, 'kh', readKeyedHashScheme)],
  ['unmarshalCredentialFile', (b) => unmarshalCredentialFile(b)],
  ['parsePcrsSerialized', (b) => parsePcrsSerialized(b)],
  ['parsePcrsValues', (b) => parsePcrsValues(b, [{ hash: TPM_ALG.SHA256, pcrs: [0, 1] }, { hash: TPM_ALG.SHA1, pcrs: [7] }])],
  ['parseTpm2ToolsPcrs', (b) => parseTpm2ToolsPcrs(b)],
];

test('every unmarshaller: random and mutated bytes → a value or a TpmError', () => {
  fc.assert(
    fc.property(bytesArb, (b) => {
      for (const [name, fn] of PARSERS) onlyTpmError(name, () => fn(b));
    }),
    { seed: SEED, numRuns: 20000 },
  );
});

test('verifyQuote on mutated real quotes, signatures and AKs → only TpmError, never "verified"', () => {
  fc.assert(
    fc.property(
      fc.array(opArb, { minLength: 1, maxLength: 4 }),
      fc.constantFrom('message', 'signature', 'ak'),
      (ops, which) => {
        const message = which === 'message' ? mutate(quoteBytes, ops) : quoteBytes;
        const signature = which === 'signature' ? mutate(sigBytes, ops) : sigBytes;
        const akb = which === 'ak' ? mutate(akBytes, ops) : akBytes;
        let verified = false;
        onlyTpmError(`verifyQuote(${which})`, () => {
          const pub = unmarshalPublic(akb);
          verifyQuote({ akPublic: pub, message, signature, nonce: Buffer.alloc(0), pcrs, allowSHA1: true });
          verified = true;
        });
        // A mutation may be a no-op (e.g. setting a byte to its own value); otherwise it must fail.
        if (verified) assert.ok(message.equals(quoteBytes) && signature.equals(sigBytes) && (akb.equals(akBytes) || unmarshalPublic(akb).type === TPM_ALG.RSA));
      },
    ),
    { seed: SEED, numRuns: 8000 },
  );
});

test('key handling on mutated public areas (RSA/ECC): publicKeyFromTPMT, objectName, seeds, MakeCredential, import blobs → only TpmError', () => {
  fc.assert(
    fc.property(fc.constantFrom(akBytes, eccPub), fc.array(opArb, { minLength: 1, maxLength: 4 }), (src, ops) => {
      const b = mutate(src, ops);
      onlyTpmError('public', () => {
        const p = unmarshalPublic(b);
        objectName(p);
        publicKeyFromTPMT(p);
      });
      onlyTpmError('encryptSeed', () => encryptSeed(unmarshalPublic(b), 'IDENTITY'));
      onlyTpmError('makeCredential', () => makeCredential(unmarshalPublic(b), Buffer.alloc(34, 1), Buffer.alloc(16)));
      onlyTpmError('createImportBlob', () => createImportBlob(unmarshalPublic(b), Buffer.alloc(16), { authPolicy: Buffer.alloc(32) }));
    }),
    { seed: SEED, numRuns: 1500 },
  );
});

test.run();
