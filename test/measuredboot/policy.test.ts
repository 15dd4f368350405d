import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { generatePolicy as gp, addBoot as ab, checkPolicy as cp, DEFAULT_PCRS, type Policy, type PolicyOptions, type AddBootOptions } from '../../src/measuredboot/policy.ts';
import type { EventLog } from '../../src/measuredboot/types.ts';
import { parsePolicy } from '../../src/measuredboot/policy-load.ts';
import { PolicyError } from '../../src/measuredboot/policy-errors.ts';
import { analyseBoot } from '../../src/measuredboot/bootstate.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
const extractBootState = (l: Parameters<typeof unverifiedLog>[0]) => analyseBoot(unverifiedLog(l));
// These tests judge logs on their own word (no quote): unverifiedLog. verdict.test.ts binds to quotes.
const generatePolicy = (l: EventLog, o?: PolicyOptions) => gp(unverifiedLog(l), o);
const checkPolicy = (p: Policy, l: EventLog) => cp(p, unverifiedLog(l));
const addBoot = (p: Policy, l: EventLog, o?: AddBootOptions) => ab(p, unverifiedLog(l), o);
import { parseEventLog } from '../../src/measuredboot/eventlog.ts';
import { readLog, serialiseEventLog, QEMU, setSecureBoot, setGrubCmdline, setDigests, findEvent, withEvent, digestsFor } from './helpers.ts';

// RHEL 9 VM, sha256 only, Secure Boot on, shim + grub + kernel.
const A_NAME = 'keylime__keylime__test__data__create-mb-policy__binary_bios_measurements-secureboot';
const A = readLog(A_NAME);
const stA = extractBootState(A);
const grubApp = stA.apps.find((a) => a.role === 'bootloader')!;
const kernelApp = stA.apps.find((a) => a.role === 'kernel')!;
const cmdA = stA.cmdlines[0];
const sbEvent = stA.secureBoot.event!;

function throwsCode(fn: () => unknown, code: string, msg?: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, PolicyError);
    assert.is((e as PolicyError).code, code);
    if (msg) assert.match((e as Error).message, msg);
    return;
  }
  assert.unreachable(`expected PolicyError ${code}`);
}

test('the base log is what the tests assume', () => {
  assert.is(stA.secureBoot.enabled, true);
  assert.equal(stA.apps.map((a) => a.role), ['shim', 'bootloader', 'kernel']);
  assert.is(grubApp.path, '\\EFI\\redhat\\grubx64.efi');
  assert.match(cmdA.text!, /^\(hd0,gpt2\)\/vmlinuz-5\.14\.0-503\.11\.1\.el9_5\.x86_64 root=/);
});

test('generate: defaults, readable structure, and the log passes its own policy', () => {
  const p = generatePolicy(A);
  assert.equal(p.pcrs, [...DEFAULT_PCRS]);
  assert.is(p.bank, 'sha256');
  assert.equal(p.rules.bootChain!.stages.map((s) => [s.role, s.allowed[0].path ?? null]), [['shim', '\\EFI\\redhat\\shimx64.efi'], ['bootloader', '\\EFI\\redhat\\grubx64.efi'], ['kernel', null]]);
  assert.equal(p.rules.secureBoot, { pcr: 7, enabled: true });
  assert.is(p.rules.keys!.dbxMustContain.length, 371);
  assert.ok(p.rules.keys!.db[0].subjects.some((s) => s.includes('Microsoft Corporation UEFI CA 2011')));
  assert.equal(p.rules.kernelCmdline!.allowed, [{ source: 'grub', pcr: 8, text: cmdA.text }]);
  assert.equal(Object.keys(p.knownGood!), ['0', '2', '4', '5', '7', '8'], 'the PCRs it reads, each with its known-good value');
  assert.equal(Object.keys(p.rules.pcrValues!), ['2']);
  assert.is(p.rules.bootChain!.requireExitBootServices, true, 'the boot logged ExitBootServices in PCR 5');
  const r = checkPolicy(p, A);
  assert.equal(r.failures, []);
  assert.is(r.pass, true);
});

