import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { createHash, createPublicKey } from 'node:crypto';
import { toolTpm, createEkAk, type ToolTpm } from '../helpers/tpm2tools.ts';
import { verifyQuote, checkAKAttributes, type VerifyQuoteOptions } from '../../src/tpm/quote.ts';
import { unmarshalPublic2B, unmarshalSignature, type TPMTPublic } from '../../src/tpm/structures.ts';
import { parsePcrsSerialized, parsePcrsValues } from '../../src/tpm/pcrfile.ts';
import { TPM_ALG, TPMA_OBJECT } from '../../src/tpm/constants.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import type { PcrValues } from '../../src/pcrs.ts';

let t: ToolTpm;
const NONCE = Buffer.from('a1b2c3d4e5f60718293a4b5c6d7e8f90', 'hex');

test.before(async () => {
  t = await toolTpm();
  // Non-trivial PCR values: PCR 0..2 extended with distinct digests.
  for (const i of [0, 1, 2]) {
    const d = createHash('sha256').update(`pcr${i}`).digest('hex');
    t.run('tpm2_pcrextend', [`${i}:sha256=${d}`]);
  }
});
test.after(async () => {
  await t?.stop();
});

/** Throws unless fn throws a TpmError with `code` (and a message matching `re`). */
function refuses(fn: () => unknown, code: string, re?: RegExp): TpmError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, TpmError, String(e));
    assert.is((e as TpmError).code, code, (e as Error).message);
    if (re) assert.match((e as Error).message, re);
    return e as TpmError;
  }
  assert.unreachable(`expected ${code}`);
  throw new Error('unreachable');
}

interface Quoted {
  ak: TPMTPublic;
  message: Buffer;
  signature: Buffer;
  pcrs: PcrValues;
  pcrFile: Buffer;
}

let n = 0;
function quote(ak: string, sel: string, opts: { hash?: string; scheme?: string; nonce?: Buffer } = {}): Quoted {
  const id = `q${n++}`;
  const args = ['-c', `${ak}.ctx`, '-l', sel, '-q', (opts.nonce ?? NONCE).toString('hex'), '-m', `${id}.msg`, '-s', `${id}.sig`, '-o', `${id}.pcrs`, '-g', opts.hash ?? 'sha256'];
  if (opts.scheme) args.push('--scheme', opts.scheme);
  t.run('tpm2_quote', args);
  // PCR values read independently (tpm2_pcrread, values format) in selection order.
  t.run('tpm2_pcrread', [sel, '-o', `${id}.vals`]);
  const selection = parsePcrsSerialized(t.file(`${id}.pcrs`)).selection;
  return {
    ak: unmarshalPublic2B(t.file(`${ak}.pub`)),
    message: t.file(`${id}.msg`),
    signature: t.file(`${id}.sig`),
    pcrs: parsePcrsValues(t.file(`${id}.vals`), selection),
    pcrFile: t.file(`${id}.pcrs`),
  };
}

const base = (q: Quoted): VerifyQuoteOptions => ({ akPublic: q.ak, message: q.message, signature: q.signature, nonce: NONCE, pcrs: q.pcrs });

const KINDS = [
  { alg: 'ecc', scheme: 'ecdsa', hash: 'sha256' },
  { alg: 'ecc384', scheme: 'ecdsa', hash: 'sha384' },
  { alg: 'rsa', scheme: 'rsassa', hash: 'sha256' },
  { alg: 'rsa', scheme: 'rsapss', hash: 'sha256' },
];
const quotes = new Map<string, Quoted>();

for (const k of KINDS) {
  test(`a tpm2_quote from a ${k.alg}/${k.scheme}/${k.hash} AK verifies (sha256 bank, nonce)`, () => {
    const { ak } = createEkAk(t, 'rsa', k.alg, k.scheme, k.hash);
    const q = quote(ak, 'sha256:0,1,2,7', { hash: k.hash, scheme: k.scheme });
    quotes.set(`${k.alg}/${k.scheme}`, q);
    const r = verifyQuote({ ...base(q), requireHash: k.hash as 'sha256' });
    assert.ok(r.pcrsVerified);
    assert.ok(r.akAttributesChecked);
    assert.is(r.hashName, k.hash);
    assert.equal(r.pcrSelect, [{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 7] }]);
    assert.is(r.pcrs!.get('sha256')!.get(0)!.toString('hex'), q.pcrs.get('sha256')!.get(0)!.toString('hex'));
    assert.is(r.attest.extraData.toString('hex'), NONCE.toString('hex'));
    // tpm2_quote -o's serialized PCR file holds the same values.
    assert.equal(parsePcrsSerialized(q.pcrFile).values, q.pcrs);
  });
}

