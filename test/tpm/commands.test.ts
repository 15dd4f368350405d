/**
 * Commands against a real swtpm: PCR values equal tpm2_pcrread's (after PCR_Extends, more than
 * 8 PCRs, several banks); capabilities; malformed responses (a wrapping transport corrupts the
 * real swtpm's answers) are TpmError('MARSHAL') naming the command; TPM errors are decoded.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { startSwtpm, tpm2, type Swtpm } from '../helpers/swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { TPM_ALG, TPM_CAP, TPM_PT } from '../../src/tpm/constants.ts';
import { GetRandom, GetCapability, getHandles, getProperties } from '../../src/tpm/commands/startup.ts';
import { PCR_Extend, PCR_Read, readPCRs, getPCRBanks } from '../../src/tpm/commands/pcr.ts';
import { ReadPublic, FlushContext } from '../../src/tpm/commands/object.ts';
import { NV_ReadPublic } from '../../src/tpm/commands/nv.ts';
import { createAK, flushKey } from '../../src/tpm/keys.ts';
import { pcrValuesToJson } from '../../src/pcrs.ts';
import { openCaptured, openTracked, closeAll } from './_util.ts';

let sw: Swtpm;
test.before(async () => {
  sw = await startSwtpm();
});
test.after.each(closeAll);
test.after(async () => {
  await sw.stop();
});

/** Parses tpm2_pcrread's YAML-ish output into {bank: {i: hex}}. */
function parsePcrread(out: string): Record<string, Record<string, string>> {
  const res: Record<string, Record<string, string>> = {};
  let bank = '';
  for (const line of out.split('\n')) {
    const b = /^\s*(sha\w+):\s*$/.exec(line);
    if (b) {
      bank = b[1];
      res[bank] = {};
      continue;
    }
    const m = /^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)/.exec(line);
    if (m && bank) res[bank][String(Number(m[1]))] = m[2].toLowerCase();
  }
  return res;
}

test('PCR values equal tpm2_pcrread after PCR_Extends (24 PCRs, three banks)', async () => {
  const tpm = await openTracked(sw);
  for (const [i, pcr] of [0, 4, 7, 9, 14, 16, 23].entries()) {
    const data = Buffer.from(`event ${i}`);
    await PCR_Extend(tpm, {
      pcrHandle: pcr,
      digests: [
        { hashAlg: TPM_ALG.SHA1, digest: createHash('sha1').update(data).digest() },
        { hashAlg: TPM_ALG.SHA256, digest: createHash('sha256').update(data).digest() },
        { hashAlg: TPM_ALG.SHA384, digest: createHash('sha384').update(data).digest() },
      ],
    });
  }
  const banks = (await getPCRBanks(tpm)).filter((b) => b.pcrs.length);
  assert.equal(banks.map((b) => b.hash), [TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384]);
  const ours = pcrValuesToJson(await readPCRs(tpm, banks));
  await tpm.close();
  const theirs = parsePcrread(tpm2(sw, 'tpm2_pcrread', ['sha1:all+sha256:all+sha384:all']));
  assert.equal(ours, theirs);
  assert.is(Object.keys(ours.sha256).length, 24);
  assert.is.not(ours.sha256['23'], '0'.repeat(64));
  // software replay of PCR 4 in sha256
  const exp = createHash('sha256').update(Buffer.alloc(32)).update(createHash('sha256').update('event 1').digest()).digest('hex');
  assert.is(ours.sha256['4'], exp);
});

test('one PCR_Read returns at most 8 digests and its selection says which', async () => {
  const tpm = await openTracked(sw);
  const r = await PCR_Read(tpm, { pcrSelectionIn: [{ hash: TPM_ALG.SHA256, pcrs: [...Array(24).keys()] }] });
  assert.is(r.pcrValues.length, 8);
  assert.equal(r.pcrSelectionOut[0].pcrs, [0, 1, 2, 3, 4, 5, 6, 7]);
  await tpm.close();
});

