/**
 * keys.ts against a real swtpm, cross-checked with tpm2-tools: our EKs equal tpm2_createek's
 * (RSA and ECC), Names equal tpm2_readpublic's, the AK is the same on every boot, the EK
 * certificate equals tpm2_nvread's, and credentials from tpm2_makecredential activate.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSwtpm, tpm2, type Swtpm } from '../helpers/swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { getEK, createAK, readEKCertificate, activateCredential, flushKey, createPrimary } from '../../src/tpm/keys.ts';
import { ekTemplate } from '../../src/tpm/templates.ts';
import { getHandles } from '../../src/tpm/commands/startup.ts';
import { marshalPublic, marshalPublic2B, unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { objectName } from '../../src/tpm/crypto.ts';
import { TPM_RH } from '../../src/tpm/constants.ts';
import { parseCredFile, openCaptured, contains, openTracked, closeAll } from './_util.ts';

let sw: Swtpm;
let dir: string;
test.before(async () => {
  sw = await startSwtpm();
  dir = mkdtempSync(join(tmpdir(), 'bootkey-keys-'));
});
test.after.each(closeAll);
test.after(async () => {
  await sw.stop();
  rmSync(dir, { recursive: true, force: true });
});

function nameFromReadpublic(out: string): string {
  const m = /^name: ([0-9a-f]+)$/m.exec(out);
  assert.ok(m, out);
  return m![1];
}

for (const alg of ['rsa', 'ecc'] as const) {
  test(`EK ${alg} equals tpm2_createek -G ${alg} (public area and Name)`, async () => {
    const tpm = await openTracked(sw);
    const ek = await getEK(tpm, alg, { persistent: false });
    await flushKey(tpm, ek);
    await tpm.close();
    const pub = join(dir, `ek-${alg}.pub`);
    tpm2(sw, 'tpm2_createek', ['-G', alg, '-u', pub, '-c', join(dir, `ek-${alg}.ctx`)]);
    tpm2(sw, 'tpm2_flushcontext', ['-t']);
    const theirs = unmarshalPublic2B(readFileSync(pub));
    assert.equal(marshalPublic(theirs).toString('hex'), ek.publicBytes.toString('hex'));
    assert.equal(objectName(theirs).toString('hex'), ek.name.toString('hex'));
  });
}

test('persistent EK 0x81010001 is used and its Name equals tpm2_readpublic', async () => {
  const tpm = await openTracked(sw);
  const ek = await getEK(tpm, 'rsa');
  await tpm.close();
  assert.is(ek.handle, 0x81010001);
  assert.is(ek.transient, false);
  assert.is(nameFromReadpublic(tpm2(sw, 'tpm2_readpublic', ['-c', '0x81010001'])), ek.name.toString('hex'));
});

test('AK Name equals tpm2_readpublic of the loaded AK; same AK after a reboot', async () => {
  for (const alg of ['ecc', 'rsa'] as const) {
    let tpm = await openTracked(sw);
    const ak = await createAK(tpm, alg);
    await tpm.close();
    // swtpm has no resource manager: the transient handle is still loaded for tpm2-tools
    assert.is(nameFromReadpublic(tpm2(sw, 'tpm2_readpublic', ['-c', '0x' + ak.handle.toString(16)])), ak.name.toString('hex'));
    tpm2(sw, 'tpm2_flushcontext', ['-t']);
    await sw.restart();
    tpm = await openTracked(sw);
    const again = await createAK(tpm, alg);
    await flushKey(tpm, again);
    await tpm.close();
    assert.is(again.name.toString('hex'), ak.name.toString('hex'), `${alg} AK differs after restart`);
  }
});

test('EK certificate equals tpm2_nvread 0x01c00002; no ECC low-range cert on swtpm 0.7', async () => {
  const tpm = await openTracked(sw);
  const cert = await readEKCertificate(tpm, 'rsa');
  const ecc = await readEKCertificate(tpm, 'ecc');
  await tpm.close();
  assert.ok(cert && cert[0] === 0x30);
  const out = join(dir, 'ek.der');
  tpm2(sw, 'tpm2_nvread', ['0x01c00002', '-C', 'o', '-o', out]);
  assert.equal(cert!.toString('hex'), readFileSync(out).subarray(0, cert!.length).toString('hex'));
  assert.is(ecc, undefined);
});

for (const alg of ['rsa', 'ecc'] as const) {
  for (const range of ['low', 'high'] as const) {
    test(`tpm2_makecredential to the ${range}-range ${alg} EK activates with our ActivateCredential (encrypted)`, async () => {
      let tpm = await openTracked(sw);
      const ek = await getEK(tpm, alg, { range, persistent: false });
      const ak = await createAK(tpm, 'ecc');
      await tpm.close();
      const ekPub = join(dir, `ek-mc-${alg}-${range}.pub`);
      writeFileSync(ekPub, marshalPublic2B(ek.public));
      const secret = Buffer.from(`credential-${alg}-${range}-0123456789`);
      writeFileSync(join(dir, 'secret'), secret);
      tpm2(sw, 'tpm2_makecredential', ['-T', 'none', '-u', ekPub, '-s', join(dir, 'secret'), '-n', ak.name.toString('hex'), '-o', join(dir, 'cred')]);
      const cred = parseCredFile(readFileSync(join(dir, 'cred')));
      const c = await openCaptured(sw);
      tpm = c.tpm;
      const got = await activateCredential(tpm, { ak, ek, ...cred, pinnedEK: ek.public });
      assert.equal(got.toString(), secret.toString());
      assert.not.ok(contains(c.cap.responses, secret), 'the credential crossed the bus in clear');
      await flushKey(tpm, ek);
      await flushKey(tpm, ak);
      assert.equal(await getHandles(tpm, 0x80000000), []);
      assert.equal(await getHandles(tpm, 0x03000000), []);
      await tpm.close();
    });
  }
}

test('high-range templates create (H-1, H-2) with the PolicyB authPolicy', async () => {
  const tpm = await openTracked(sw);
  for (const alg of ['rsa', 'ecc'] as const) {
    const k = await createPrimary(tpm, TPM_RH.ENDORSEMENT, ekTemplate(alg, 'high'));
    assert.is(k.public.authPolicy.toString('hex').slice(0, 8), 'ca3d0a99');
    await flushKey(tpm, k);
  }
  await tpm.close();
});

test.run();