test('two banks and 24 PCRs (several TPML_DIGEST lists in the -o file)', () => {
  const { ak } = createEkAk(t, 'rsa', 'ecc');
  const sel = 'sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23+sha1:0,1,2';
  const q = quote(ak, sel);
  const parsed = parsePcrsSerialized(q.pcrFile);
  assert.is(parsed.values.get('sha256')!.size, 24);
  assert.equal(parsed.values, q.pcrs);
  const r = verifyQuote({ ...base(q), pcrs: parsed.values });
  assert.is(r.pcrSelect.length, 2);
  // Banks are hashed in the quote's TPML order: sha256 first here.
  assert.is(r.pcrSelect[0].hash, TPM_ALG.SHA256);
});

test('wrong nonce → VERIFY_NONCE', () => {
  const q = quotes.get('ecc/ecdsa')!;
  const bad = Buffer.from(NONCE);
  bad[5] ^= 1;
  refuses(() => verifyQuote({ ...base(q), nonce: bad }), 'VERIFY_NONCE', /nonce/);
  refuses(() => verifyQuote({ ...base(q), nonce: NONCE.subarray(1) }), 'VERIFY_NONCE', /bytes/);
  refuses(() => verifyQuote({ ...base(q), nonce: Buffer.alloc(0) }), 'VERIFY_NONCE');
});

test('changed, swapped or missing PCR values → VERIFY_PCR_DIGEST', () => {
  const q = quotes.get('rsa/rsassa')!;
  const clone = (): PcrValues => new Map([...q.pcrs].map(([b, m]) => [b, new Map(m)]));
  const changed = clone();
  const v0 = Buffer.from(changed.get('sha256')!.get(7)!);
  v0[0] ^= 0x80;
  changed.get('sha256')!.set(7, v0);
  refuses(() => verifyQuote({ ...base(q), pcrs: changed }), 'VERIFY_PCR_DIGEST', /does not match/);
  const swapped = clone();
  const s = swapped.get('sha256')!;
  const [a, b] = [s.get(0)!, s.get(1)!];
  assert.not.equal(a, b);
  s.set(0, b).set(1, a);
  refuses(() => verifyQuote({ ...base(q), pcrs: swapped }), 'VERIFY_PCR_DIGEST');
  const missing = clone();
  missing.get('sha256')!.delete(2);
  refuses(() => verifyQuote({ ...base(q), pcrs: missing }), 'VERIFY_PCR_DIGEST', /sha256:2/);
  refuses(() => verifyQuote({ ...base(q), pcrs: new Map() }), 'VERIFY_PCR_DIGEST');
  // Extra values the quote does not select are reported, not verified.
  const extra = clone();
  extra.get('sha256')!.set(9, Buffer.alloc(32, 9));
  extra.set('sha1', new Map([[0, Buffer.alloc(20)]]));
  const rx = verifyQuote({ ...base(q), pcrs: extra });
  assert.equal(rx.unquoted, ['sha256:9', 'sha1:0']);
  assert.not.ok(rx.pcrs!.get('sha256')!.has(9));
  // Without PCR values: verified, but the digest is reported as unchecked.
  const r = verifyQuote({ ...base(q), pcrs: undefined });
  assert.is(r.pcrsVerified, false);
  assert.is(r.pcrs, undefined);
});

