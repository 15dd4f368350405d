/**
 * Sessions against a real swtpm: salted (RSA and ECC EK) HMAC and policy sessions, response
 * HMAC verification, AES-CFB parameter encryption both ways. The raw response bytes
 * (captured by a wrapping transport) must not contain the secret with encryption, and do
 * without (control).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { startSwtpm, type Swtpm } from '../helpers/swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { TPM_ALG, TPM_RH, TPMA_OBJECT } from '../../src/tpm/constants.ts';
import { getEK, createAK, flushKey, unsealImported, startEKPolicySession, createPrimary } from '../../src/tpm/keys.ts';
import { startHMACSession, startPolicySession, PasswordAuth } from '../../src/tpm/session.ts';
import { Create, Load, Unseal, FlushContext } from '../../src/tpm/commands/object.ts';
import { PolicyPCR, PolicyGetDigest, PolicySecret, policyPCRDigest, policyStart, policySecretDigest } from '../../src/tpm/commands/session.ts';
import { PCR_Extend, readPCRs } from '../../src/tpm/commands/pcr.ts';
import { GetRandom, getHandles } from '../../src/tpm/commands/startup.ts';
import { hash } from '../../src/tpm/crypto.ts';
import { createImportBlob } from '../../src/tpm/duplicate.ts';
import { makeCredential } from '../../src/tpm/credential.ts';
import { activateCredential } from '../../src/tpm/keys.ts';
import { SYM_AES128_CFB, SYM_NULL, SCHEME_NULL, type TPMTPublic, type TPMSPCRSelection } from '../../src/tpm/structures.ts';
import { openCaptured, contains, openTracked, closeAll } from './_util.ts';

let sw: Swtpm;
test.before(async () => {
  sw = await startSwtpm();
});
test.after.each(closeAll);
test.after(async () => {
  await sw.stop();
});

/** An ECC P-256 storage primary (SRK-like) under the owner hierarchy. */
const srkTemplate: TPMTPublic = {
  type: TPM_ALG.ECC, nameAlg: TPM_ALG.SHA256,
  objectAttributes: TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.userWithAuth | TPMA_OBJECT.noDA | TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt,
  authPolicy: Buffer.alloc(0),
  parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, curveID: 3, kdf: { ...SCHEME_NULL } },
  unique: { x: Buffer.alloc(0), y: Buffer.alloc(0) },
};

function sealedTemplate(authPolicy: Buffer, userWithAuth: boolean): TPMTPublic {
  return {
    type: TPM_ALG.KEYEDHASH, nameAlg: TPM_ALG.SHA256,
    objectAttributes: TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.noDA | (userWithAuth ? TPMA_OBJECT.userWithAuth : 0),
    authPolicy, parameters: { scheme: { ...SCHEME_NULL } }, unique: { digest: Buffer.alloc(0) },
  };
}

const SEL: TPMSPCRSelection[] = [{ hash: TPM_ALG.SHA256, pcrs: [0, 7, 16] }];

async function assertClean(tpm: Tpm): Promise<void> {
  assert.equal(await getHandles(tpm, 0x80000000), [], 'transient objects left');
  assert.equal(await getHandles(tpm, 0x02000000), [], 'HMAC sessions left');
  assert.equal(await getHandles(tpm, 0x03000000), [], 'policy sessions left');
}

for (const alg of ['rsa', 'ecc'] as const) {
  test(`PCR-sealed secret: Unseal through a policy session salted to the ${alg} EK never shows the secret; unencrypted control does`, async () => {
    const { tpm, cap } = await openCaptured(sw);
    const ek = await getEK(tpm, alg, { persistent: false });
    const srk = await createPrimary(tpm, TPM_RH.OWNER, srkTemplate);
    const secret = randomBytes(32);
    const pcrs = await readPCRs(tpm, SEL);
    const pcrDigest = hash(TPM_ALG.SHA256, ...SEL[0].pcrs.map((p) => pcrs.get('sha256')!.get(p)!));
    const policy = policyPCRDigest(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256), SEL, pcrDigest);
    // Create with the secret in inSensitive: encrypted by a salted HMAC session (decrypt)
    const hs = await startHMACSession(tpm, { salt: { handle: ek.handle, public: ek.public }, decrypt: true, encrypt: true });
    const created = await Create(tpm, { parentHandle: { handle: srk.handle, name: srk.name, session: hs }, inSensitive: { data: secret }, inPublic: sealedTemplate(policy, false) });
    await hs.flush(tpm);
    assert.not.ok(contains(cap.commands, secret), 'the secret crossed the bus in clear in Create');
    const { objectHandle, name } = await Load(tpm, { parentHandle: srk.handle, inPrivate: created.outPrivate, inPublic: created.outPublic });
    cap.responses.length = 0;
    for (const encrypt of [true, false]) {
      const ps = await startPolicySession(tpm, { salt: { handle: ek.handle, public: ek.public }, encrypt, decrypt: encrypt });
      await PolicyPCR(tpm, { policySession: ps, pcrs: SEL });
      const { policyDigest } = await PolicyGetDigest(tpm, { policySession: ps });
      assert.equal(policyDigest.toString('hex'), policy.toString('hex'));
      const before = cap.responses.length;
      const out = await Unseal(tpm, { itemHandle: { handle: objectHandle, name, session: ps } });
      assert.equal(out.outData.toString('hex'), secret.toString('hex'));
      assert.is(contains(cap.responses.slice(before), secret), !encrypt, encrypt ? 'secret in clear despite encryption' : 'control: the unencrypted response should contain the secret');
      await ps.flush(tpm);
    }
    await FlushContext(tpm, { flushHandle: objectHandle });
    await flushKey(tpm, srk);
    await flushKey(tpm, ek);
    await assertClean(tpm);
    await tpm.close();
  });
}

