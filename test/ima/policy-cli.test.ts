/**
 * `bootkey runtime-policy generate|import|show` and `bootkey ima check`: outputs, exit statuses
 * 0/1/2, the single `bootkey:` error line, UNVERIFIED without --pcrs, binding with it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { ROOT, KP, sha256 } from './policy-helpers.ts';

const Q = ROOT + 'test/data/ima/qemu-debian/';
const tmp = mkdtempSync(tmpdir() + '/bootkey-ima-cli-');

function run(args: string[], input?: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function oneErrorLine(stderr: string, re: RegExp) {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.is(lines.length, 1, stderr);
  assert.match(lines[0], /^bootkey: /);
  assert.match(lines[0], re);
}

test('generate --from-log, show --json, ima check: OK (UNVERIFIED without --pcrs, bound with it)', () => {
  const pol = `${tmp}/p.json`;
  const g = run(['runtime-policy', 'generate', '--from-log', Q + 'binary_runtime_measurements', '--out', pol, '--json']);
  assert.is(g.status, 0, g.stderr);
  assert.is(JSON.parse(g.stdout).entries, 11);
  const s = run(['runtime-policy', 'show', pol, '--json']);
  assert.is(s.status, 0, s.stderr);
  const j = JSON.parse(s.stdout);
  assert.equal([j.paths, j.keyrings], [8, { '.builtin_trusted_keys': 1 }]);
  const u = run(['ima', 'check', pol, Q + 'ascii_runtime_measurements']);
  assert.is(u.status, 0, u.stdout + u.stderr);
  assert.match(u.stdout, /^UNVERIFIED OK: 11 entries checked, 0 failing/);
  const v = run(['ima', 'check', pol, Q + 'binary_runtime_measurements', '--pcrs', Q + 'pcrs.yaml', '--json']);
  assert.is(v.status, 0, v.stdout + v.stderr);
  const vj = JSON.parse(v.stdout);
  assert.equal([vj.ok, vj.verified, vj.checked], [true, true, 11]);
  // PCR values without PCRs 0-9: boot_aggregate cannot be tied to the boot, so it fails
  const pcrs = JSON.parse(readFileSync(Q + 'pcrs.json', 'utf8'));
  writeFileSync(`${tmp}/pcr10only.json`, JSON.stringify({ sha1: { 10: pcrs.sha1['10'] }, sha256: { 10: pcrs.sha256['10'] } }));
  const o = run(['ima', 'check', pol, Q + 'binary_runtime_measurements', '--pcrs', `${tmp}/pcr10only.json`, '--json']);
  assert.is(o.status, 1, o.stdout + o.stderr);
  const oj = JSON.parse(o.stdout);
  assert.equal(oj.failures.map((f: { index: number; code: string }) => [f.index, f.code]), [[0, 'BOOT_AGGREGATE']]);
  assert.ok(oj.notes.some((n: string) => /boot_aggregate cannot be computed/.test(n)));
});

test('ima check: a file missing from the policy exits 1 naming it; a doctored list does not bind', () => {
  const p = JSON.parse(readFileSync(`${tmp}/p.json`, 'utf8'));
  delete p.digests['/bin/busybox'];
  writeFileSync(`${tmp}/p2.json`, JSON.stringify(p));
  const r = run(['ima', 'check', `${tmp}/p2.json`, Q + 'binary_runtime_measurements', '--pcrs', Q + 'pcrs.json']);
  assert.is(r.status, 1);
  assert.match(r.stdout, /^FAILED: 11 entries checked, 1 failing/);
  assert.match(r.stdout, /\nentry 2 \/bin\/busybox: sha256:3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6 not in the policy \(the path is not listed\) \[UNLISTED_PATH\]\n/);
  // the ASCII list with /bin/busybox's digest changed to a listed one's: without --pcrs it would pass
  const text = readFileSync(Q + 'ascii_runtime_measurements', 'utf8').replace('3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6', 'c2099a51774af2a9d1a38b5926c479ec66f698e9feb66bf1adc75d02f7f1ec4c');
  writeFileSync(`${tmp}/doctored`, text);
  const d = run(['ima', 'check', `${tmp}/p.json`, `${tmp}/doctored`, '--pcrs', Q + 'pcrs.json']);
  assert.is(d.status, 1);
  oneErrorLine(d.stderr, /entry 2 .*not the hash of its template data/);
});

test('import: Keylime JSON and the text allowlist; errors one line, exit 1; usage exit 2', () => {
  const out = `${tmp}/k.json`;
  const r = run(['runtime-policy', 'import', KP + 'runtime-policy-verification-keys.json', '--out', out, '--json']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.policy.verificationKeys.map((k: { keyids: string[] }) => k.keyids[0]), ['f3452d23', '531f4025']);
  const c = run(['ima', 'check', out, KP + 'signatures']);
  assert.is(c.status, 0, c.stdout);
  assert.match(c.stdout, /2 by signature/);
  writeFileSync(`${tmp}/allow.txt`, `${sha256('x').toString('hex')}  /usr/bin/x\n`);
  const a = run(['runtime-policy', 'import', `${tmp}/allow.txt`, '--allowlist']);
  assert.is(a.status, 0, a.stderr);
  assert.equal(JSON.parse(a.stdout).digests['/usr/bin/x'], [`sha256:${sha256('x').toString('hex')}`]);
  const bad = run(['runtime-policy', 'import', `${tmp}/allow.txt`]);
  assert.is(bad.status, 1);
  oneErrorLine(bad.stderr, /not JSON .* needs --allowlist/);
  writeFileSync(`${tmp}/badre.json`, JSON.stringify({ meta: { version: 1 }, digests: {}, excludes: ['(x'] }));
  const re = run(['runtime-policy', 'import', `${tmp}/badre.json`]);
  assert.is(re.status, 1);
  oneErrorLine(re.stderr, /excludes\[0\]: not a valid regular expression/);
  const show = run(['runtime-policy', 'show', KP + 'runtime-policy-test.json']);
  assert.is(show.status, 1);
  oneErrorLine(show.stderr, /looks like a Keylime runtime policy: use `bootkey runtime-policy import`/);
  assert.is(run(['runtime-policy', 'generate']).status, 2);
  assert.is(run(['ima', 'check', out]).status, 2);
  for (const c of [['runtime-policy', 'generate'], ['runtime-policy', 'import'], ['runtime-policy', 'show'], ['ima', 'check']]) {
    const h = run([...c, '--help']);
    assert.is(h.status, 0);
    assert.match(h.stdout, new RegExp(`^usage: bootkey ${c.join(' ')}`));
  }
});

test('generate --from-dir with --root: hashes regular files, skips the default directories, no symlinks', () => {
  const root = `${tmp}/root`;
  mkdirSync(`${root}/usr/bin`, { recursive: true });
  mkdirSync(`${root}/tmp`, { recursive: true });
  writeFileSync(`${root}/usr/bin/tool`, 'tool');
  writeFileSync(`${root}/tmp/scratch`, 'scratch');
  symlinkSync('tool', `${root}/usr/bin/link`);
  const r = run(['runtime-policy', 'generate', '--from-dir', '/', '--root', root, '--exclude', '/var/cache/.*']);
  assert.is(r.status, 0, r.stderr);
  const p = JSON.parse(r.stdout);
  assert.equal(Object.keys(p.digests), ['/usr/bin/tool']);
  assert.equal(p.digests['/usr/bin/tool'], [`sha256:${sha256('tool').toString('hex')}`]);
  assert.equal(p.excludes, ['/var/cache/.*']);
  const s1 = run(['runtime-policy', 'generate', '--from-dir', '/usr', '--root', root, '--algo', 'sha1']);
  assert.match(JSON.parse(s1.stdout).digests['/usr/bin/tool'][0], /^sha1:[0-9a-f]{40}$/);
  const de = run(['runtime-policy', 'generate', '--from-dir', '/usr', '--root', root, '--default-excludes']);
  assert.ok(JSON.parse(de.stdout).excludes.includes('/tmp/.*'));
  assert.is(run(['runtime-policy', 'generate', '--from-dir', 'usr', '--root', root]).status, 2);
  assert.is(run(['runtime-policy', 'generate', '--from-dir', '/usr', '--algo', 'md5']).status, 2);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