test('every changed byte of the message or the signature is refused', () => {
  for (const key of ['ecc/ecdsa', 'rsa/rsapss']) {
    const q = quotes.get(key)!;
    for (let i = 0; i < q.message.length; i++) {
      const m = Buffer.from(q.message);
      m[i] ^= 0x01;
      refuses(() => verifyQuote({ ...base(q), message: m }), 'VERIFY_SIGNATURE');
    }
    for (let i = 0; i < q.signature.length; i++) {
      const s = Buffer.from(q.signature);
      s[i] ^= 0x01;
      try {
        verifyQuote({ ...base(q), signature: s });
        assert.unreachable(`signature byte ${i}`);
      } catch (e) {
        assert.instance(e, TpmError);
        // sigAlg/hash header bytes give VERIFY_SIGNATURE or VERIFY_HASH; the rest VERIFY_SIGNATURE.
        assert.ok(['VERIFY_SIGNATURE', 'VERIFY_HASH'].includes((e as TpmError).code), `${i}: ${(e as TpmError).code}`);
        if (i >= 6) assert.is((e as TpmError).code, 'VERIFY_SIGNATURE');
      }
    }
  }
});

test('a non-restricted signing key signing a forged TPMS_ATTEST is refused (VERIFY_AK_ATTRIBUTES)', () => {
  const real = quotes.get('ecc/ecdsa')!;
  t.run('tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', 'owner.ctx']);
  t.run('tpm2_create', ['-C', 'owner.ctx', '-G', 'ecc256:ecdsa-sha256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign', '-u', 'signer.pub', '-r', 'signer.priv']);
  t.run('tpm2_load', ['-C', 'owner.ctx', '-u', 'signer.pub', '-r', 'signer.priv', '-c', 'signer.ctx']);
  // The forgery: the real quote's bytes with a pcrDigest of the attacker's choosing (the last 32 bytes).
  const forged = Buffer.from(real.message);
  const fake = new Map([['sha256', new Map([[0, Buffer.alloc(32, 1)], [1, Buffer.alloc(32, 2)], [2, Buffer.alloc(32, 3)], [7, Buffer.alloc(32, 4)]])]]) as PcrValues;
  createHash('sha256').update(Buffer.concat([...fake.get('sha256')!.values()])).digest().copy(forged, forged.length - 32);
  writeFileSync(t.path('forged.msg'), forged);
  t.run('tpm2_sign', ['-c', 'signer.ctx', '-g', 'sha256', '-s', 'ecdsa', '-o', 'forged.sig', 'forged.msg']);
  const signer = unmarshalPublic2B(t.file('signer.pub'));
  const opts: VerifyQuoteOptions = { akPublic: signer, message: forged, signature: t.file('forged.sig'), nonce: NONCE, pcrs: fake };
  refuses(() => verifyQuote(opts), 'VERIFY_AK_ATTRIBUTES', /restricted/);
  // Only the attribute check stops it: with it disabled, the forgery "verifies".
  assert.ok(verifyQuote({ ...opts, allowUnrestrictedAK: true }).pcrsVerified);

  // With the same key, a validly signed message that is not TPM-generated: VERIFY_MAGIC.
  const nomagic = Buffer.from(real.message);
  nomagic[0] = 0;
  writeFileSync(t.path('nomagic.msg'), nomagic);
  t.run('tpm2_sign', ['-c', 'signer.ctx', '-g', 'sha256', '-s', 'ecdsa', '-o', 'nomagic.sig', 'nomagic.msg']);
  refuses(() => verifyQuote({ ...opts, message: nomagic, signature: t.file('nomagic.sig'), allowUnrestrictedAK: true }), 'VERIFY_MAGIC', /TPM_GENERATED_VALUE/);
});

test('SHA-1 signatures: refused by default and when SHA-256 is required; accepted only with allowSHA1', () => {
  const { ak } = createEkAk(t, 'rsa', 'rsa', 'rsassa', 'sha1');
  const q = quote(ak, 'sha256:0,1', { hash: 'sha1' });
  assert.is(unmarshalSignature(q.signature).sigAlg, TPM_ALG.RSASSA);
  refuses(() => verifyQuote(base(q)), 'VERIFY_HASH', /SHA-1/);
  refuses(() => verifyQuote({ ...base(q), allowSHA1: true, requireHash: 'sha256' }), 'VERIFY_HASH', /sha256 required/);
  const r = verifyQuote({ ...base(q), allowSHA1: true });
  assert.is(r.hashName, 'sha1');
  assert.ok(r.pcrsVerified); // the PCR digest is SHA-1 too: the signing scheme's hash
});

