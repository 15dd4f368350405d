import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { toolTpm, type ToolTpm } from '../helpers/tpm2tools.ts';
import { createImportBlob } from '../../src/tpm/duplicate.ts';
import { policyPCRDigest, policyOR, policySecret, policyZero } from '../../src/tpm/policydigest.ts';
import { unmarshalPublic2B, type TPMSPCRSelection } from '../../src/tpm/structures.ts';
import { parsePcrsValues } from '../../src/tpm/pcrfile.ts';
import { TPM_ALG, TPM_RH } from '../../src/tpm/constants.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { EK_POLICY_A_SHA256 } from '../../src/tpm/credential.ts';
import { openTpm, getEK, unsealImported, flushKey } from '../../src/tpm/index.ts';

let t: ToolTpm;
test.before(async () => {
  t = await toolTpm();
  for (const i of [0, 7]) t.run('tpm2_pcrextend', [`${i}:sha256=${createHash('sha256').update(`boot${i}`).digest('hex')}`]);
});
test.after(async () => {
  await t?.stop();
});

const SEL: TPMSPCRSelection[] = [{ hash: TPM_ALG.SHA256, pcrs: [0, 7] }];
const SEL_TOOL = 'sha256:0,7';

function currentPcrs() {
  t.run('tpm2_pcrread', [SEL_TOOL, '-o', 'cur.vals']);
  return parsePcrsValues(t.file('cur.vals'), SEL);
}

/** tpm2_import + tpm2_load under the EK (an EK policy session each), then tpm2_unseal with PolicyPCR. */
function toolsUnseal(ek: string, blob: ReturnType<typeof createImportBlob>, id: string): string | Buffer {
  writeFileSync(t.path(`${id}.pub`), blob.public);
  writeFileSync(t.path(`${id}.dpriv`), blob.duplicate);
  writeFileSync(t.path(`${id}.seed`), blob.inSymSeed);
  t.run('tpm2_import', ['-C', `${ek}.ctx`, '-u', `${id}.pub`, '-i', `${id}.dpriv`, '-s', `${id}.seed`, '-r', `${id}.priv`, '-P', t.ekSession()]);
  t.run('tpm2_load', ['-C', `${ek}.ctx`, '-u', `${id}.pub`, '-r', `${id}.priv`, '-c', `${id}.ctx`, '-P', t.ekSession()]);
  return unsealWithPolicy(id);
}

function unsealWithPolicy(id: string): string | Buffer {
  t.run('tpm2_flushcontext', ['-s']);
  t.run('tpm2_startauthsession', ['--policy-session', '-S', 'pcr.ctx']);
  t.run('tpm2_policypcr', ['-S', 'pcr.ctx', '-l', SEL_TOOL]);
  const err = t.fails('tpm2_unseal', ['-c', `${id}.ctx`, '-p', 'session:pcr.ctx', '-o', `${id}.out`]);
  t.run('tpm2_flushcontext', ['-s']);
  return err ?? t.file(`${id}.out`);
}

test('policy digests: EK policy A from PolicySecret(endorsement); PolicyPCR equals tpm2_policypcr\'s trial digest; PolicyOR', () => {
  const endorsementName = Buffer.alloc(4);
  endorsementName.writeUInt32BE(TPM_RH.ENDORSEMENT);
  assert.is(policySecret(TPM_ALG.SHA256, policyZero(TPM_ALG.SHA256), endorsementName).toString('hex'), EK_POLICY_A_SHA256.toString('hex'));
  const values = currentPcrs();
  t.run('tpm2_flushcontext', ['-s']);
  t.run('tpm2_startauthsession', ['-S', 'trial.ctx']);
  t.run('tpm2_policypcr', ['-S', 'trial.ctx', '-l', SEL_TOOL, '-L', 'trial.policy']);
  t.run('tpm2_flushcontext', ['-s']);
  assert.is(policyPCRDigest(SEL, values, TPM_ALG.SHA256).toString('hex'), t.file('trial.policy').toString('hex'));
  // PolicyOR of two branches, checked against tpm2_policyor in a trial session.
  const a = policyPCRDigest(SEL, values, TPM_ALG.SHA256);
  const b = createHash('sha256').update('other branch').digest();
  writeFileSync(t.path('a.policy'), a);
  writeFileSync(t.path('b.policy'), b);
  t.run('tpm2_startauthsession', ['-S', 'trial.ctx']);
  t.run('tpm2_policyor', ['-S', 'trial.ctx', '-l', 'sha256:a.policy,b.policy', '-L', 'or.policy']);
  t.run('tpm2_flushcontext', ['-s']);
  assert.is(policyOR(TPM_ALG.SHA256, [a, b]).toString('hex'), t.file('or.policy').toString('hex'));
});

