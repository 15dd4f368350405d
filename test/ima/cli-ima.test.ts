/** `bootkey ima show|replay`: stdout JSON, exit statuses 0/1/2 and the single `bootkey:` stderr line. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { K61, K612, pcrsOf } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TMP = mkdtempSync(join(tmpdir(), 'bk-ima-cli-'));

function run(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneErrorLine(stderr: string, re: RegExp) {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.is(lines.length, 1, stderr);
  assert.match(lines[0], /^bootkey: /);
  assert.match(lines[0], re);
}

test('replay --json: exactly {"entries", "pcrs": {"sha1": {"10"}, "sha256": {"10"}}}, equal to the TPM\'s PCR 10', () => {
  for (const f of [K61 + 'binary_runtime_measurements', K612 + 'binary_runtime_measurements_sha256', K612 + 'ascii_runtime_measurements_sha256']) {
    const r = run(['ima', 'replay', f, '--json']);
    assert.is(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(Object.keys(j), ['entries', 'pcrs']);
    assert.is(j.entries, 11);
    assert.equal(Object.keys(j.pcrs), ['sha1', 'sha256']);
    const p = pcrsOf(f.startsWith(K61) ? K61 : K612);
    assert.equal(j.pcrs, { sha1: { '10': p.get('sha1')!.get(10)!.toString('hex') }, sha256: { '10': p.get('sha256')!.get(10)!.toString('hex') } });
  }
});

test('replay reads stdin ("-") and infers the bank of a binary list; plain text without --json', () => {
  const r = run(['ima', 'replay', '-'], readFileSync(K612 + 'binary_runtime_measurements_sha256'));
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /format: binary, bank: sha256, 11 entries/);
  assert.match(r.stdout, new RegExp(`sha256 +PCR 10: ${pcrsOf(K612).get('sha256')!.get(10)!.toString('hex')}`));
});

test('replay --pcrs (tpm2_pcrread YAML and bootkey JSON): boot_aggregate and PCR 10 ok, exit 0', () => {
  for (const pcrs of [K61 + 'pcrs.yaml', K61 + 'pcrs.json']) {
    const r = run(['ima', 'replay', K61 + 'ascii_runtime_measurements', '--pcrs', pcrs, '--json']);
    assert.is(r.status, 0, r.stdout + r.stderr);
    const j = JSON.parse(r.stdout);
    assert.ok(j.check.ok);
    assert.ok(j.check.bootAggregate.ok);
    assert.is(j.check.bound, 11);
    assert.is(j.check.firstDiffering, null);
    assert.ok(j.check.pcr10.sha256.ok && j.check.pcr10.sha1.ok);
  }
});

test('replay --pcrs names the FIRST entry that differs: an altered path (hash kept), exit 1', () => {
  const b = Buffer.from(readFileSync(K61 + 'binary_runtime_measurements'));
  b.write('/data/xx', b.indexOf('/data/ng'), 'latin1');
  const f = join(TMP, 'binary_runtime_measurements');
  writeFileSync(f, b);
  const r = run(['ima', 'replay', f, '--pcrs', K61 + 'pcrs.json', '--json']);
  assert.is(r.status, 1);
  const j = JSON.parse(r.stdout);
  assert.not.ok(j.check.ok);
  assert.is(j.check.firstDiffering.index, 3);
  assert.is(j.check.firstDiffering.path, '/data/xx');
  assert.match(j.check.firstDiffering.reason, /altered/);
  const t = run(['ima', 'replay', f, '--pcrs', K61 + 'pcrs.json']);
  assert.is(t.status, 1);
  assert.match(t.stdout, /first differing entry: #3 "\/data\/xx"/);
});

test('replay --pcrs: entries past PCR 10 are named (the first of them); another boot\'s PCRs fail boot_aggregate', () => {
  // The 6.1 list + the first entries of... a longer list: append the 6.12 list's last entry bytes.
  const a = readFileSync(K61 + 'binary_runtime_measurements');
  const extra = readFileSync(K612 + 'binary_runtime_measurements');
  const f = join(TMP, 'longer_binary_runtime_measurements');
  writeFileSync(f, Buffer.concat([a, extra.subarray(extra.length - 95)]));
  const r = run(['ima', 'replay', f, '--bank', 'sha1', '--pcrs', K61 + 'pcrs.json', '--json']);
  assert.is(r.status, 1, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.entries, 12);
  assert.is(j.check.bound, 11);
  assert.is(j.check.firstDiffering.index, 11);
  assert.match(j.check.message, /entry 11 and the 0 after it are not in it/);
  // The two captures booted the same firmware (same PCRs 0-9): the 6.1 list with the 6.12 machine's
  // PCRs passes boot_aggregate but not PCR 10.
  const other = run(['ima', 'replay', K61 + 'binary_runtime_measurements', '--pcrs', K612 + 'pcrs.json', '--json']);
  assert.is(other.status, 1);
  const o = JSON.parse(other.stdout);
  assert.ok(o.check.bootAggregate.ok);
  assert.match(o.check.message, /do not replay/);
  // Another boot (PCR 4 changed): boot_aggregate fails, PCR 10 still binds.
  const j2 = JSON.parse(readFileSync(K61 + 'pcrs.json', 'utf8'));
  j2.sha256['4'] = '44'.repeat(32);
  const p2 = join(TMP, 'pcrs-other-boot.json');
  writeFileSync(p2, JSON.stringify(j2));
  const ob = run(['ima', 'replay', K61 + 'binary_runtime_measurements', '--pcrs', p2, '--json']);
  assert.is(ob.status, 1);
  const b2 = JSON.parse(ob.stdout);
  assert.not.ok(b2.check.bootAggregate.ok);
  assert.match(b2.check.bootAggregate.reason, /is not sha256 PCRs 0-9 of this boot/);
  assert.is(b2.check.bound, 11);
});

test('show --json: decoded fields of every template; plain text marks the violation', () => {
  const r = run(['ima', 'show', K61 + 'binary_runtime_measurements', '--json']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal([j.format, j.bank, j.count, j.unknownTemplates, j.violations], ['binary', 'sha1', 11, 0, 1]);
  assert.is(j.entries[1].templateName, 'ima-buf');
  assert.match(j.entries[1].buf, /^3082/);
  assert.is(j.entries[6].digestAlgo, 'sha1');
  assert.is(j.entries[8].templateHashCheck, 'violation');
  assert.is(j.entries[2].templateHashCheck, 'ok');
  const t = run(['ima', 'show', K61 + 'ascii_runtime_measurements']);
  assert.match(t.stdout, /#8 PCR 10 ima-sig 0{40} \(line 9\) \[VIOLATION\]/);
});

test('errors: a bad list is one bootkey: line with the offset (exit 1); bad usage exit 2; --help exit 0', () => {
  const f = join(TMP, 'garbage');
  writeFileSync(f, Buffer.from([10, 0, 0, 0, 1, 2, 3]));
  const r = run(['ima', 'replay', f]);
  assert.is(r.status, 1);
  oneErrorLine(r.stderr, /IMA list: .*at byte \d+/);
  const a = run(['ima', 'show', '-'], Buffer.from('10 zz ima-ng x y\n'));
  assert.is(a.status, 1);
  oneErrorLine(a.stderr, /line 1/);
  const u = run(['ima', 'replay', K61 + 'binary_runtime_measurements', '--bank', 'md5']);
  assert.is(u.status, 2);
  oneErrorLine(u.stderr, /--bank/);
  assert.is(run(['ima', 'replay', '--nope']).status, 2);
  for (const c of ['show', 'replay']) {
    const h = run(['ima', c, '--help']);
    assert.is(h.status, 0);
    assert.match(h.stdout, new RegExp(`^usage: bootkey ima ${c}`));
  }
  const missing = run(['ima', 'show', join(TMP, 'nope')]);
  assert.is(missing.status, 1);
  oneErrorLine(missing.stderr, /cannot read/);
});

test.run();