test('a TPMS_ATTEST of another type from a real restricted AK → VERIFY_TYPE', () => {
  const { ak } = createEkAk(t, 'rsa', 'ecc');
  t.run('tpm2_certify', ['-C', `${ak}.ctx`, '-c', `${ak}.ctx`, '-g', 'sha256', '-o', 'certify.msg', '-s', 'certify.sig', '-f', 'tss']);
  refuses(() => verifyQuote({ akPublic: unmarshalPublic2B(t.file(`${ak}.pub`)), message: t.file('certify.msg'), signature: t.file('certify.sig'), nonce: Buffer.alloc(0) }), 'VERIFY_TYPE', /0x8017/);
});

test('the signature must use the AK\'s scheme; a PEM AK skips the attribute check (reported)', () => {
  const ecc = quotes.get('ecc/ecdsa')!;
  const rsa = quotes.get('rsa/rsassa')!;
  refuses(() => verifyQuote({ ...base(ecc), signature: rsa.signature }), 'VERIFY_SIGNATURE', /scheme/);
  const pss = quotes.get('rsa/rsapss')!;
  refuses(() => verifyQuote({ ...base(rsa), signature: pss.signature }), 'VERIFY_SIGNATURE');
  const { ak } = createEkAk(t, 'rsa', 'ecc');
  t.run('tpm2_readpublic', ['-c', `${ak}.ctx`, '-f', 'pem', '-o', 'ak.pem']);
  const q = quote(ak, 'sha256:0');
  const r = verifyQuote({ ...base(q), akPublic: createPublicKey(t.file('ak.pem')) });
  assert.is(r.akAttributesChecked, false);
  assert.ok(r.pcrsVerified);
});

test('qualifiedSigner: equals the AK\'s qualified name from tpm2_readpublic; another → VERIFY_SIGNER', () => {
  const { ak } = createEkAk(t, 'rsa', 'ecc');
  const out = t.run('tpm2_readpublic', ['-c', `${ak}.ctx`]);
  const qn = Buffer.from(/qualified name:\s*([0-9a-f]+)/.exec(out)![1], 'hex');
  const q = quote(ak, 'sha256:0');
  assert.ok(verifyQuote({ ...base(q), qualifiedSigner: qn }).pcrsVerified);
  const other = Buffer.from(qn);
  other[other.length - 1] ^= 1;
  refuses(() => verifyQuote({ ...base(q), qualifiedSigner: other }), 'VERIFY_SIGNER');
});

test('checkAKAttributes names the missing attribute', () => {
  const ak = quotes.get('rsa/rsassa')!.ak;
  checkAKAttributes(ak);
  for (const [attr, name] of [[TPMA_OBJECT.restricted, 'restricted'], [TPMA_OBJECT.sign, 'sign'], [TPMA_OBJECT.fixedTPM, 'fixedTPM'], [TPMA_OBJECT.fixedParent, 'fixedParent'], [TPMA_OBJECT.sensitiveDataOrigin, 'sensitiveDataOrigin']] as const) {
    refuses(() => checkAKAttributes({ ...ak, objectAttributes: ak.objectAttributes & ~attr }), 'VERIFY_AK_ATTRIBUTES', new RegExp(`missing ${name}`));
  }
  refuses(() => checkAKAttributes({ ...ak, objectAttributes: ak.objectAttributes | TPMA_OBJECT.decrypt }), 'VERIFY_AK_ATTRIBUTES', /forbidden decrypt/);
  if (ak.type === TPM_ALG.RSA) {
    refuses(() => checkAKAttributes({ ...ak, parameters: { ...ak.parameters, keyBits: 1024 }, unique: { rsa: ak.unique.rsa.subarray(0, 128) } }), 'VERIFY_AK_ATTRIBUTES', /1024/);
    refuses(() => checkAKAttributes({ ...ak, parameters: { ...ak.parameters, scheme: { scheme: TPM_ALG.NULL, hashAlg: TPM_ALG.NULL } } }), 'VERIFY_AK_ATTRIBUTES', /scheme/);
  }
});

test.run();