test('GetRandom, properties, algorithms, handles', async () => {
  const tpm = await openTracked(sw);
  const { randomBytes } = await GetRandom(tpm, { bytesRequested: 100 });
  assert.is(randomBytes.length, 100);
  const p = await getProperties(tpm, TPM_PT.FAMILY_INDICATOR, 64);
  assert.is(p.get(TPM_PT.FAMILY_INDICATOR), 0x322e3000); // "2.0"
  assert.is(p.get(TPM_PT.MANUFACTURER), 0x49424d00); // "IBM"
  const algs = await GetCapability(tpm, { capability: TPM_CAP.ALGS, property: 0, propertyCount: 256 });
  assert.ok(algs.capabilityData.capability === TPM_CAP.ALGS && algs.capabilityData.algorithms.some((a) => a.alg === TPM_ALG.ECDSA));
  assert.ok((await getHandles(tpm, 0x81000000)).includes(0x81010001));
  const nv = await NV_ReadPublic(tpm, { nvIndex: 0x01c00002 });
  assert.ok(nv.nvPublic.dataSize > 500);
  await tpm.close();
});

test('a TPM error is decoded with the command name (ReadPublic of a missing handle)', async () => {
  const tpm = await openTracked(sw);
  const err = await ReadPublic(tpm, { objectHandle: 0x81000123 }).catch((e) => e);
  assert.instance(err, TpmError);
  assert.is(err.code, 'TPM_RC');
  assert.is(err.command, 'TPM2_ReadPublic');
  assert.is(err.message, 'TPM2_ReadPublic: TPM returned TPM_RC_HANDLE (handle 1, 0x18b)');
  const e2 = await FlushContext(tpm, { flushHandle: 0x80ffffff }).catch((e) => e);
  assert.is(e2.message, 'TPM2_FlushContext: TPM returned TPM_RC_VALUE (parameter 1, 0x1c4)');
  await tpm.close();
});

const corruptions: [string, (r: Buffer) => Buffer, RegExp][] = [
  ['truncated by 10 bytes', (r) => r.subarray(0, r.length - 10), /^TPM2_ReadPublic: response header says \d+ bytes but \d+ arrived \(truncated\)/],
  ['claiming 1 GB', (r) => { const b = Buffer.from(r); b.writeUInt32BE(1 << 30, 2); return b; }, /^TPM2_ReadPublic: response header says 1073741824 bytes/],
  ['shorter than a header', (r) => r.subarray(0, 6), /^TPM2_ReadPublic: response of 6 bytes/],
  ['a TPM2B size past the buffer', (r) => { const b = Buffer.from(r); b.writeUInt16BE(0xfff0, 10); return b; }, /^TPM2_ReadPublic response: TPM2B_PUBLIC outPublic at byte 2: size 65520 exceeds/],
  ['inner TPM2B length past its parent', (r) => { const b = Buffer.from(r); b.writeUInt16BE(0x0040, 20); return b; }, /^TPM2_ReadPublic response: /],
  ['trailing garbage inside the header size', (r) => { const b = Buffer.concat([r, Buffer.alloc(5)]); b.writeUInt32BE(b.length, 2); return b; }, /^TPM2_ReadPublic response: .*unexpected trailing bytes/],
];

for (const [what, fn, re] of corruptions) {
  test(`a real response ${what} is TpmError('MARSHAL') naming the command`, async () => {
    const { tpm, cap } = await openCaptured(sw);
    const ak = await createAK(tpm, 'ecc');
    cap.corrupt = fn;
    const err = await ReadPublic(tpm, { objectHandle: ak.handle }).catch((e) => e);
    cap.corrupt = undefined;
    assert.instance(err, TpmError, String(err));
    assert.is(err.code, 'MARSHAL', err.message);
    assert.match(err.message, re);
    await flushKey(tpm, ak);
    await tpm.close();
  });
}

test('a TPM error response with sessions in the command is decoded too (corrupted into an rc)', async () => {
  const { tpm, cap } = await openCaptured(sw);
  cap.corrupt = () => Buffer.from('80010000000a0000098e', 'hex'); // TPM_RC_AUTH_FAIL, session 1
  const err = await GetRandom(tpm, { bytesRequested: 8 }).catch((e) => e);
  assert.is(err.message, 'TPM2_GetRandom: TPM returned TPM_RC_AUTH_FAIL (session 1, 0x98e)');
  assert.ok(err.is(0x08e));
  await tpm.close();
});

test.run();
