/**
 * The verdict (measuredboot/verdict.ts) and the trust boundary (trusted.ts): the log bound to
 * quoted values, only quoted PCRs read, the PCRs a policy reads derived from the policy.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { parseEventLog } from '../../src/measuredboot/eventlog.ts';
import { replay } from '../../src/measuredboot/replay.ts';
import { bindLogToQuote, unverifiedLog, BindError, TrustedLog } from '../../src/measuredboot/trusted.ts';
import { generatePolicy, policyPcrs, type Policy } from '../../src/measuredboot/policy.ts';
import { PolicyError } from '../../src/measuredboot/policy-errors.ts';
import { evaluateBoot, requiredPcrs } from '../../src/measuredboot/verdict.ts';
import { analyseBoot } from '../../src/measuredboot/bootstate.ts';
import { pcrValuesFromText, type PcrValues } from '../../src/pcrs.ts';
import { logBytes, QEMU, serialiseEventLog } from './helpers.ts';

const SD = logBytes('sdboot-sb-off.bin', QEMU);
const ON = logBytes('uki-sb-on.bin', QEMU);
const OFF = logBytes('uki-sb-off.bin', QEMU);

/** What an honest TPM quotes for `pcrs` after the boot in `log` (sha256), PCR 15 at zero. */
function quoted(log: Buffer, pcrs: number[]): PcrValues {
  const all = replay(parseEventLog(log)).get('sha256')!;
  return new Map([['sha256', new Map(pcrs.map((p) => [p, all.get(p) ?? Buffer.alloc(32)]))]]);
}

function policyFrom(log: Buffer, o: Parameters<typeof generatePolicy>[1] = {}): Policy {
  const l = parseEventLog(log);
  return generatePolicy(bindLogToQuote(l, quoted(log, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14])), o);
}

test('bindLogToQuote: only quoted PCRs, only quoted banks, nothing of other PCRs', () => {
  const l = parseEventLog(SD);
  const tl = bindLogToQuote(l, quoted(SD, [4, 7]));
  assert.ok(tl instanceof TrustedLog);
  assert.is(tl.verified, true);
  assert.equal(tl.extendedPcrs(), [4, 7]);
  assert.equal(tl.events(12), [], 'PCR 12 is not quoted: its events do not exist here');
  assert.ok(tl.events(4).every((e) => [...e.digests.keys()].join() === 'sha256'), 'the sha1 digests are not bound by a sha256 quote');
  assert.equal(tl.events(4).map((e) => e.seq), tl.events(4).map((_, i) => i));
  const st = analyseBoot(tl);
  assert.equal(st.cmdlines, [], 'no command line from an unquoted PCR');
  assert.is(st.exitBootServices, undefined, 'PCR 5 is not quoted');
});

test('bindLogToQuote: a quoted value the log does not replay to is a BindError naming the PCR', () => {
  const q = quoted(SD, [0, 4]);
  q.get('sha256')!.set(4, Buffer.alloc(32, 1));
  try {
    bindLogToQuote(parseEventLog(SD), q);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, BindError);
    assert.match((e as Error).message, /^PCR sha256:4: the log replays to [0-9a-f]{64}, the quote says 0101/);
  }
});

test('TrustedLog cannot be made from outside trusted.ts', () => {
  assert.throws(() => new (TrustedLog as unknown as new (...a: unknown[]) => TrustedLog)(Symbol('x'), new Map(), new Map(), true, []), /use bindLogToQuote/);
});

test('policyPcrs: derived from the policy (rules, command line, ExitBootServices, pins)', () => {
  const p = policyFrom(SD);
  assert.equal(policyPcrs(p), [0, 2, 4, 5, 7, 9, 12]);
  assert.equal(requiredPcrs(p, 15), [0, 2, 4, 5, 7, 9, 12, 15]);
  assert.equal(Object.keys(p.knownGood!).map(Number), policyPcrs(p));
});

test('evaluateBoot: the honest boot passes with known-good PCRs; another boot is refused with reasons', () => {
  const p = policyFrom(SD);
  const ok = evaluateBoot(p, SD, quoted(SD, requiredPcrs(p, 15)), { releasedPcr: 15 });
  assert.equal([ok.pass, ok.verified, ok.knownGoodPcrs], [true, true, [0, 2, 4, 5, 7, 9, 12]]);
  const bad = evaluateBoot(p, OFF, quoted(OFF, requiredPcrs(p, 15)), { releasedPcr: 15 });
  assert.is(bad.code, 'POLICY');
  assert.ok(bad.failures.some((f) => f.rule === 'boot-chain'));
});

test('evaluateBoot: SELECTION when a PCR the policy reads is not quoted, REPLAY, EVENTLOG, ALREADY_RELEASED', () => {
  const p = policyFrom(SD);
  let v = evaluateBoot(p, SD, quoted(SD, [0, 2, 4, 7, 15]), { releasedPcr: 15 });
  assert.is(v.code, 'SELECTION');
  assert.match(v.message!, /does not cover PCR\(s\) 5, 9, 12 of bank sha256/);
  v = evaluateBoot(p, OFF, quoted(SD, requiredPcrs(p, 15)), { releasedPcr: 15 });
  assert.is(v.code, 'REPLAY');
  v = evaluateBoot(p, Buffer.from('not a log at all, not at all'), quoted(SD, requiredPcrs(p, 15)));
  assert.is(v.code, 'EVENTLOG');
  const q = quoted(SD, requiredPcrs(p, 15));
  q.get('sha256')!.set(15, Buffer.alloc(32, 7));
  v = evaluateBoot(p, SD, q, { releasedPcr: 15 });
  assert.is(v.code, 'ALREADY_RELEASED');
});

