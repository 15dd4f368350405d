/**
 * Issue 10 §3, "the AK must survive power loss": the AK (template v2) has noDA, so neither power
 * losses (non-orderly shutdowns: swtpm SIGKILLed, no TPM2_Shutdown) nor a TPM already in
 * dictionary-attack lockout stop a machine from unlocking; the v1 template (no noDA) does fail
 * with TPM_RC_LOCKOUT in the same states, so these tests prove something. A machine enrolled
 * with v1 still unlocks, is told AK_NO_DA, and re-enrolment moves it to v2.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, admin, metadata, cli, type Machine, type TestServer } from './helpers.ts';
import { getDictionaryAttackState, type DictionaryAttackState } from '../../src/tpm/commands/startup.ts';
import { CreatePrimary, FlushContext } from '../../src/tpm/commands/object.ts';
import { Quote } from '../../src/tpm/commands/attest.ts';
import { createAK, flushKey } from '../../src/tpm/keys.ts';
import { quotePCRs } from '../../src/tpm/commands/attest.ts';
import { akTemplate, hasNoDA } from '../../src/tpm/templates.ts';
import { TPM_ALG, TPM_RH } from '../../src/tpm/constants.ts';
import { TPM_RC } from '../../src/tpm/rc.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { findTokens } from '../../src/client/token.ts';
import { writeFileSync } from 'node:fs';

const tmp = tempDir('lockout');
let srv: TestServer;

test.before(async () => {
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  await srv?.close();
  tmp.cleanup();
});

const da = (m: Machine): Promise<DictionaryAttackState> => getDictionaryAttackState(m.tpm);
const fmt = (s: DictionaryAttackState): string => `counter ${s.lockoutCounter}/${s.maxAuthFail}${s.inLockout ? ' inLockout' : ''}`;

/** A quote with the AK of `version`: undefined when it works, else the TPM's error. */
async function quoteWith(m: Machine, version: 'v1' | 'v2'): Promise<TpmError | undefined> {
  const ak = await createAK(m.tpm, 'ecc', version);
  try {
    await quotePCRs(m.tpm, ak, { selection: [{ hash: TPM_ALG.SHA256, pcrs: [0, 7] }], nonce: Buffer.alloc(32, 1) });
    return undefined;
  } catch (e) {
    if (e instanceof TpmError) return e;
    throw e;
  } finally {
    await flushKey(m.tpm, ak);
  }
}

/** Drives the TPM into lockout: wrong passwords on a DA-protected key (AK v1 shape with an authValue). */
async function driveIntoLockout(m: Machine): Promise<number> {
  const k = await CreatePrimary(m.tpm, { primaryHandle: TPM_RH.OWNER, inPublic: akTemplate('ecc', 'v1'), inSensitive: { userAuth: Buffer.from('right') } });
  let failures = 0;
  try {
    for (let i = 0; i < 32 && !(await da(m)).inLockout; i++) {
      try {
        await Quote(m.tpm, { signHandle: { handle: k.objectHandle, name: k.name, authValue: Buffer.from('wrong') }, qualifyingData: Buffer.alloc(0), PCRselect: [] });
        assert.unreachable('a wrong password was accepted');
      } catch (e) {
        assert.instance(e, TpmError);
        assert.ok((e as TpmError).is(TPM_RC.AUTH_FAIL) || (e as TpmError).is(TPM_RC.BAD_AUTH), (e as Error).message);
        failures++;
      }
    }
  } finally {
    await FlushContext(m.tpm, { flushHandle: k.objectHandle });
  }
  return failures;
}

test('issue 10: enrolled (AK v2, noDA), then 4 power losses with an unlock in each boot: every unlock works, the lockout counter stays 0', async () => {
  const m = await machine();
  const img = await luksImage(tmp.dir, 'crash.img');
  try {
    await enrollMachine(srv, m, img);
    const [t] = findTokens(await metadata(img.image));
    assert.is(t.token.ak_template, 'v2');
    const seen: string[] = [fmt(await da(m))];
    for (let i = 0; i < 4; i++) {
      await m.crash();
      const u = await unlockImage(m, img.image);
      assert.equal(u.notices, []);
      seen.push(fmt(await da(m)));
    }
    const end = await da(m);
    console.log(`  AK v2 over 4 power losses: ${seen.join(' → ')}`);
    assert.is(end.lockoutCounter, 0, seen.join(' → '));
    assert.not.ok(end.inLockout);
  } finally {
    await m.stop();
  }
});

