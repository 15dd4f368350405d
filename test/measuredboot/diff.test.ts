import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { align, diffBoot, MAX_ALIGN_CELLS } from '../../src/measuredboot/diff.ts';
import { generatePolicy, checkPolicy, type Policy } from '../../src/measuredboot/policy.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { readLog, QEMU } from './helpers.ts';

const SDBOOT = readLog('sdboot-sb-off.bin', QEMU); // systemd-boot → kernel
const UKI = readLog('uki-sb-off.bin', QEMU); // UKI → kernel (same kernel digest)

test('align: a diff of lines (a changed line, an added one)', () => {
  const ops = align(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd', 'e'], (x, y) => x === y).map((o) => o.op);
  assert.equal(ops, ['same', 'changed', 'same', 'same', 'added']);
  const ops2 = align(['shim', 'grub', 'kernel'], ['grub', 'kernel'], (x, y) => x === y);
  assert.equal(ops2.map((o) => o.op), ['removed', 'same', 'same']);
  assert.equal(ops2.filter((o) => o.op === 'same').map((o) => [o.ai, o.bi]), [[1, 0], [2, 1]], 'grub and kernel compared with their own counterparts');
});

test('align: every element appears once, in order, and "same" pairs are equal (property)', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 30 }), fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 30 }), (a, b) => {
    const ops = align(a, b, (x, y) => x === y);
    const ais = ops.flatMap((o) => ('ai' in o ? [o.ai] : []));
    const bis = ops.flatMap((o) => ('bi' in o ? [o.bi] : []));
    assert.equal(ais, a.map((_, i) => i));
    assert.equal(bis, b.map((_, i) => i));
    for (const o of ops) if (o.op === 'same') assert.is(o.a, o.b);
    // LCS length: the number of same pairs is maximal (checked against a plain DP).
    const L: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
    for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--) L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    assert.is(ops.filter((o) => o.op === 'same').length, L[0][0]);
  }), { numRuns: 300 });
});

test('align: inputs too large for the DP are paired by position, bounded', () => {
  const n = Math.ceil(Math.sqrt(MAX_ALIGN_CELLS)) + 10;
  const a = Array.from({ length: n }, (_, i) => `a${i}`);
  const b = Array.from({ length: n }, (_, i) => `b${i}`);
  const t0 = Date.now();
  const ops = align(a, b, (x, y) => x === y);
  assert.ok(Date.now() - t0 < 2000);
  assert.is(ops.length, n);
  assert.ok(ops.every((o) => o.op === 'changed'));
});

function withExtraFirstStage(p: Policy): Policy {
  const q = structuredClone(p);
  q.rules.bootChain!.stages.unshift({ role: 'shim', allowed: [{ digest: 'ab'.repeat(32), path: '\\EFI\\BOOT\\shimx64.efi' }] });
  delete q.knownGood;
  delete q.knownGoodRules;
  return q;
}

test('policy check: a chain one image shorter than the policy names the missing image, not every later one (issue 13)', () => {
  const p = withExtraFirstStage(generatePolicy(unverifiedLog(SDBOOT)));
  const r = checkPolicy(p, unverifiedLog(SDBOOT));
  assert.is(r.pass, false, 'the decision is unchanged: by position this boot fails');
  const chain = r.failures.filter((f) => f.rule === 'boot-chain');
  assert.is(chain.length, 1, chain.map((f) => f.message).join('\n'));
  assert.match(chain[0].message, /did not load the policy's shim \(\\EFI\\BOOT\\shimx64\.efi\)/);
  assert.not.match(chain[0].message, /\(bootloader\) has digest/, 'systemd-boot is not reported as a mismatching image');
});

test('policy check: an image replaced in place is named with its own stage (systemd-boot → UKI)', () => {
  const p = generatePolicy(unverifiedLog(SDBOOT));
  const r = checkPolicy(p, unverifiedLog(UKI));
  const chain = r.failures.filter((f) => f.rule === 'boot-chain');
  assert.is(r.pass, false);
  assert.is(chain.length, 1, chain.map((f) => f.message).join('\n'));
  assert.match(chain[0].message, /EFI application \\EFI\\BOOT\\BOOTX64\.EFI \(bootloader\) has digest 680da84c/);
});

test('policy check: an extra image in the middle is "unexpected … after the policy\'s <role>"', () => {
  const p = generatePolicy(unverifiedLog(SDBOOT));
  const q = structuredClone(p);
  q.rules.bootChain!.stages.splice(0, 1); // the policy lacks systemd-boot: the boot has one image more, at the front
  delete q.knownGood;
  delete q.knownGoodRules;
  const r = checkPolicy(q, unverifiedLog(SDBOOT));
  const chain = r.failures.filter((f) => f.rule === 'boot-chain');
  assert.is(chain.length, 1, chain.map((f) => f.message).join('\n'));
  assert.match(chain[0].message, /^PCR 4 event \d+: unexpected EFI application \\EFI\\BOOT\\BOOTX64\.EFI .*before the policy's kernel/);
});

test('policy check: the decision is still positional (same boots pass and fail)', () => {
  const p = generatePolicy(unverifiedLog(SDBOOT));
  assert.ok(checkPolicy(p, unverifiedLog(SDBOOT)).pass);
  // An optional stage skipped before the end: aligned, every image matches; by position it fails, as before.
  const q = structuredClone(p);
  q.rules.bootChain!.stages.splice(1, 0, { role: 'application', optional: true, allowed: [{ digest: 'cd'.repeat(32) }] });
  delete q.knownGood;
  delete q.knownGoodRules;
  const r = checkPolicy(q, unverifiedLog(SDBOOT));
  assert.is(r.pass, false);
  assert.match(r.failures.find((f) => f.rule === 'boot-chain')!.message, /skipped the optional application stage/);
  // The optional stage at the end: passes, as before.
  const e = structuredClone(p);
  e.rules.bootChain!.stages.push({ role: 'application', optional: true, allowed: [{ digest: 'cd'.repeat(32) }] });
  delete e.knownGood;
  delete e.knownGoodRules;
  assert.ok(checkPolicy(e, unverifiedLog(SDBOOT)).pass);
});

test('diffBoot: the UKI boot against the systemd-boot policy, event by event', () => {
  const p = generatePolicy(unverifiedLog(SDBOOT));
  const d = diffBoot(p, unverifiedLog(UKI));
  assert.is(d.verified, false);
  const pcr4 = d.sections.find((s) => s.title.startsWith('PCR 4'))!;
  assert.equal(pcr4.rows.map((r) => r.status), ['changed', 'same']);
  assert.match(pcr4.rows[0].expected!.label, /^bootloader/);
  assert.ok(pcr4.rows[0].actual!.value.startsWith('680da84c'));
  assert.ok(d.failures.some((f) => f.rule === 'boot-chain'));
  const pcr0 = d.sections.find((s) => s.title.startsWith('PCR 0'))!;
  assert.ok(pcr0.rows.length > 0 && pcr0.rows.every((r) => r.status === 'same'), 'same firmware');
});

test.run();