test('evaluateBoot without quoted values: unverified, and it says so', () => {
  const p = policyFrom(SD);
  const v = evaluateBoot(p, SD, undefined);
  assert.equal([v.pass, v.verified], [true, false]);
  assert.match(v.warnings[0], /^UNVERIFIED/);
});

test('generate refuses a log without a command line (NO_CMDLINE) unless allowAnyCmdline, which the policy records', () => {
  const l = parseEventLog(SD);
  // Quote without the command-line PCRs: nothing to read a command line from.
  const tl = bindLogToQuote(l, quoted(SD, [0, 2, 4, 5, 7]));
  try {
    generatePolicy(tl);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, PolicyError);
    assert.is((e as PolicyError).code, 'NO_CMDLINE');
    assert.match((e as Error).message, /init=\/bin\/sh.*--allow-any-cmdline/);
  }
  const p = generatePolicy(tl, { allowAnyCmdline: true });
  assert.is(p.options.allowAnyCmdline, true);
  assert.is(p.rules.kernelCmdline, undefined);
});

test('generate refuses a policy reading a PCR the quote does not cover (NOT_QUOTED)', () => {
  const tl = bindLogToQuote(parseEventLog(SD), quoted(SD, [0, 4, 5, 7, 9, 12]));
  try {
    generatePolicy(tl, { pcrs: [0, 2, 4, 7] });
    assert.unreachable();
  } catch (e) {
    assert.is((e as PolicyError).code, 'NOT_QUOTED');
    assert.match((e as Error).message, /PCR sha256:2 is not covered/);
  }
});

test('a version 1 policy (no knownGood) is read by structure only and still passes the honest boot', () => {
  const p = policyFrom(SD);
  const v1 = structuredClone(p) as Policy;
  v1.version = 1;
  delete v1.knownGood;
  for (const a of v1.rules.kernelCmdline!.allowed) delete a.pcr;
  const v = evaluateBoot(v1, SD, quoted(SD, requiredPcrs(v1, 15)), { releasedPcr: 15 });
  assert.equal([v.pass, v.knownGoodPcrs], [true, []], JSON.stringify(v.failures));
});

test('the Secure Boot on policy refuses the Secure Boot off boot, known-good values or not', () => {
  const p = policyFrom(ON);
  for (const pol of [p, { ...p, knownGood: undefined } as Policy]) {
    const v = evaluateBoot(pol, OFF, quoted(OFF, requiredPcrs(pol, 15)), { releasedPcr: 15 });
    assert.is(v.code, 'POLICY');
    assert.ok(v.failures.some((f) => f.rule === 'secure-boot' && f.pcr === 7));
  }
});

test('a hand-edited rule is not overruled by the known-good values recorded for the old rules', () => {
  const p = policyFrom(SD);
  const q = quoted(SD, requiredPcrs(p, 15));
  p.rules.bootChain!.stages[0].allowed = [{ digest: 'ab'.repeat(32) }];
  const v = evaluateBoot(p, SD, q, { releasedPcr: 15 });
  assert.is(v.code, 'POLICY');
  assert.ok(v.failures.some((f) => f.rule === 'boot-chain' && f.pcr === 4));
  assert.match(v.warnings[0], /rules changed since its known-good values were recorded/);
});

test('pcrValuesFromText: tpm2_pcrread YAML and bootkey JSON; bad lines named', () => {
  const yaml = 'sha1:\n  0 : 0x' + 'AB'.repeat(20) + '\nsha256:\n  0 : 0x' + 'cd'.repeat(32) + '\n  7 : 0x' + '01'.repeat(32) + '\n';
  const v = pcrValuesFromText(yaml);
  assert.equal([...v.get('sha256')!.keys()], [0, 7]);
  assert.is(v.get('sha1')!.get(0)!.toString('hex'), 'ab'.repeat(20));
  assert.is(pcrValuesFromText(readFileSync(new URL('sdboot-sb-off.pcrs.json', QEMU), 'utf8')).get('sha256')!.size, 24);
  assert.throws(() => pcrValuesFromText('sha256:\n  0 : zz\n'), /line 2/);
  assert.throws(() => pcrValuesFromText('md5:\n'), /unknown bank "md5"/);
});

test('unverifiedLog covers every PCR of every bank (initial values where the log is silent)', () => {
  const tl = unverifiedLog(parseEventLog(SD));
  assert.is(tl.verified, false);
  assert.is(tl.pcrs('sha256').length, 24);
  assert.ok(tl.value('sha256', 23)!.equals(Buffer.alloc(32)));
  assert.ok(tl.value('sha256', 17)!.equals(Buffer.alloc(32, 0xff)));
});

test('serialise round trip sanity (helpers used by the attack tests)', () => {
  const l = parseEventLog(SD);
  assert.ok(serialiseEventLog(l).equals(SD.subarray(0, l.length)));
});

test.run();
