import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLog, serialiseEventLog, setSecureBoot, setGrubCmdline, setDigests, EVENTLOGS } from './helpers.ts';
import { analyseBoot } from '../../src/measuredboot/bootstate.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
const extractBootState = (l: Parameters<typeof unverifiedLog>[0]) => analyseBoot(unverifiedLog(l));

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const A_NAME = 'keylime__keylime__test__data__create-mb-policy__binary_bios_measurements-secureboot';
const A_PATH = fileURLToPath(new URL(A_NAME, EVENTLOGS));
const A = readLog(A_NAME);
const stA = extractBootState(A);
const grubEvent = stA.apps.find((a) => a.role === 'bootloader')!.event;
const dir = mkdtempSync(join(tmpdir(), 'bootkey-policy-'));

function bootkey(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}
function tmp(name: string, data: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

const SB_OFF = tmp('sb-off.bin', serialiseEventLog(setSecureBoot(A, 0)));
const BAD_BOOT = tmp('bad.bin', serialiseEventLog(setDigests(setGrubCmdline(A, 'root=/dev/sda1 init=/bin/sh'), grubEvent, 'evil grub')));
const NEWER = tmp('newer.bin', serialiseEventLog(setGrubCmdline(A, stA.cmdlines[0].text!.replace('503.11.1', '503.12.1'))));

test('generate prints a policy on stdout; -o writes it to a file', () => {
  const r = bootkey('policy', 'generate', A_PATH);
  assert.is(r.code, 0, r.err);
  const p = JSON.parse(r.out);
  assert.is(p.version, 2);
  assert.ok(p.knownGood['4'], 'knownGood values of the PCRs it reads');
  assert.equal(p.pcrs, [0, 2, 4, 7]);
  const file = join(dir, 'gen.json');
  assert.is(bootkey('policy', 'generate', A_PATH, '-o', file, '--pcrs', '0,4,7', '--allow-any-cmdline').code, 0);
  const q = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(q.pcrs, [0, 4, 7]);
  assert.is(q.rules.kernelCmdline, undefined);
});

test('check: exit 0 on the known-good boot, 1 with one reason per line on a bad one', () => {
  const pol = tmp('p.json', bootkey('policy', 'generate', A_PATH).out);
  const ok = bootkey('policy', 'check', pol, A_PATH);
  assert.is(ok.code, 0, ok.out + ok.err);
  const bad = bootkey('policy', 'check', pol, BAD_BOOT);
  assert.is(bad.code, 1);
  const lines = bad.out.trim().split('\n');
  assert.is(lines[0], 'UNVERIFIED: no --pcrs given: the log is judged on its own word, not on what a TPM quoted');
  assert.match(lines[1], /^refused: POLICY: the boot does not match the policy: 3 rule\(s\) failed/);
  assert.match(lines[2], new RegExp(`^  boot-chain: PCR 4 event ${grubEvent}: EFI application \\\\EFI\\\\redhat\\\\grubx64\\.efi \\(bootloader\\) has digest`));
  assert.match(lines[3], /^  kernel-cmdline: PCR 8 event \d+: kernel command line \(grub\) is "root=\/dev\/sda1 init=\/bin\/sh", policy allows "/);
  assert.is(bad.err, '');
});

test('check --json: {pass, failures[{rule, pcr, event, expected, actual, message}]}', () => {
  const pol = tmp('pj.json', bootkey('policy', 'generate', A_PATH).out);
  const r = bootkey('policy', 'check', pol, SB_OFF, '--json');
  assert.is(r.code, 1);
  const j = JSON.parse(r.out);
  assert.is(j.pass, false);
  assert.equal(Object.keys(j.failures[0]).sort(), ['actual', 'event', 'expected', 'message', 'pcr', 'rule']);
  assert.equal([j.failures[0].rule, j.failures[0].pcr, j.failures[0].event], ['secure-boot', 7, stA.secureBoot.event]);
  assert.is(j.code, 'POLICY');
  assert.is(j.verified, false);
  const ok = JSON.parse(bootkey('policy', 'check', pol, A_PATH, '--json').out);
  assert.equal([ok.pass, ok.failures, ok.verified], [true, [], false]);
});

test('add-boot rewrites the policy in place; both boots pass', () => {
  const pol = tmp('pa.json', bootkey('policy', 'generate', A_PATH).out);
  assert.is(bootkey('policy', 'check', pol, NEWER).code, 1);
  const r = bootkey('policy', 'add-boot', pol, NEWER);
  assert.is(r.code, 0, r.err);
  assert.is(bootkey('policy', 'check', pol, NEWER).code, 0);
  assert.is(bootkey('policy', 'check', pol, A_PATH).code, 0);
  assert.is(JSON.parse(readFileSync(pol, 'utf8')).rules.kernelCmdline.allowed.length, 2);
});

test('add-boot refuses Secure Boot off (policy unchanged) unless --allow-secureboot-off', () => {
  const text = bootkey('policy', 'generate', A_PATH).out;
  const pol = tmp('ps.json', text);
  const r = bootkey('policy', 'add-boot', pol, SB_OFF);
  assert.is(r.code, 1);
  assert.match(r.err, /^bootkey: the new boot has Secure Boot off .*--allow-secureboot-off.*\n$/);
  assert.is(readFileSync(pol, 'utf8'), text);
  assert.is(bootkey('policy', 'add-boot', pol, SB_OFF, '--allow-secureboot-off').code, 0);
  assert.is(bootkey('policy', 'check', pol, SB_OFF).code, 0);
});

test('bad inputs: one bootkey: line on stderr, exit 1', () => {
  const pol = tmp('pb.json', bootkey('policy', 'generate', A_PATH).out);
  const malformed = tmp('malformed.json', JSON.stringify({ version: 1, bank: 'sha256', pcrs: [0], options: { allowAnyCmdline: false, allowAnyKernel: false }, rules: { secureBoot: { pcr: 7, enabled: 'yes' } } }));
  for (const [args, re] of [
    [['policy', 'check', malformed, A_PATH], /rules\.secureBoot\.enabled/],
    [['policy', 'check', pol, join(dir, 'missing.bin')], /cannot read event log/],
    [['policy', 'check', tmp('notjson.json', '{'), A_PATH], /not valid JSON/],
  ] as [string[], RegExp][]) {
    const r = bootkey(...args);
    assert.is(r.code, 1, args.join(' '));
    assert.is(r.out, '');
    assert.is(r.err.split('\n').filter(Boolean).length, 1, r.err);
    assert.match(r.err, /^bootkey: /);
    assert.match(r.err, re);
  }
});

test('check: a log that does not parse is the server\'s EVENTLOG refusal, on stdout, exit 1', () => {
  const pol = tmp('pe.json', bootkey('policy', 'generate', A_PATH).out);
  const r = bootkey('policy', 'check', pol, tmp('junk.bin', 'bogus invalid event log file here'), '--json');
  assert.is(r.code, 1);
  const j = JSON.parse(r.out);
  assert.equal([j.pass, j.code], [false, 'EVENTLOG']);
  assert.match(j.message, /at byte 0/);
});

test('usage errors exit 2; --help exits 0 for each command', () => {
  assert.is(bootkey('policy', 'check', A_PATH).code, 2);
  assert.is(bootkey('policy', 'generate', A_PATH, '--pcrs', '0,99').code, 2);
  assert.is(bootkey('policy', 'generate', A_PATH, '--bank', 'md5').code, 2);
  assert.is(bootkey('policy', 'generate', A_PATH, '--bogus').code, 2);
  for (const c of ['generate', 'add-boot', 'check', 'show-state']) {
    const r = bootkey('policy', c, '--help');
    assert.is(r.code, 0, c);
    assert.ok(r.out.startsWith(`usage: bootkey policy ${c} `), c);
  }
});

test('show-state prints the boot state; --json is the BootState object', () => {
  const r = bootkey('policy', 'show-state', A_PATH);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /^Secure Boot: on \(event \d+, SecureBoot = 01\)$/m);
  assert.match(r.out, /^app: event \d+, bootloader, \\EFI\\redhat\\grubx64\.efi \(path unverified\), sha256:[0-9a-f]{64}$/m);
  assert.match(r.out, /^UNVERIFIED: /m);
  const j = JSON.parse(bootkey('policy', 'show-state', SB_OFF, '--json').out);
  assert.is(j.secureBoot.enabled, false);
  assert.is(j.apps.length, 3);
});

test.run();
