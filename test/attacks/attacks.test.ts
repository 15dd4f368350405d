/**
 * The attacks that got the key (A, B) and one per weakness class, as concrete doctored logs
 * (scenarios.ts). Each test gives evaluateBoot the attacker's doctored log and the PCR values
 * the TPM quotes for the attacker's honest boot, and asserts the refusal and its reason.
 *
 * BOOTKEY_EXPECT_FIXED=0 flips the doctored-log tests to assert today's bug instead (the verdict
 * releases, or under-reports): it documents that the attacks work against the old analysis.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { evaluateBoot } from '../../src/measuredboot/verdict.ts';
import { allAttacks, doctoredMatchesQuote, refusalProblem, showVerdict, RELEASED_PCR, policyFrom, quoteFor, EVIL_CMDLINE, type Attack } from './scenarios.ts';
import { qemuLog } from './corpus.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';

/** Default: assert the fix. '0': assert the old (vulnerable) behaviour. */
const EXPECT_FIXED = process.env.BOOTKEY_EXPECT_FIXED !== '0';

const ATTACKS = allAttacks();

test('each doctored log replays to the PCR values the TPM quotes for the honest boot', () => {
  for (const a of ATTACKS) {
    assert.is(doctoredMatchesQuote(a), undefined, a.id);
    assert.not.ok(a.doctored.equals(a.honest), a.id);
    assert.ok(a.quoted.get('sha256')!.has(RELEASED_PCR), a.id);
  }
});

test('control: the policies release their own known-good boots', () => {
  for (const name of ['sdboot-sb-off', 'uki-sb-on']) {
    const p = policyFrom(name);
    const v = evaluateBoot(p, qemuLog(name), quoteFor(p, qemuLog(name)), { releasedPcr: RELEASED_PCR });
    assert.ok(v.pass, `${name}: ${showVerdict(v)}`);
  }
});

test('control: the honest logs of the attackers\' boots are refused, with the reason', () => {
  for (const a of ATTACKS) {
    const v = evaluateBoot(a.policy, a.honest, a.quoted, { releasedPcr: RELEASED_PCR });
    assert.is(refusalProblem(v, a.honestExpect ?? a.expect), undefined, a.id);
  }
});

test('control: the honest A log measures the same command line in PCR 12 and PCR 9 (as systemd-boot + the EFI stub do)', () => {
  const log = parseEventLog(ATTACKS.find((x) => x.id === 'A')!.honest);
  const p12 = log.events.find((e) => e.pcr === 12)!;
  const p9 = log.events.find((e) => e.pcr === 9 && e.decoded.kind === 'event-tag' && e.decoded.tagId === 0x8f3b22ed)!;
  assert.ok(p12.digests.get('sha256')!.equals(p9.digests.get('sha256')!));
  assert.is(p12.decoded.kind === 'ipl' && p12.decoded.text.replace(/\0+$/, ''), EVIL_CMDLINE);
  // and the original log agrees: the PCR 9 load-options digest equals the PCR 12 one
  const orig = parseEventLog(qemuLog('sdboot-sb-off'));
  assert.ok(orig.events.find((e) => e.pcr === 12)!.digests.get('sha256')!.equals(orig.events.find((e) => e.pcr === 9)!.digests.get('sha256')!));
});

function attackTest(a: Attack): void {
  test(`${a.title} → ${EXPECT_FIXED ? a.expect.text : 'old analysis: released or under-reported'}`, () => {
    const v = evaluateBoot(a.policy, a.doctored, a.quoted, { releasedPcr: RELEASED_PCR });
    const problem = refusalProblem(v, a.expect);
    if (EXPECT_FIXED) assert.is(problem, undefined, `${a.id}: ${problem} — the bug: ${a.bug}`);
    else assert.ok(problem !== undefined, `${a.id}: BOOTKEY_EXPECT_FIXED=0 expects the old bug, but the verdict is already right: ${showVerdict(v)}`);
  });
}
for (const a of ATTACKS) attackTest(a);

test.run();