test('Secure Boot turned off: refused by the secure-boot rule with PCR, event and values', () => {
  const r = checkPolicy(generatePolicy(A), setSecureBoot(A, 0));
  assert.is(r.pass, false);
  const f = r.failures.find((x) => x.rule === 'secure-boot')!;
  assert.equal([f.pcr, f.event, f.expected, f.actual], [7, sbEvent, 'on', 'off']);
  assert.is(f.message, `PCR 7 event ${sbEvent}: Secure Boot is off (SecureBoot = 00), policy requires it on`);
});

test('another kernel command line: refused, naming both command lines', () => {
  const evil = cmdA.text!.replace(' ro ', ' ro init=/bin/sh ');
  const r = checkPolicy(generatePolicy(A), setGrubCmdline(A, evil));
  // grub measured the line twice (`linux` command and kernel_cmdline): each is checked.
  assert.ok(r.failures.length >= 1 && r.failures.every((f) => f.rule === 'kernel-cmdline'));
  const f = r.failures.find((x) => x.event === cmdA.event)!;
  assert.equal([f.pcr, f.event, f.actual, f.expected], [8, cmdA.event, evil, cmdA.text]);
  assert.ok(f.message.startsWith(`PCR 8 event ${cmdA.event}: kernel command line (grub) is "${evil}", policy allows "`));
});

test('another grub binary: refused by the boot-chain rule with path and both digests', () => {
  const r = checkPolicy(generatePolicy(A), setDigests(A, grubApp.event, 'another grub'));
  assert.equal(r.failures.map((f) => f.rule), ['boot-chain']);
  const f = r.failures[0];
  assert.is(f.event, grubApp.event);
  assert.is(f.pcr, 4);
  assert.is(f.expected, grubApp.digests.sha256);
  assert.is.not(f.actual, grubApp.digests.sha256);
  assert.match(f.message, new RegExp(`^PCR 4 event ${grubApp.event}: EFI application \\\\EFI\\\\redhat\\\\grubx64\\.efi \\(bootloader\\) has digest ${f.actual.slice(0, 12)}…, policy allows ${f.expected.slice(0, 12)}…$`));
});

test('all failures are reported, not just the first', () => {
  const bad = setDigests(setGrubCmdline(setSecureBoot(A, 0), 'root=/dev/sda1 init=/bin/sh'), kernelApp.event, 'another kernel');
  const rules = checkPolicy(generatePolicy(A), bad).failures.map((f) => f.rule);
  assert.equal([...new Set(rules)].sort(), ['boot-chain', 'kernel-cmdline', 'secure-boot']);
});

test('a different real machine fails with reasons for firmware, boot chain, keys, dbx and command line', () => {
  const other = readLog('keylime__keylime__test__data__mb_log.b64.bin');
  const r = checkPolicy(generatePolicy(A), other);
  const rules = new Set(r.failures.map((f) => f.rule));
  for (const rule of ['firmware', 'boot-chain', 'KEK', 'db', 'dbx', 'authority', 'kernel-cmdline', 'pcr-value']) assert.ok(rules.has(rule), rule);
  assert.ok(r.failures.every((f) => f.message.startsWith(`PCR ${f.pcr}`)));
});

test('add-boot: a staged kernel + command line update makes both boots pass', () => {
  const newer = setDigests(setGrubCmdline(A, cmdA.text!.replace('503.11.1', '503.12.1')), kernelApp.event, 'newer kernel');
  const p = generatePolicy(A);
  assert.is(checkPolicy(p, newer).pass, false);
  const merged = addBoot(p, newer);
  assert.is(checkPolicy(merged, A).pass, true);
  assert.is(checkPolicy(merged, newer).pass, true);
  assert.is(merged.rules.bootChain!.stages[2].allowed.length, 2);
  assert.is(merged.rules.bootChain!.stages[1].allowed.length, 1, 'grub unchanged: one digest');
  assert.is(merged.rules.kernelCmdline!.allowed.length, 2);
  assert.is(p.rules.kernelCmdline!.allowed.length, 1, 'addBoot does not modify its input');
});

