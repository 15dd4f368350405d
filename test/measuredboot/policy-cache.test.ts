/**
 * parsePolicyCached (the server's one parse per policy text) and the values derived once per
 * frozen policy: a changed text is never served from the cache, a cached policy cannot be
 * changed by anyone, and the derived values equal those of a fresh parse. The service-level
 * check (set-policy takes effect at the next boot) is test/server/pipeline.test.ts's POLICY test.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { generatePolicy, checkPolicy, rulesDigest, policyPcrs } from '../../src/measuredboot/policy.ts';
import { parsePolicy, parsePolicyCached } from '../../src/measuredboot/policy-load.ts';
import { PolicyError } from '../../src/measuredboot/policy-errors.ts';
import { parseEventLog } from '../../src/measuredboot/eventlog.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';

const log = unverifiedLog(parseEventLog(readFileSync(new URL('../data/qemu/uki-sb-on.bin', import.meta.url))));
const text = JSON.stringify(generatePolicy(log, { bank: 'sha256' }));

test('one parse per text: the same frozen object, equal to a fresh parse', () => {
  const a = parsePolicyCached(text);
  assert.is(parsePolicyCached(text), a);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.rules) && Object.isFrozen(a.pcrs));
  assert.equal(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(parsePolicy(text))));
  assert.throws(() => { (a.pcrs as number[]).push(23); }, TypeError);
  assert.throws(() => { (a as { bank: string }).bank = 'sha1'; }, TypeError);
  assert.ok(checkPolicy(a, log).pass);
});

test('a changed policy text is another entry: the change is seen at once', () => {
  const p = JSON.parse(text);
  p.rules.pcrValues = { 0: ['00'.repeat(32)] }; // pins PCR 0 to a value this boot does not have
  const changed = parsePolicyCached(JSON.stringify(p));
  assert.is.not(changed, parsePolicyCached(text));
  const r = checkPolicy(changed, log);
  assert.not.ok(r.pass, 'the stricter policy refuses this boot');
  assert.ok(checkPolicy(parsePolicyCached(text), log).pass, 'the old text still passes');
});

test('derived once per frozen policy: the same digest and PCRs as a fresh parse; the PCR list is a copy', () => {
  const a = parsePolicyCached(text);
  assert.is(rulesDigest(a), rulesDigest(parsePolicy(text)));
  const pcrs = policyPcrs(a);
  assert.equal(pcrs, policyPcrs(parsePolicy(text)));
  pcrs.push(99);
  assert.not.ok(policyPcrs(a).includes(99), 'callers get a copy');
});

test('an invalid text is refused every time (errors are not cached)', () => {
  for (let i = 0; i < 2; i++) assert.throws(() => parsePolicyCached('{"version": 2'), (e: unknown) => e instanceof PolicyError && e.code === 'BAD_POLICY');
});

test.run();
