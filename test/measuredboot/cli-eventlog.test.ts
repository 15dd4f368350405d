/** `bootkey eventlog replay|show`: stdout JSON, exit statuses 0/1/2 and the single `bootkey:` stderr line. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runCli as run, oneErrorLine } from '../helpers/cli.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = ROOT + 'test/data/eventlogs/';
const GDC = DIR + 'google__go-tpm-tools__internal__test__eventlogs__gdc-host.bin';
const RHEL = DIR + 'google__go-tpm-tools__internal__test__eventlogs__rhel8-uefi.bin';
const LEGACY = DIR + 'google__go-tpm-tools__internal__test__eventlogs__debian-10.bin';

test('replay --json: format, events (header included), every bank and PCR', () => {
  const r = run(['eventlog', 'replay', RHEL, '--json']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(Object.keys(j), ['format', 'events', 'pcrs']);
  assert.is(j.format, 'crypto-agile');
  assert.is(j.events, 83);
  assert.equal(Object.keys(j.pcrs), ['sha1', 'sha256', 'sha384']);
  const expected = JSON.parse(readFileSync(RHEL + '.expected.json', 'utf8'));
  assert.ok(Object.keys(expected).length >= 2);
  for (const bank of Object.keys(expected)) for (const [i, v] of Object.entries(expected[bank])) assert.is(j.pcrs[bank][i], v, `${bank}:${i}`);
  for (const v of Object.values(j.pcrs.sha256)) assert.match(v as string, /^[0-9a-f]{64}$/);
});

test('replay --json: StartupLocality-initialised PCR0 and legacy format', () => {
  const g = JSON.parse(run(['eventlog', 'replay', GDC, '--json']).stdout);
  assert.is(g.pcrs.sha256['0'], JSON.parse(readFileSync(GDC + '.expected.json', 'utf8')).sha256['0']);
  const l = run(['eventlog', 'replay', LEGACY, '--json']);
  const j = JSON.parse(l.stdout);
  assert.is(j.format, 'sha1-legacy');
  assert.equal(Object.keys(j.pcrs), ['sha1']);
});

test('replay reads stdin with "-" and prints a table without --json', () => {
  const r = run(['eventlog', 'replay', '-'], readFileSync(GDC));
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /crypto-agile, 159 events/);
  assert.match(r.stdout, /PCR  0: dab77c454bd12c27ff6b6ce1f9adca90b7a330c1cef0b5cd01cb89fb3bd0dffa/);
});

test('show --json: decoded events with hex buffers and decimal bigints', () => {
  const r = run(['eventlog', 'show', RHEL, '--json']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.events.length, 83);
  const img = j.events.find((e: { decoded: { kind: string } }) => e.decoded.kind === 'efi-image');
  assert.match(img.decoded.imageLength, /^\d+$/);
  assert.match(img.decoded.devicePath, /^PciRoot\(0x0\)/);
  assert.match(img.digests.sha256, /^[0-9a-f]{64}$/);
  const sb = j.events.find((e: { decoded: { name?: string } }) => e.decoded.name === 'SecureBoot');
  assert.is(sb.decoded.data, '01');
  assert.is(sb.digestCheck, 'match');
});

test('show: readable listing', () => {
  const r = run(['eventlog', 'show', RHEL]);
  assert.is(r.status, 0);
  assert.match(r.stdout, /#3 PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG/);
  assert.match(r.stdout, /SecureBoot \{8be4df61-93ca-11d2-aa0d-00e098032b8c\} = 1/);
  assert.match(r.stdout, /\\EFI\\redhat\\shimx64\.efi/);
});

test('invalid input: exit 1, one bootkey: line with the byte offset', () => {
  const empty = run(['eventlog', 'replay', '-', '--json'], Buffer.alloc(0));
  assert.is(empty.status, 1);
  assert.is(empty.stdout, '');
  oneErrorLine(empty.stderr, /empty/);
  const bogus = run(['eventlog', 'replay', DIR + 'keylime__keylime__test__data__create-mb-policy__binary_bios_measurements-bogus']);
  assert.is(bogus.status, 1);
  oneErrorLine(bogus.stderr, /at byte 0/);
  const trunc = run(['eventlog', 'show', '-'], readFileSync(RHEL).subarray(0, 20000));
  assert.is(trunc.status, 1);
  oneErrorLine(trunc.stderr, /event \d+ at byte \d+: .*(runs past|needs)/);
  const missing = run(['eventlog', 'show', '/nonexistent/log']);
  assert.is(missing.status, 1);
  oneErrorLine(missing.stderr, /cannot read/);
});

test('usage: exit 2; --help exits 0', () => {
  const r = run(['eventlog', 'replay']);
  assert.is(r.status, 2);
  oneErrorLine(r.stderr, /expected 1 argument/);
  assert.is(run(['eventlog', 'replay', RHEL, '--bogus']).status, 2);
  for (const sub of ['replay', 'show']) {
    const h = run(['eventlog', sub, '--help']);
    assert.is(h.status, 0);
    assert.match(h.stdout, new RegExp(`^usage: bootkey eventlog ${sub}`));
  }
});

test.run();