for (const ekAlg of ['rsa', 'ecc'] as const) {
  test(`software import blob (${ekAlg} EK) loads with tpm2_import/tpm2_load and unseals only while the PCRs match`, () => {
    const ek = `ek-${ekAlg}`;
    t.run('tpm2_createek', ['-G', ekAlg, '-c', `${ek}.ctx`, '-u', `${ek}.pub`]);
    const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
    const secret = randomBytes(32);
    const id = `sealed-${ekAlg}`;
    const blob = createImportBlob(ekPub, secret, { pcrs: { selection: SEL, values: currentPcrs() } });
    const out = toolsUnseal(ek, blob, id);
    assert.ok(Buffer.isBuffer(out), String(out));
    assert.is((out as Buffer).toString('hex'), secret.toString('hex'));
    // A blob sealed to other PCR values imports and loads, but does not unseal.
    const other = currentPcrs();
    other.get('sha256')!.set(7, Buffer.alloc(32, 0x77));
    const wrong = toolsUnseal(ek, createImportBlob(ekPub, secret, { pcrs: { selection: SEL, values: other } }), `${id}-wrong`);
    assert.type(wrong, 'string');
    assert.match(wrong as string, /0x99d|policy/i);
  });
}

test('software import blob to an ECC P-384 EK (SHA-384 name, AES-256; password auth) unseals', () => {
  t.run('tpm2_createek', ['-G', 'ecc384', '-c', 'ek384.ctx', '-u', 'ek384.pub']);
  const blob = createImportBlob(unmarshalPublic2B(t.file('ek384.pub')), Buffer.from('p384 secret'), { pcrs: { selection: SEL, values: currentPcrs() } });
  writeFileSync(t.path('s384.pub'), blob.public);
  writeFileSync(t.path('s384.dpriv'), blob.duplicate);
  writeFileSync(t.path('s384.seed'), blob.inSymSeed);
  t.run('tpm2_import', ['-C', 'ek384.ctx', '-u', 's384.pub', '-i', 's384.dpriv', '-s', 's384.seed', '-r', 's384.priv']);
  t.run('tpm2_load', ['-C', 'ek384.ctx', '-u', 's384.pub', '-r', 's384.priv', '-c', 's384.ctx']);
  assert.is(String(unsealWithPolicy('s384')), 'p384 secret');
});

test('after tpm2_pcrextend, unseal fails with a policy error; a tampered blob does not import', () => {
  const ek = 'ek-rsa';
  const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
  const secret = Buffer.from('disk key share');
  const blob = createImportBlob(ekPub, secret, { pcrs: { selection: SEL, values: currentPcrs() } });
  assert.is((toolsUnseal(ek, blob, 'ext') as Buffer).toString(), 'disk key share');
  t.run('tpm2_pcrextend', [`7:sha256=${'ab'.repeat(32)}`]);
  const err = unsealWithPolicy('ext');
  assert.type(err, 'string');
  // TPM_RC_POLICY_FAIL (0x99d: session 1) — the PCR values no longer match the policy.
  assert.match(err as string, /0x99D|policy/i);
  // One flipped bit of the outer-wrapped sensitive area: TPM2_Import's integrity check refuses it.
  const tampered = { ...blob, duplicate: Buffer.from(blob.duplicate) };
  tampered.duplicate[tampered.duplicate.length - 1] ^= 1;
  writeFileSync(t.path('tam.pub'), tampered.public);
  writeFileSync(t.path('tam.dpriv'), tampered.duplicate);
  writeFileSync(t.path('tam.seed'), tampered.inSymSeed);
  const ierr = t.fails('tpm2_import', ['-C', `${ek}.ctx`, '-u', 'tam.pub', '-i', 'tam.dpriv', '-s', 'tam.seed', '-r', 'tam.priv', '-P', t.ekSession()]);
  assert.match(ierr ?? '', /integrity/i);
});

test('bootkey\'s own Import/Load/Unseal (src/tpm/keys.ts unsealImported) takes the software blob', async () => {
  // Read with tpm2-tools before connecting: swtpm serves one connection at a time.
  const values = currentPcrs();
  const tpm = await openTpm(t.tpm.tcti);
  try {
    for (const alg of ['rsa', 'ecc'] as const) {
      const ek = await getEK(tpm, alg, { persistent: false });
      try {
        const secret = randomBytes(48);
        const blob = createImportBlob(ek.public, secret, { pcrs: { selection: SEL, values } });
        const out = await unsealImported(tpm, { ek, ...blob.raw, pcrs: SEL });
        assert.is(out.toString('hex'), secret.toString('hex'));
        const other = new Map([['sha256', new Map([[0, Buffer.alloc(32, 1)], [7, Buffer.alloc(32, 2)]])]]) as typeof values;
        const bad = createImportBlob(ek.public, secret, { pcrs: { selection: SEL, values: other } });
        try {
          await unsealImported(tpm, { ek, ...bad.raw, pcrs: SEL });
          assert.unreachable('unsealed with the wrong PCRs');
        } catch (e) {
          assert.instance(e, TpmError);
          assert.is((e as TpmError).code, 'TPM_RC', (e as Error).message);
        }
      } finally {
        await flushKey(tpm, ek);
      }
    }
  } finally {
    await tpm.close();
  }
});

test('createImportBlob refuses oversized secrets and a missing policy', () => {
  const ekPub = unmarshalPublic2B(t.file('ek-rsa.pub'));
  assert.throws(() => createImportBlob(ekPub, Buffer.alloc(129)), (e: unknown) => e instanceof TpmError && e.code === 'UNSUPPORTED');
  assert.throws(() => createImportBlob(ekPub, Buffer.alloc(16)), (e: unknown) => e instanceof TpmError && /authPolicy/.test((e as Error).message));
});

test.run();
