/**
 * src/server/staging.ts, pure: the permission (none → STAGING_NOT_ALLOWED), signed-by on an
 * unsigned image (UNSIGNED), `any` widening the boot chain, a machine-staged boot adding rules
 * only (the known-good values stay the policy's own: none for the staged boot), the effective
 * policy (a staged prediction that no longer applies is skipped and reported), matching a release
 * to a staged boot by its PCR 4 value. On our OVMF Secure Boot boot (test/data/qemu/uki-sb-on)
 * and the test UKIs (test/efi/helpers.ts).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { generatePolicy, rulesDigest, type Policy } from '../../src/measuredboot/policy.ts';
import { predictBoot } from '../../src/efi/predict.ts';
import { decideStaging, effectivePolicy, matchStaged, requireStaging, selfStage } from '../../src/server/staging.ts';
import { ServerError } from '../../src/server/errors.ts';
import { testUkis } from '../efi/helpers.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const log = parseEventLog(readFileSync(ROOT + '/test/data/qemu/uki-sb-on.bin'));
const base = (): Policy => generatePolicy(unverifiedLog(log), { bank: 'sha256' });

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.instance(e, ServerError);
    return `${(e as ServerError).code}: ${(e as Error).message}`;
  }
  return 'accepted';
}

test('permission none (default) and signed-by without a signature are refused with their codes', () => {
  const u = testUkis();
  if ('skip' in u) return void console.log(`  SKIP: ${u.skip}`);
  const p = base();
  const next = predictBoot(log, { uki: readFileSync(u.uki1) }); // unsigned: another digest than the signed one booted
  assert.match(code(() => requireStaging(p)), /^STAGING_NOT_ALLOWED: .*staging mode none/);
  assert.match(code(() => decideStaging(p, next)), /^STAGING_NOT_ALLOWED/);
  p.staging = { mode: 'signed-by', signedBy: [{ sha256: 'ab'.repeat(32), subject: 'Distro' }] };
  assert.match(code(() => decideStaging(p, next)), /^UNSIGNED: the staged (uki|application) sha256 [0-9a-f]{12}… comes without an Authenticode signature; .* requires one by Distro/);
});

test('mode any: the boot chain widens; a self-staged boot adds rules, never known-good values', () => {
  const u = testUkis();
  if ('skip' in u) return void console.log(`  SKIP: ${u.skip}`);
  const p = base();
  p.staging = { mode: 'any' };
  assert.ok(p.knownGood && p.knownGoodRules === rulesDigest(p));
  const next = predictBoot(log, { uki: readFileSync(u.uki1) });
  const d = decideStaging(p, next, { label: 'uki1' });
  assert.equal(d.widenings.map((w) => w.rule), ['boot-chain']);
  assert.equal(d.after.knownGood, p.knownGood, 'the known-good values are the policy\'s own');
  assert.is(d.after.knownGoodRules, rulesDigest(d.after));
  assert.is(d.entry.label, 'uki1');
  assert.is(d.entry.knownGood['4'], next.pcrs.sha256!['4']);
  // The effective policy applies active staged boots; one that no longer applies is reported.
  const skipped: string[] = [];
  const eff = effectivePolicy(p, [{ id: 's-1', prediction: JSON.stringify(next), label: 'uki1' }, { id: 's-2', prediction: '{"format":1}', label: '' }], (id, why) => skipped.push(`${id}: ${why}`));
  assert.equal(eff.rules.bootChain, d.after.rules.bootChain);
  assert.is(skipped.length, 1);
  assert.match(skipped[0], /^s-2: predicted boot: format/);
  // Matching a release: by the predicted PCR 4 value.
  const q = new Map([['sha256' as const, new Map([[4, Buffer.from(next.pcrs.sha256!['4'], 'hex')]])]]);
  assert.equal(matchStaged([{ id: 's-1', knownGood: d.entry.knownGood }, { id: 's-0', knownGood: { 4: '00'.repeat(32) } }], q, 'sha256'), ['s-1']);
  assert.equal(matchStaged([{ id: 's-1', knownGood: d.entry.knownGood }], q, 'sha1'), []);
  // selfStage on a policy whose known-good values are stale (rules edited): none are kept.
  const edited = structuredClone(p);
  edited.rules.kernelCmdline = { allowed: [] };
  assert.is(selfStage(edited, next).policy.knownGood, undefined);
});

test.run();
