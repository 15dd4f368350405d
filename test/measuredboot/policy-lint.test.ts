/**
 * permissiveReason (src/measuredboot/policy-lint.ts): a policy that matches any boot is named
 * with the reason; policies generated from real boots (even with --allow-any-kernel/cmdline)
 * pin code and pass.
 */
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { permissiveReason } from '../../src/measuredboot/policy-lint.ts';
import { generatePolicy, type Policy } from '../../src/measuredboot/policy.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';

const log = (n: string) => parseEventLog(readFileSync(new URL(`../data/qemu/${n}.bin`, import.meta.url)));
const base = (rules: Policy['rules'], o: Partial<Policy> = {}): Policy => ({
  version: 1, bank: 'sha256', pcrs: [0, 2, 4, 7], options: { allowAnyCmdline: false, allowAnyKernel: false }, rules, ...o,
});

test('no rules, no PCRs: refused with the reason', () => {
  assert.match(permissiveReason(base({}))!, /no rules: it matches every boot/);
  assert.match(permissiveReason(base({}, { pcrs: [] }))!, /selects no PCR/);
  assert.match(permissiveReason(base({ pcrValues: { 0: [] } }))!, /no rules/);
});

test('rules that pin no code: only allow-any stages, Secure Boot off, a command line, PCR 1/5 values', () => {
  const anyChain = { pcr: 4 as const, stages: [{ role: 'uki' as const, allowed: [], allowAny: true }] };
  assert.match(permissiveReason(base({ bootChain: anyChain }, { options: { allowAnyCmdline: true, allowAnyKernel: true } }))!, /no rule pins the code.*every boot-chain stage allows any image/);
  assert.match(permissiveReason(base({ secureBoot: { pcr: 7, enabled: false } }))!, /Secure Boot may be off/);
  assert.match(permissiveReason(base({ secureBoot: { pcr: 7, enabled: true } }))!, /no keys\/authorities/);
  assert.match(permissiveReason(base({ kernelCmdline: { allowed: [{ source: 'systemd', text: 'ro' }] } }))!, /no rule pins the code/);
  assert.match(permissiveReason(base({ pcrValues: { 1: ['00'.repeat(32)], 5: ['11'.repeat(32)] } }))!, /no rule pins the code/);
  assert.match(permissiveReason(base({ firmware: { pcr: 0, allowed: [] } }))!, /no rule pins the code/);
});

test('rules that pin code pass: firmware, a boot-chain digest, Secure Boot with keys, PCR 0/2/4 values, generated policies', () => {
  assert.is(permissiveReason(base({ firmware: { pcr: 0, allowed: [{ crtmVersions: [], events: [] }] } })), undefined);
  assert.is(permissiveReason(base({ bootChain: { pcr: 4, stages: [{ role: 'kernel', allowed: [{ digest: 'ab'.repeat(32) }] }] } })), undefined);
  assert.is(permissiveReason(base({ secureBoot: { pcr: 7, enabled: true }, authorities: { pcr: 7, allowed: [{ sha256: 'cd'.repeat(32), variable: 'db' }] } })), undefined);
  assert.is(permissiveReason(base({ pcrValues: { 4: ['ef'.repeat(32)] } })), undefined);
  for (const n of ['uki-sb-on', 'uki-sb-off']) {
    assert.is(permissiveReason(generatePolicy(unverifiedLog(log(n)), { bank: 'sha256' })), undefined, n);
    assert.is(permissiveReason(generatePolicy(unverifiedLog(log(n)), { bank: 'sha256', allowAnyKernel: true, allowAnyCmdline: true })), undefined, `${n} allow-any`);
  }
});

test.run();