test('issue 10, control: the v1 AK (no noDA) used in each boot, then power losses → the counter rises to max and TPM2_Quote fails with TPM_RC_LOCKOUT', async () => {
  const m = await machine();
  try {
    const seen: string[] = [fmt(await da(m))];
    let err: TpmError | undefined;
    for (let i = 0; i < 4 && !err; i++) {
      err = await quoteWith(m, 'v1');
      if (err) break;
      await m.crash();
      seen.push(fmt(await da(m)));
    }
    console.log(`  AK v1: ${seen.join(' → ')}; quote: ${err?.message}`);
    const s = await da(m);
    assert.ok(s.inLockout, seen.join(' → '));
    assert.is(s.lockoutCounter, s.maxAuthFail);
    assert.ok(err, 'the v1 AK should be locked out');
    assert.ok(err!.is(TPM_RC.LOCKOUT), err!.message);
    // the v2 AK in the very same state still quotes
    assert.is(await quoteWith(m, 'v2'), undefined);
  } finally {
    await m.stop();
  }
});

test('issue 10: a TPM already in lockout (wrong passwords) still unlocks an AK v2 machine; the v1 AK gets TPM_RC_LOCKOUT', async () => {
  const m = await machine();
  const img = await luksImage(tmp.dir, 'locked.img');
  try {
    await enrollMachine(srv, m, img);
    const before = await da(m);
    const failures = await driveIntoLockout(m);
    const after = await da(m);
    console.log(`  lockout by ${failures} wrong passwords: ${fmt(before)} → ${fmt(after)}`);
    assert.ok(after.inLockout);
    assert.is(after.lockoutCounter, after.maxAuthFail);
    assert.ok(after.lockoutCounter > before.lockoutCounter);
    const v1 = await quoteWith(m, 'v1');
    assert.ok(v1?.is(TPM_RC.LOCKOUT), v1?.message ?? 'the v1 AK quoted in lockout');
    const u = await unlockImage(m, img.image); // quote, Import/Load under the EK, Unseal
    assert.is(u.tokenId, findTokens(await metadata(img.image))[0].id);
    assert.ok((await da(m)).inLockout, 'still in lockout after the unlock');
  } finally {
    await m.stop();
  }
});

test('issue 10: a machine enrolled with AK v1 still unlocks, gets notice AK_NO_DA (one line; server audit); bootkey enroll again moves it to v2', async () => {
  const m = await machine();
  const img = await luksImage(tmp.dir, 'v1.img');
  try {
    const r1 = await enrollMachine(srv, m, img, { akTemplate: 'v1' });
    const [old] = findTokens(await metadata(img.image));
    assert.is(old.token.ak_template, undefined, 'a v1 token looks like the tokens written before v2');
    const lines: string[] = [];
    const u1 = await unlockImage(m, img.image, { notice: (l) => lines.push(l) });
    assert.equal(u1.notices, ['AK_NO_DA']);
    assert.is(lines.length, 1);
    assert.match(lines[0], /^notice from https:\/\/127\.0\.0\.1:\d+: AK_NO_DA: the enrolled AK lacks noDA: .*re-enrol this machine \(bootkey enroll\)$/);
    assert.not.match(lines[0], /\n/);
    const audit = (await admin(srv, 'audit', r1.machine)) as { action: string; reasons?: string[] }[];
    assert.ok(audit.some((a) => a.action === 'release' && a.reasons?.some((x) => x.startsWith('notice AK_NO_DA'))), JSON.stringify(audit));

    // the CLI prints it as one stderr line even without --verbose
    await m.reboot();
    const logFile = `${tmp.dir}/v1-boot.log`;
    writeFileSync(logFile, m.eventLog);
    await m.detach();
    const c = await cli(['unlock', '--device', img.image, '--tpm', m.sw.tcti, '--eventlog', logFile, '--test']);
    await m.attach();
    assert.is(c.code, 0, c.stderr);
    assert.equal(c.stderr.trim().split('\n').filter((l) => l.includes('AK_NO_DA')).length, 1, c.stderr);
    assert.match(c.stderr, /^bootkey: notice from \S+: AK_NO_DA: /m);

    // re-enrolment: a v2 AK, a new record; the old token and keyslot are removed
    await m.reboot();
    const r2 = await enrollMachine(srv, m, img);
    const toks = findTokens(await metadata(img.image));
    assert.equal(toks.map((t) => t.token.machine), [r2.machine]);
    assert.is(toks[0].token.ak_template, 'v2');
    assert.not.ok(Object.hasOwn((await metadata(img.image)).keyslots, old.token.keyslots[0]), 'the old keyslot was killed');
    await m.reboot();
    const u2 = await unlockImage(m, img.image, { notice: (l) => lines.push(l) });
    assert.is(u2.machine, r2.machine);
    assert.equal(u2.notices, []);
    assert.is(lines.length, 1);
    const ak = await createAK(m.tpm, 'ecc');
    try {
      assert.ok(hasNoDA(ak.public));
      assert.is(ak.name.toString('hex'), r2.akName);
      assert.is.not(r2.akName, r1.akName);
    } finally {
      await flushKey(m.tpm, ak);
    }
  } finally {
    await m.stop();
  }
});

test.run();
