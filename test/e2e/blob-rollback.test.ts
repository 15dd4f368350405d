/**
 * The released blob is useless elsewhere (another TPM, or this TPM once the released PCR or
 * any quoted PCR changed), and a failed enrolment leaves nothing behind (no keyslot, no token,
 * no active machine on the server).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes, createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, refused, admin, metadata, fails, type TestServer } from './helpers.ts';
import { withServer, ClientError } from '../../src/client/connect.ts';
import { attest, readToken, unsealReleased, extendReleasedPcr, type Released } from '../../src/initrd/unlock.ts';
import { createAK, flushKey, getEK, unsealImported } from '../../src/tpm/keys.ts';
import { PCR_Extend } from '../../src/tpm/commands/pcr.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { TPM_RC } from '../../src/tpm/rc.ts';
import { toTpmSelection } from '../../src/client/selection.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import type { Machine } from './helpers.ts';

const tmp = tempDir('blob');
let srv: TestServer;

test.before(async () => {
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  await srv?.close();
  tmp.cleanup();
});

/** A released blob, got without unsealing it (and without extending the released PCR). */
async function release(m: Machine, image: string): Promise<Released> {
  const { token } = await readToken(image);
  const ak = await createAK(m.tpm, token.ak_alg);
  try {
    return await withServer({ servers: token.servers, ca: token.ca }, (s) => attest(s, m.tpm, ak, token, m.eventLog));
  } finally {
    await flushKey(m.tpm, ak);
  }
}

function policyFail(e: unknown): boolean {
  const c = (e as { cause?: unknown }).cause;
  return e instanceof ClientError && e.code === 'UNSEAL' && c instanceof TpmError && (c.is(TPM_RC.POLICY_FAIL) || c.is(TPM_RC.PCR_CHANGED));
}

test('released blob: unseals here once; not on another TPM; not after the released PCR or a quoted PCR changed', async () => {
  const m = await machine();
  const other = await machine(undefined, { blank: true });
  try {
    const img = await luksImage(tmp.dir, 'blob.img');
    await enrollMachine(srv, m, img);
    const { token } = await readToken(img.image);

    // positive control: a fresh blob unseals to a 32-byte share on the enrolled TPM
    const r1 = await release(m, img.image);
    const share = await unsealReleased(m.tpm, token, r1);
    assert.is(share.length, 32);

    // another TPM: refused by the pinned-EK check, and the TPM itself refuses too (seed wrapped to another EK)
    await fails(unsealReleased(other.tpm, token, r1), 'EK_MISMATCH');
    const oek = await getEK(other.tpm, token.ek_alg);
    try {
      let threw: unknown;
      try {
        await unsealImported(other.tpm, {
          ek: oek, objectPublic: r1.blob.public.subarray(2), duplicate: r1.blob.duplicate.subarray(2), inSymSeed: r1.blob.inSymSeed.subarray(2), pcrs: toTpmSelection(r1.sealedTo),
        });
      } catch (e) {
        threw = e;
      }
      assert.instance(threw, TpmError, 'Import/Unseal on another TPM fails');
      assert.is((threw as TpmError).code, 'TPM_RC', String(threw));
    } finally {
      await flushKey(other.tpm, oek);
    }

    // same TPM after the released PCR was extended: the policy no longer holds
    await extendReleasedPcr(m.tpm, token.released_pcr);
    let e1: unknown;
    await unsealReleased(m.tpm, token, r1).catch((e) => (e1 = e));
    assert.ok(policyFail(e1), `released PCR extended: ${String(e1)} / ${String((e1 as { cause?: unknown })?.cause)}`);
    // and the server does not release again this boot
    await refused(release(m, img.image), 'ALREADY_RELEASED');

    // after a reboot: a blob, then a quoted PCR (7) changes → unseal fails with the policy error
    await m.reboot();
    const r2 = await release(m, img.image);
    await PCR_Extend(m.tpm, { pcrHandle: 7, digests: [{ hashAlg: TPM_ALG.SHA256, digest: createHash('sha256').update('evil').digest() }, { hashAlg: TPM_ALG.SHA1, digest: randomBytes(20) }] });
    let e2: unknown;
    await unsealReleased(m.tpm, token, r2).catch((e) => (e2 = e));
    assert.ok(policyFail(e2), `PCR 7 changed: ${String(e2)}`);
  } finally {
    await m.stop();
    await other.stop();
  }
});

async function machineStates(): Promise<string[]> {
  const list = (await admin(srv, 'list')) as { state: string; machineId: string }[];
  return list.map((x) => `${x.machineId}:${x.state}`);
}

test('enrolment rollback: wrong --key-file → no keyslot, no token, no active machine', async () => {
  const m = await machine();
  try {
    const img = await luksImage(tmp.dir, 'rb1.img');
    const before = await metadata(img.image);
    const bad = join(tmp.dir, 'wrong.pass');
    writeFileSync(bad, 'not the passphrase');
    await fails(enrollMachine(srv, m, { image: img.image, pass: bad }, { machineId: 'rollback-keyfile' }), 'BAD_KEY');
    assert.equal(await metadata(img.image), before);
    assert.not.ok((await machineStates()).includes('rollback-keyfile:active'), 'no active machine');
  } finally {
    await m.stop();
  }
});

test('enrolment rollback: server refusal at enroll-finish (altered log) → image unchanged', async () => {
  const m = await machine();
  try {
    const img = await luksImage(tmp.dir, 'rb2.img');
    const before = await metadata(img.image);
    const b = Buffer.from(m.eventLog);
    const ev = parseEventLog(b).events;
    const i = ev.findIndex((e) => e.pcr === 4 && e.decoded.kind === 'efi-image');
    const cut = Buffer.concat([b.subarray(0, ev[i].offset), b.subarray(ev[i + 1].offset)]);
    await refused(enrollMachine(srv, m, img, { eventLog: cut, machineId: 'rollback-refused' }), 'REPLAY');
    assert.equal(await metadata(img.image), before);
    assert.not.ok((await machineStates()).includes('rollback-refused:active'));
  } finally {
    await m.stop();
  }
});

for (const step of ['keyslot', 'token', 'verified'] as const) {
  test(`enrolment rollback: failure after the ${step} step → keyslot killed, token removed, enrolment aborted`, async () => {
    const m = await machine();
    try {
      const img = await luksImage(tmp.dir, `rb-${step}.img`);
      const before = await metadata(img.image);
      const id = `rollback-${step}`;
      await fails(enrollMachine(srv, m, img, { machineId: id, hook: (s) => { if (s === step) throw Object.assign(new Error(`injected at ${s}`), { code: 'INJECTED' }); } }), 'INJECTED');
      const after = await metadata(img.image);
      assert.equal(Object.keys(after.keyslots), Object.keys(before.keyslots));
      assert.equal(after.tokens, {});
      assert.not.ok((await machineStates()).includes(`${id}:active`));
      // the machine never unlocks (its token is gone), and a new enrolment of the same image works
      await fails(unlockImage(m, img.image), 'NO_TOKEN');
      await enrollMachine(srv, m, img, { machineId: `${id}-again` });
      assert.ok(await unlockImage(m, img.image));
    } finally {
      await m.stop();
    }
  });
}

test.run();