test('add-boot: Secure Boot on → off is refused unless allowed explicitly', () => {
  const off = setSecureBoot(A, 0);
  const p = generatePolicy(A);
  throwsCode(() => addBoot(p, off), 'SECUREBOOT_DOWNGRADE', /Secure Boot off .*--allow-secureboot-off/);
  const relaxed = addBoot(p, off, { allowSecureBootOff: true });
  assert.is(relaxed.rules.secureBoot!.enabled, false);
  assert.is(checkPolicy(relaxed, off).pass, true);
});

test('dbx superset rule: a missing revocation fails the check and add-boot refuses it', () => {
  const p = generatePolicy(A);
  p.rules.keys!.dbxMustContain.push('sha256:' + 'ab'.repeat(32));
  delete p.knownGood; // a hand-edited rule: the known-good PCR 7 value would pass it as a whole
  const f = checkPolicy(p, A).failures;
  assert.equal(f.map((x) => [x.rule, x.pcr, x.event]), [['dbx', 7, stA.dbx!.event]]);
  assert.match(f[0].message, /lacks 1 of the 372 revocations the policy requires \(e\.g\. sha256:abababababab…\)/);
  throwsCode(() => addBoot(p, A), 'DBX_ROLLBACK');
});

test('--allow-any-cmdline and --allow-any-kernel', () => {
  const p = generatePolicy(A, { allowAnyCmdline: true, allowAnyKernel: true });
  assert.is(p.rules.kernelCmdline, undefined);
  assert.is(p.rules.bootChain!.stages[2].allowAny, true);
  assert.is(checkPolicy(p, setDigests(setGrubCmdline(A, 'anything'), kernelApp.event, 'other kernel')).pass, true);
  assert.is(checkPolicy(p, setDigests(A, grubApp.event, 'other grub')).pass, false, 'grub is still pinned');
  const k = generatePolicy(A, { allowAnyKernel: true });
  assert.ok(k.rules.kernelCmdline!.allowed[0].text!.startsWith('root=/dev/mapper/rhel_rhel--9-root ro'), 'image path dropped');
  assert.is(checkPolicy(k, setGrubCmdline(A, cmdA.text!.replace('503.11.1', '600.1.1'))).pass, true);
});

