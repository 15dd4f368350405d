import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { toolTpm, createEkAk, type ToolTpm } from '../helpers/tpm2tools.ts';
import { kdfa, kdfe, aesCfbEncrypt, aesCfbDecrypt, objectName, publicKeyFromTPMT, encryptSeed, _eccEncryptSeed } from '../../src/tpm/crypto.ts';
import { ekPublicFromKey } from '../../src/tpm/credential.ts';
import { unmarshalPublic, unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import { TpmError } from '../../src/tpm/errors.ts';

const V = JSON.parse(readFileSync(new URL('../data/tpm/kdf-ecc-vectors.json', import.meta.url), 'utf8'));
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

test('KDFa known answers (libtpms self-test data, tpm-test-vectors)', () => {
  for (const v of V.kdfa) {
    assert.is(kdfa(v.hashAlg, hex(v.key), v.label, hex(v.contextU), hex(v.contextV), v.bits).toString('hex'), v.result, v.source);
  }
});

test('KDFe known answers (tpm-test-vectors), incl. sizes that are not whole bytes', () => {
  for (const v of V.kdfe) {
    assert.is(kdfe(v.hashAlg, hex(v.z), v.label, hex(v.partyUInfo), hex(v.partyVInfo), v.bits).toString('hex'), v.result, v.name);
  }
});

test('ECC secret sharing (Annex C.6.1) known answers with a given ephemeral key', () => {
  for (const v of V.eccEncaps) {
    const pub = unmarshalPublic(hex(v.publicKey));
    assert.is(pub.type, TPM_ALG.ECC);
    if (pub.type !== TPM_ALG.ECC) continue;
    const r = _eccEncryptSeed(pub, v.label, hex(v.ephemeralPrivate));
    assert.is(r.seed.toString('hex'), v.secret, v.name);
    assert.is(r.encryptedSecret.toString('hex'), v.ciphertext, v.name);
  }
});

test('KDFa: a trailing NUL in the label is not doubled; bad sizes refused', () => {
  const k = Buffer.alloc(32, 7);
  assert.equal(kdfa(TPM_ALG.SHA256, k, 'STORAGE\0', Buffer.alloc(0), Buffer.alloc(0), 128), kdfa(TPM_ALG.SHA256, k, 'STORAGE', Buffer.alloc(0), Buffer.alloc(0), 128));
  assert.throws(() => kdfa(TPM_ALG.SHA256, k, 'X', Buffer.alloc(0), Buffer.alloc(0), 0), (e: unknown) => e instanceof TpmError);
  assert.throws(() => kdfa(0x1234, k, 'X', Buffer.alloc(0), Buffer.alloc(0), 8), (e: unknown) => e instanceof TpmError && e.code === 'UNSUPPORTED');
});

test('AES-CFB: NIST SP 800-38A F.3.13 (CFB128-AES128) and round trips of odd lengths', () => {
  const key = hex('2b7e151628aed2a6abf7158809cf4f3c');
  const iv = hex('000102030405060708090a0b0c0d0e0f');
  const pt = hex('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51');
  assert.is(aesCfbEncrypt(key, iv, pt).toString('hex'), '3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b');
  for (const n of [0, 1, 15, 17, 100]) {
    const d = Buffer.alloc(n, 0x5a);
    assert.equal(aesCfbDecrypt(Buffer.alloc(32, 1), iv, aesCfbEncrypt(Buffer.alloc(32, 1), iv, d)), d);
  }
  assert.throws(() => aesCfbEncrypt(Buffer.alloc(15), iv, pt), (e: unknown) => e instanceof TpmError);
});

let t: ToolTpm;
test.before(async () => {
  t = await toolTpm();
});
test.after(async () => {
  await t?.stop();
});

function toolName(pub: string): string {
  const out = t.run('tpm2_loadexternal', ['-C', 'o', '-u', pub, '-c', 'ext.ctx']);
  const m = /name:\s*([0-9a-f]+)/.exec(out);
  assert.ok(m, out);
  return m![1];
}

test('objectName equals the TPM\'s name (tpm2_createek/createak -n, tpm2_readpublic) for RSA and ECC keys', () => {
  for (const [ekAlg, akAlg] of [['rsa', 'ecc'], ['ecc', 'rsa']] as const) {
    const { ek, ak } = createEkAk(t, ekAlg, akAlg);
    const akPub = unmarshalPublic2B(t.file(`${ak}.pub`));
    assert.is(objectName(akPub).toString('hex'), t.file(`${ak}.name`).toString('hex'));
    const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
    const rp = t.run('tpm2_readpublic', ['-c', `${ek}.ctx`, '-n', `${ek}.name`, '-f', 'pem', '-o', `${ek}.pem`]);
    assert.is(objectName(ekPub).toString('hex'), t.file(`${ek}.name`).toString('hex'), rp);
    assert.is(objectName(ekPub).toString('hex'), toolName(`${ek}.pub`));
    // The PEM tpm2-tools exports is the same key as publicKeyFromTPMT's.
    const pem = createPublicKey(t.file(`${ek}.pem`));
    assert.ok(pem.equals(publicKeyFromTPMT(ekPub)));
    // And from the PEM alone, the default EK template gives back the same public area / name.
    assert.is(objectName(ekPublicFromKey(pem)).toString('hex'), objectName(ekPub).toString('hex'));
  }
});

test('encryptSeed: sizes and refusal of non-RSA/ECC keys', () => {
  const { ek } = createEkAk(t, 'rsa', 'rsa');
  const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
  const r = encryptSeed(ekPub, 'IDENTITY');
  assert.is(r.seed.length, 32);
  assert.is(r.encryptedSecret.length, 256);
  const kh = { type: TPM_ALG.KEYEDHASH, nameAlg: TPM_ALG.SHA256, objectAttributes: 0, authPolicy: Buffer.alloc(0), parameters: { scheme: { scheme: TPM_ALG.NULL, hashAlg: TPM_ALG.NULL } }, unique: { digest: Buffer.alloc(32) } } as const;
  assert.throws(() => encryptSeed(kh, 'IDENTITY'), (e: unknown) => e instanceof TpmError && e.code === 'UNSUPPORTED');
});

test.run();