test('Unseal after a PCR change fails with TPM_RC_POLICY_FAIL decoded in the message', async () => {
  const tpm = await openTracked(sw);
  const srk = await createPrimary(tpm, TPM_RH.OWNER, srkTemplate);
  const sel: TPMSPCRSelection[] = [{ hash: TPM_ALG.SHA256, pcrs: [16] }];
  const pcrs = await readPCRs(tpm, sel);
  const policy = policyPCRDigest(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256), sel, hash(TPM_ALG.SHA256, pcrs.get('sha256')!.get(16)!));
  const created = await Create(tpm, { parentHandle: srk.handle, inSensitive: { data: Buffer.from('s3cret') }, inPublic: sealedTemplate(policy, false) });
  const { objectHandle, name } = await Load(tpm, { parentHandle: srk.handle, inPrivate: created.outPrivate, inPublic: created.outPublic });
  // PolicyPCR itself refuses a pcrDigest that is not the current one (Part 3 §23.7)
  const ps = await startPolicySession(tpm, { salt: { handle: srk.handle, public: srk.public } });
  const e1 = await PolicyPCR(tpm, { policySession: ps, pcrs: sel, pcrDigest: hash(TPM_ALG.SHA256, Buffer.alloc(32, 1)) }).catch((e) => e);
  assert.instance(e1, TpmError);
  assert.is(e1.message, 'TPM2_PolicyPCR: TPM returned TPM_RC_VALUE (parameter 1, 0x1c4)');
  await ps.flush(tpm);
  // and after a PCR_Extend the PolicyPCR with current values no longer matches
  await PCR_Extend(tpm, { pcrHandle: 16, digests: [{ hashAlg: TPM_ALG.SHA256, digest: Buffer.alloc(32, 7) }] });
  const ps2 = await startPolicySession(tpm, {});
  await PolicyPCR(tpm, { policySession: ps2, pcrs: sel });
  const err = await Unseal(tpm, { itemHandle: { handle: objectHandle, name, session: ps2 } }).catch((e) => e);
  assert.instance(err, TpmError);
  assert.is(err.code, 'TPM_RC');
  assert.is(err.message, 'TPM2_Unseal: TPM returned TPM_RC_POLICY_FAIL (session 1, 0x99d)');
  await ps2.flush(tpm);
  await FlushContext(tpm, { flushHandle: objectHandle });
  await flushKey(tpm, srk);
  await assertClean(tpm);
  await tpm.close();
});

test('PolicySecret with a wrong endorsement password: TPM_RC_BAD_AUTH decoded', async () => {
  const tpm = await openTracked(sw);
  const ps = await startPolicySession(tpm, {});
  const err = await PolicySecret(tpm, { authHandle: { handle: TPM_RH.ENDORSEMENT, session: PasswordAuth(Buffer.from('wrong')) }, policySession: ps }).catch((e) => e);
  assert.instance(err, TpmError);
  assert.match(err.message, /^TPM2_PolicySecret: TPM returned TPM_RC_BAD_AUTH \(session 1, 0x9a2\)$/);
  await PolicySecret(tpm, { authHandle: { handle: TPM_RH.ENDORSEMENT }, policySession: ps });
  const { policyDigest } = await PolicyGetDigest(tpm, { policySession: ps });
  const nameE = Buffer.alloc(4);
  nameE.writeUInt32BE(TPM_RH.ENDORSEMENT);
  assert.equal(policyDigest.toString('hex'), policySecretDigest(TPM_ALG.SHA256, policyStart(TPM_ALG.SHA256), nameE).toString('hex'));
  assert.equal(policyDigest.toString('hex'), '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa');
  await ps.flush(tpm);
  await tpm.close();
});