test('--pcrs pins the PCRs without a structured rule; a changed PCR 1 event fails pcr-value', () => {
  const p = generatePolicy(A, { pcrs: [1, 4] });
  assert.equal(p.pcrs, [1, 4]);
  assert.equal(Object.keys(p.rules).sort(), ['bootChain', 'kernelCmdline', 'pcrValues']);
  const ev1 = findEvent(A, (e) => e.pcr === 1 && e.type !== 3, 'PCR 1 event');
  const f = checkPolicy(p, withEvent(A, ev1.index, (e) => ({ digests: digestsFor(e, Buffer.from('x')) }))).failures;
  assert.equal(f.map((x) => [x.rule, x.pcr]), [['pcr-value', 1]]);
  assert.match(f[0].message, /^PCR 1: sha256 value is [0-9a-f]{12}…, policy allows [0-9a-f]{12}… \(PCR 1 events: /);
  throwsCode(() => generatePolicy(A, { pcrs: [24] }), 'BAD_OPTION');
});

test('banks: a missing bank is refused when generating and fails the check', () => {
  throwsCode(() => generatePolicy(A, { bank: 'sha1' }), 'NO_BANK', /sha1/);
  const p = generatePolicy(A);
  const f = checkPolicy({ ...p, bank: 'sha384' }, A).failures;
  assert.equal(f.map((x) => x.rule), ['bank']);
});

test('a log with an untrustworthy structure in a PCR the policy reads: generate refuses; elsewhere it does not matter', () => {
  const dup = readLog('google__go-eventlog__testdata__eventlogs__ccel__cos-113-intel-tdx-dupe-separator-unpadded.bin');
  throwsCode(() => generatePolicy(dup, { pcrs: [0, 1, 2, 4, 7], bank: 'sha384', allowAnyCmdline: true }), 'BAD_LOG', /PCR 1 event 16: second separator/);
  assert.ok(generatePolicy(dup, { bank: 'sha384', allowAnyCmdline: true }), 'PCR 1 is not read by the default policy');
  const p = generatePolicy(readLog('google__go-eventlog__testdata__eventlogs__ccel__cos-113-intel-tdx.bin'), { pcrs: [0, 1, 2, 4, 7], bank: 'sha384', allowAnyCmdline: true });
  const f = checkPolicy(p, dup).failures.find((x) => x.pcr === 1)!;
  assert.is(f.rule, 'pcr-value');
});

test('log-structure: an event of unexpected type in PCR 7 is refused when PCR 7 is read by structure, not when it is known-good', () => {
  const on = readLog('uki-sb-on.bin', QEMU);
  const p = generatePolicy(on);
  const sb = extractBootState(on).secureBoot.event!;
  const relabelled = parseEventLog(serialiseEventLog({ ...on, events: on.events.map((e) => (e.index === sb ? { ...e, type: 0x80000002 } : e)) }));
  assert.is(checkPolicy(p, relabelled).pass, true, 'the digest sequence of PCR 7 is a known-good one: labels do not matter');
  const structural = structuredClone(p);
  delete structural.knownGood;
  const r = checkPolicy(structural, relabelled);
  assert.is(r.pass, false);
  assert.ok(r.failures.some((f) => f.rule === 'log-structure' && f.pcr === 7 && f.event === sb && f.actual === 'UNEXPECTED_EVENT'), JSON.stringify(r.failures));
});

test('QEMU UKI logs: SB on policy refuses the SB off boot; a new UKI with another command line fails; add-boot accepts it', () => {
  const on = readLog('uki-sb-on.bin', QEMU), off = readLog('uki-sb-off.bin', QEMU), off2 = readLog('uki-sb-off-cmdline2.bin', QEMU);
  assert.ok(checkPolicy(generatePolicy(on), off).failures.some((f) => f.rule === 'secure-boot' && f.event === 4));
  const p = generatePolicy(off);
  const rules = checkPolicy(p, off2).failures.map((f) => `${f.rule}:${f.pcr}`);
  assert.equal(rules, ['boot-chain:4', 'kernel-cmdline:9']);
  const merged = addBoot(p, off2);
  assert.is(checkPolicy(merged, off).pass, true);
  assert.is(checkPolicy(merged, off2).pass, true);
});

test('parsePolicy: round trip, and malformed files refused naming the field', () => {
  const p = generatePolicy(A);
  assert.equal(parsePolicy(JSON.stringify(p)), JSON.parse(JSON.stringify(p)));
  const bad = (mut: (j: any) => void, re: RegExp) => {
    const j = JSON.parse(JSON.stringify(p));
    mut(j);
    throwsCode(() => parsePolicy(JSON.stringify(j)), 'BAD_POLICY', re);
  };
  throwsCode(() => parsePolicy('{"version": 1,'), 'BAD_POLICY', /not valid JSON/);
  bad((j) => (j.version = 3), /^policy: version: unsupported version 3/);
  bad((j) => (j.rules.bootChain.stages[1].allowed[0].digest = 'xyz'), /rules\.bootChain\.stages\[1\]\.allowed\[0\]\.digest: expected a sha256 digest/);
  bad((j) => (j.rules.secureBoot.enabled = 'yes'), /rules\.secureBoot\.enabled: expected true or false/);
  bad((j) => (j.rules.bogus = {}), /rules\.bogus: unknown field/);
  bad((j) => delete j.bank, /bank: missing/);
  bad((j) => (j.rules.kernelCmdline.allowed[0] = { source: 'grub' }), /rules\.kernelCmdline\.allowed\[0\]: needs "text" or "digest"/);
});

test('schema/policy.schema.json: draft 2020-12 and describes every field a generated policy has', () => {
  const schema = JSON.parse(readFileSync(new URL('../../schema/policy.schema.json', import.meta.url), 'utf8'));
  assert.is(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  const p: Policy = addBoot(generatePolicy(A, { pcrs: [0, 1, 2, 4, 7] }), setGrubCmdline(A, 'x'));
  for (const k of Object.keys(p)) assert.ok(k in schema.properties, k);
  for (const k of Object.keys(p.rules)) assert.ok(k in schema.properties.rules.properties, `rules.${k}`);
  assert.equal(schema.properties.version, { enum: [1, 2] });
});

test.run();
