import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { toolTpm, createEkAk, type ToolTpm } from '../helpers/tpm2tools.ts';
import { unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { makeCredential, marshalCredentialFile, unmarshalCredentialFile } from '../../src/tpm/credential.ts';
import { TpmError } from '../../src/tpm/errors.ts';

let t: ToolTpm;
test.before(async () => {
  t = await toolTpm();
});
test.after(async () => {
  await t?.stop();
});

function activate(ek: string, ak: string, blob: Buffer): Buffer {
  writeFileSync(t.path('cred.in'), blob);
  const session = t.ekSession();
  t.run('tpm2_activatecredential', ['-c', `${ak}.ctx`, '-C', `${ek}.ctx`, '-i', 'cred.in', '-o', 'cred.out', '-P', session]);
  return t.file('cred.out');
}

for (const ekAlg of ['rsa', 'ecc'] as const) {
  test(`makeCredential to a ${ekAlg} EK activates with tpm2_activatecredential`, () => {
    const { ek, ak } = createEkAk(t, ekAlg, 'ecc');
    const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
    const name = t.file(`${ak}.name`);
    for (const len of [1, 16, 32]) {
      const secret = randomBytes(len);
      const blob = marshalCredentialFile(makeCredential(ekPub, name, secret));
      assert.equal(activate(ek, ak, blob).toString('hex'), secret.toString('hex'));
    }
  });

  test(`makeCredential (${ekAlg} EK) for another object's name does not activate`, () => {
    const { ek, ak } = createEkAk(t, ekAlg, 'rsa');
    const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
    const name = Buffer.from(t.file(`${ak}.name`));
    name[name.length - 1] ^= 1;
    const blob = marshalCredentialFile(makeCredential(ekPub, name, randomBytes(32)));
    const err = (() => {
      try {
        activate(ek, ak, blob);
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    })();
    // The TPM checks the outer HMAC over (encIdentity ‖ AK name): TPM_RC_INTEGRITY.
    assert.match(err, /0x1DF|integrity check failed/i);
  });
}

test('makeCredential to an ECC P-384 EK (tpm2_createek -G ecc384: SHA-384 name, AES-256) activates', () => {
  // This template has userWithAuth SET: the EK is authorised with the empty password.
  t.run('tpm2_createek', ['-G', 'ecc384', '-c', 'ek384.ctx', '-u', 'ek384.pub']);
  const ekPub = unmarshalPublic2B(t.file('ek384.pub'));
  assert.is(ekPub.nameAlg, 0x000c);
  const { ak } = createEkAk(t, 'rsa', 'ecc');
  const secret = randomBytes(48);
  writeFileSync(t.path('cred384.in'), marshalCredentialFile(makeCredential(ekPub, t.file(`${ak}.name`), secret)));
  t.run('tpm2_activatecredential', ['-c', `${ak}.ctx`, '-C', 'ek384.ctx', '-i', 'cred384.in', '-o', 'cred384.out']);
  assert.is(t.file('cred384.out').toString('hex'), secret.toString('hex'));
});

test('credential file round trip and matches what tpm2_makecredential writes', () => {
  const { ek, ak } = createEkAk(t, 'rsa', 'ecc');
  const secret = Buffer.from('12345678');
  writeFileSync(t.path('secret.data'), secret);
  t.run('tpm2_makecredential', ['-T', 'none', '-u', `${ek}.pub`, '-s', 'secret.data', '-n', t.file(`${ak}.name`).toString('hex'), '-o', 'tool.cred']);
  const tool = t.file('tool.cred');
  const parsed = unmarshalCredentialFile(tool);
  assert.equal(marshalCredentialFile(parsed).toString('hex'), tool.toString('hex'));
  assert.is(parsed.secret.length, 256);
  // Same layout as ours (sizes equal; contents are randomised).
  const ours = marshalCredentialFile(makeCredential(unmarshalPublic2B(t.file(`${ek}.pub`)), t.file(`${ak}.name`), secret));
  assert.is(ours.length, tool.length);
  assert.equal(ours.subarray(0, 10).toString('hex'), tool.subarray(0, 10).toString('hex'));
  assert.equal(activate(ek, ak, tool).toString(), '12345678');
});

test('credential file parser refuses bad magic, version, truncation', () => {
  const good = marshalCredentialFile({ credentialBlob: Buffer.alloc(44, 1), secret: Buffer.alloc(256, 2) });
  for (const bad of [Buffer.concat([Buffer.from([0]), good.subarray(1)]), Buffer.concat([good.subarray(0, 7), Buffer.from([2]), good.subarray(8)]), good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.alloc(1)])]) {
    try {
      unmarshalCredentialFile(bad);
      assert.unreachable();
    } catch (e) {
      assert.instance(e, TpmError);
      assert.is((e as TpmError).code, 'MARSHAL');
    }
  }
});

test('makeCredential refuses a secret longer than the digest size', () => {
  const { ek } = createEkAk(t, 'rsa', 'rsa');
  const ekPub = unmarshalPublic2B(t.file(`${ek}.pub`));
  assert.throws(() => makeCredential(ekPub, Buffer.alloc(34, 0), Buffer.alloc(33)), (e: unknown) => e instanceof TpmError && e.code === 'UNSUPPORTED');
});

test.run();