test('a tampered response fails the response HMAC check (VERIFY_HMAC)', async () => {
  const { tpm, cap } = await openCaptured(sw);
  const ek = await getEK(tpm, 'ecc', { persistent: false });
  const hs = await startHMACSession(tpm, { salt: { handle: ek.handle, public: ek.public }, encrypt: true });
  await GetRandom(tpm, { bytesRequested: 16 }); // unauthenticated
  cap.corrupt = (rsp) => {
    const b = Buffer.from(rsp);
    b[b.length - 1] ^= 1; // last byte of the response HMAC
    return b;
  };
  const { ReadPublic } = await import('../../src/tpm/commands/object.ts');
  const err = await ReadPublic(tpm, { objectHandle: ek.handle }, hs).catch((e) => e);
  cap.corrupt = undefined;
  assert.instance(err, TpmError);
  assert.is(err.code, 'VERIFY_HMAC');
  assert.match(err.message, /TPM2_ReadPublic/);
  await hs.flush(tpm);
  await flushKey(tpm, ek);
  await tpm.close();
});

test('ActivateCredential through a session salted to a different (pinned) EK than the loaded one is refused', async () => {
  const tpm = await openTracked(sw);
  for (const alg of ['rsa', 'ecc'] as const) {
    const ek = await getEK(tpm, alg, { persistent: false });
    const ak = await createAK(tpm, 'ecc');
    const impostor = await getEK(tpm, alg, { persistent: false, range: 'high' }); // another key of the same type
    try {
      const cred = makeCredential(ek.public, ak.name, Buffer.from('top secret credential'));
      // the TPM holds `ek`, the session is salted to the pinned `impostor` public: the TPM cannot know the salt
      const err = await activateCredential(tpm, { ak, ek, ...cred, pinnedEK: impostor.public }).catch((e) => e);
      assert.instance(err, TpmError, `${alg}: expected a refusal`);
      assert.ok(['VERIFY_HMAC', 'TPM_RC'].includes(err.code), err.message);
      // control: pinned to the right EK it works
      const ok = await activateCredential(tpm, { ak, ek, ...cred, pinnedEK: ek.public });
      assert.is(ok.toString(), 'top secret credential');
    } finally {
      for (const h of await getHandles(tpm, 0x03000000)) await FlushContext(tpm, { flushHandle: h });
      for (const k of [impostor, ak, ek]) await flushKey(tpm, k);
    }
  }
  await tpm.close();
});

test('unsealImported: a createImportBlob secret wrapped to the EK unseals with PolicyPCR, encrypted', async () => {
  const { tpm, cap } = await openCaptured(sw);
  for (const alg of ['rsa', 'ecc'] as const) {
    const ek = await getEK(tpm, alg, { persistent: false });
    const values = await readPCRs(tpm, SEL);
    const secret = randomBytes(48);
    const blob = createImportBlob(ek.public, secret, { pcrs: { selection: SEL, values } });
    cap.responses.length = 0;
    const out = await unsealImported(tpm, {
      ek, pinnedEK: ek.public, pcrs: SEL,
      objectPublic: blob.public.subarray(2), duplicate: blob.duplicate.subarray(2), inSymSeed: blob.inSymSeed.subarray(2),
    });
    assert.equal(out.toString('hex'), secret.toString('hex'));
    assert.not.ok(contains(cap.responses, secret));
    await flushKey(tpm, ek);
  }
  await assertClean(tpm);
  await tpm.close();
});

test('AK is unaffected by sessions: an HMAC session authorizes the AK (bound session) ', async () => {
  const tpm = await openTracked(sw);
  const ak = await createAK(tpm, 'ecc');
  const hs = await startHMACSession(tpm, { bind: { handle: TPM_RH.ENDORSEMENT, name: (() => { const b = Buffer.alloc(4); b.writeUInt32BE(TPM_RH.ENDORSEMENT); return b; })() } });
  const { Quote } = await import('../../src/tpm/commands/attest.ts');
  const q = await Quote(tpm, { signHandle: { handle: ak.handle, name: ak.name, session: hs }, qualifyingData: Buffer.from('nonce'), PCRselect: SEL });
  assert.ok(q.quoted.length > 0);
  await hs.flush(tpm);
  await flushKey(tpm, ak);
  void SYM_NULL;
  await tpm.close();
});

test.run();
