/**
 * Attacks A and B end to end: a real server, a swtpm "machine" enrolled from its known-good
 * boot, then "rebooted" into the attacker's boot (swtpm restarted, its PCRs extended from the
 * attacker's HONEST log, so the quote is genuine), and the DOCTORED log sent with that quote
 * (test/attacks/scenarios.ts). The server must refuse, with the reason that names the problem.
 *
 * BOOTKEY_EXPECT_FIXED=0 asserts today's bug instead: the key is released (A, B), or the refusal
 * does not name the unknown application (B2).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, refused, shutdown, openTpm, log, type TestServer, type Machine } from './helpers.ts';
import { replayLogIntoTpm } from '../../scripts/replay-log.ts';
import { ClientError } from '../../src/client/connect.ts';
import { attackA, attackB, attackB2, refusalProblem, type Attack } from '../attacks/scenarios.ts';
import type { Verdict } from '../../src/measuredboot/verdict.ts';

const EXPECT_FIXED = process.env.BOOTKEY_EXPECT_FIXED !== '0';

const tmp = tempDir('attacks');
let srv: TestServer;
const machines: { m: Machine; image: string }[] = [];

test.before(async () => {
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  for (const x of machines) await x.m.stop();
  await srv?.close();
  tmp.cleanup();
});

/** A machine enrolled from its known-good boot `logName` (the server generates the policy). */
async function enrolled(logName: string): Promise<{ m: Machine; image: string }> {
  const m = await machine(logName);
  const img = await luksImage(tmp.dir, `${logName}.img`);
  const x = { m, image: img.image };
  machines.push(x);
  await enrollMachine(srv, m, img);
  return x;
}

/** Reboot into a boot whose firmware measured `measured` (the TPM's PCRs), and send `sent` as the event log. */
async function bootInto(m: Machine, measured: Buffer, sent: Buffer): Promise<void> {
  await shutdown(m.tpm);
  await m.tpm.close();
  await m.sw.restart();
  m.tpm = await openTpm(m.sw);
  await replayLogIntoTpm(m.tpm, measured);
  m.eventLog = sent;
}

/** The server's answer as a Verdict, for refusalProblem. */
async function answer(m: Machine, image: string): Promise<Verdict> {
  try {
    await unlockImage(m, image);
    return { pass: true, failures: [], warnings: [], verified: true, knownGoodPcrs: [] };
  } catch (e) {
    if (!(e instanceof ClientError) || e.code !== 'REFUSED') throw e;
    const failures = (e.failures ?? []).map((f) => {
      const i = f.indexOf(': ');
      return { rule: f.slice(0, i), message: f.slice(i + 2), pcr: null, event: null, expected: '', actual: '' };
    });
    return { pass: false, code: e.serverCode as Verdict['code'], message: e.message, failures, warnings: [], verified: true, knownGoodPcrs: [] };
  }
}

function show(v: Verdict): string {
  return v.pass ? 'RELEASED' : `refused ${v.code}: ${v.message} [${v.failures.map((f) => `${f.rule}: ${f.message}`).join(' | ')}]`;
}

async function attackE2e(x: { m: Machine; image: string }, a: Attack): Promise<void> {
  await bootInto(x.m, a.honest, a.doctored);
  const v = await answer(x.m, x.image);
  const problem = refusalProblem(v, a.expect);
  if (EXPECT_FIXED) assert.is(problem, undefined, `${a.id}: ${problem} — the bug: ${a.bug}`);
  else assert.ok(problem !== undefined, `${a.id}: BOOTKEY_EXPECT_FIXED=0 expects the old bug: ${show(v)}`);
}

test('A: enrolled from sdboot-sb-off; the known-good boot unlocks; the init=/bin/sh boot sent as is → POLICY kernel-cmdline', async () => {
  const x = await enrolled('sdboot-sb-off');
  const a = attackA();
  await bootInto(x.m, log('sdboot-sb-off'), log('sdboot-sb-off'));
  assert.ok((await unlockImage(x.m, x.image)).machine, 'the known-good boot unlocks');
  await bootInto(x.m, a.honest, a.honest);
  const e = await refused(unlockImage(x.m, x.image), 'POLICY');
  assert.ok(e.failures?.some((f) => /^kernel-cmdline: .*init=\/bin\/sh/.test(f)), e.failures?.join(' | '));
});

test(`A: the init=/bin/sh boot with a doctored log → ${EXPECT_FIXED ? attackA().expect.text : 'released (the bug)'}`, async () => {
  await attackE2e(machines[0], attackA());
});

test('B: enrolled from uki-sb-on; the Secure Boot off + unknown application boot sent as is → POLICY secure-boot and boot-chain', async () => {
  const x = await enrolled('uki-sb-on');
  const a = attackB();
  await bootInto(x.m, a.honest, a.honest);
  const v = await answer(x.m, x.image);
  assert.is(refusalProblem(v, a.honestExpect!), undefined, show(v));
});

test(`B: Secure Boot off + unknown application, doctored log (fake SecureBoot = 01 with digest count 0) → ${EXPECT_FIXED ? attackB().expect.text : 'released (the bug)'}`, async () => {
  await attackE2e(machines[1], attackB());
});

test(`B2: Secure Boot off + unknown application relabelled → ${EXPECT_FIXED ? attackB2().expect.text : 'refused without naming the application (the bug)'}`, async () => {
  await attackE2e(machines[1], attackB2());
});

test.run();
