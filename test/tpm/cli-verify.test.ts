/**
 * `bootkey tpm checkquote` / `bootkey tpm makecredential` on real tpm2-tools files.
 * Runs src/cli/main.ts when the commands are wired into src/cli/tpm.ts, else
 * test/helpers/verify-cli.ts (main.ts with them registered).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { toolTpm, createEkAk, type ToolTpm } from '../helpers/tpm2tools.ts';
import { parsePcrsSerialized } from '../../src/tpm/pcrfile.ts';
import { pcrValuesToJson } from '../../src/pcrs.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = import.meta.resolve('tsx');
const wired = readFileSync(`${ROOT}src/cli/tpm.ts`, 'utf8').includes('tpmVerifyCommands');
const ENTRY = wired ? `${ROOT}src/cli/main.ts` : `${ROOT}test/helpers/verify-cli.ts`;

let t: ToolTpm;
function bootkey(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', TSX, ENTRY, ...args], { cwd: t.dir, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
/** Exit 1 (or `code`) with exactly one `bootkey:` line on stderr matching re. */
function refused(r: ReturnType<typeof bootkey>, re: RegExp, code = 1): void {
  assert.is(r.code, code, r.stderr + r.stdout);
  const lines = r.stderr.trim().split('\n');
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], /^bootkey: /);
  assert.match(lines[0], re);
}

const NONCE = '00112233445566778899aabbccddeeff';
let ak = '';
let ek = '';

test.before(async () => {
  t = await toolTpm();
  t.run('tpm2_pcrextend', [`0:sha256=${createHash('sha256').update('x').digest('hex')}`]);
  ({ ek, ak } = createEkAk(t, 'rsa', 'ecc'));
  t.run('tpm2_quote', ['-c', `${ak}.ctx`, '-l', 'sha256:0,1,7', '-q', NONCE, '-m', 'quote.msg', '-s', 'quote.sig', '-o', 'quote.pcrs', '-g', 'sha256']);
  writeFileSync(t.path('pcrs.json'), JSON.stringify(pcrValuesToJson(parsePcrsSerialized(t.file('quote.pcrs')).values)));
  t.run('tpm2_readpublic', ['-c', `${ak}.ctx`, '-f', 'pem', '-o', 'ak.pem']);
  t.run('tpm2_readpublic', ['-c', `${ek}.ctx`, '-f', 'pem', '-o', 'ek.pem']);
});
test.after(async () => {
  await t?.stop();
});

const Q = ['tpm', 'checkquote', '--public', '', '--message', 'quote.msg', '--signature', 'quote.sig', '--nonce', NONCE];
const q = (...extra: string[]): string[] => {
  const a = [...Q];
  a[3] = `${ak}.pub`;
  return [...a, ...extra];
};

test('checkquote: exit 0 with JSON PCR values and with tpm2_quote -o\'s file; --json', () => {
  const r = bootkey(...q('--pcr-values', 'pcrs.json'));
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /quote verified/);
  assert.match(r.stdout, /PCR digest: +[0-9a-f]{64} ok/);
  assert.is(bootkey(...q('--pcr-values', 'quote.pcrs')).code, 0);
  const j = bootkey(...q('--pcr-values', 'quote.pcrs', '--json'));
  assert.is(j.code, 0, j.stderr);
  const o = JSON.parse(j.stdout);
  assert.is(o.verified, true);
  assert.equal(o.checks, { akAttributes: true, signature: true, magic: true, type: true, nonce: true, pcrDigest: true });
  assert.equal(o.selection, [{ bank: 'sha256', pcrs: [0, 1, 7] }]);
  assert.is(o.akName, t.file(`${ak}.name`).toString('hex'));
  assert.equal(o.unquoted, []);
  // A PCR given but not quoted is reported as not verified.
  const extra = JSON.parse(readFileSync(t.path('pcrs.json'), 'utf8'));
  extra.sha256['9'] = '00'.repeat(32);
  writeFileSync(t.path('extra.json'), JSON.stringify(extra));
  const x = bootkey(...q('--pcr-values', 'extra.json'));
  assert.is(x.code, 0, x.stderr);
  assert.match(x.stdout, /NOT verified: +sha256:9/);
});

test('checkquote: PEM AK (attributes reported unchecked); no --pcr-values (digest reported unchecked)', () => {
  const a = q('--pcr-values', 'pcrs.json');
  a[3] = 'ak.pem';
  const r = bootkey(...a);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /AK attributes: NOT checked/);
  const n = bootkey(...q());
  assert.is(n.code, 0, n.stderr);
  assert.match(n.stdout, /NOT checked \(no --pcr-values\)/);
});

test('checkquote refusals: exit 1, one bootkey: line naming the check', () => {
  const bad = [...q('--pcr-values', 'pcrs.json')];
  bad[bad.indexOf(NONCE)] = NONCE.replace(/^00/, '01');
  refused(bootkey(...bad), /VERIFY_NONCE/);
  const j = JSON.parse(readFileSync(t.path('pcrs.json'), 'utf8'));
  j.sha256['7'] = 'ff'.repeat(32);
  writeFileSync(t.path('wrong.json'), JSON.stringify(j));
  refused(bootkey(...q('--pcr-values', 'wrong.json')), /VERIFY_PCR_DIGEST.*does not match/);
  delete j.sha256['7'];
  writeFileSync(t.path('missing.json'), JSON.stringify(j));
  refused(bootkey(...q('--pcr-values', 'missing.json')), /VERIFY_PCR_DIGEST.*sha256:7/);
  const m = t.file('quote.msg');
  m[m.length - 1] ^= 1;
  writeFileSync(t.path('bad.msg'), m);
  const bm = q('--pcr-values', 'pcrs.json');
  bm[5] = 'bad.msg';
  refused(bootkey(...bm), /VERIFY_SIGNATURE/);
  refused(bootkey(...q('--hash', 'sha384')), /VERIFY_HASH/);
  const nf = q();
  nf[5] = 'no-such-file';
  refused(bootkey(...nf), /cannot read quote message no-such-file/);
  writeFileSync(t.path('garbage.json'), '{"sha256": {"0": "zz"}}');
  refused(bootkey(...q('--pcr-values', 'garbage.json')), /not hex/);
});

test('checkquote usage errors: exit 2', () => {
  refused(bootkey('tpm', 'checkquote', '--public', `${ak}.pub`, '--signature', 'quote.sig', '--nonce', NONCE), /missing --message/, 2);
  refused(bootkey(...q().slice(0, -1), 'xyz'), /--nonce: not a hex string/, 2);
  refused(bootkey(...q('--bogus')), /bogus/, 2);
  refused(bootkey('tpm', 'checkquote', '--public', `${ak}.pub`, '--message', 'quote.msg', '--signature', 'quote.sig'), /missing --nonce/, 2);
  const h = bootkey('tpm', 'checkquote', '--help');
  assert.is(h.code, 0);
  assert.match(h.stdout, /^usage: bootkey tpm checkquote/);
});

test('makecredential: RSA and ECC EK (TPM2B_PUBLIC) and PEM EK; tpm2_activatecredential takes the file', () => {
  const secret = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
  writeFileSync(t.path('secret.bin'), secret);
  for (const ekAlg of ['rsa', 'ecc'] as const) {
    const k = createEkAk(t, ekAlg, 'rsa');
    t.run('tpm2_readpublic', ['-c', `${k.ek}.ctx`, '-f', 'pem', '-o', `${k.ek}.pem`]);
    for (const ekFile of [`${k.ek}.pub`, `${k.ek}.pem`]) {
      const r = bootkey('tpm', 'makecredential', '--ek-public', ekFile, '--name', t.file(`${k.ak}.name`).toString('hex'), '--secret', 'secret.bin', '--out', 'cred.out');
      assert.is(r.code, 0, r.stderr);
      assert.match(r.stdout, /written to cred.out/);
      t.run('tpm2_activatecredential', ['-c', `${k.ak}.ctx`, '-C', `${k.ek}.ctx`, '-i', 'cred.out', '-o', 'act.out', '-P', t.ekSession()]);
      assert.is(t.file('act.out').toString('hex'), secret.toString('hex'), ekFile);
    }
  }
});

test('makecredential refusals: too long a secret (1), usage (2)', () => {
  writeFileSync(t.path('long.bin'), Buffer.alloc(33));
  refused(bootkey('tpm', 'makecredential', '--ek-public', `${ek}.pub`, '--name', t.file(`${ak}.name`).toString('hex'), '--secret', 'long.bin', '--out', 'x'), /at most 32/);
  refused(bootkey('tpm', 'makecredential', '--ek-public', `${ek}.pub`, '--secret', 'long.bin', '--out', 'x'), /missing --name/, 2);
  refused(bootkey('tpm', 'makecredential', '--ek-public', 'quote.msg', '--name', '000b00', '--secret', 'long.bin', '--out', 'x'), /--name: too short/, 2);
  refused(bootkey('tpm', 'makecredential', '--ek-public', 'quote.msg', '--name', t.file(`${ak}.name`).toString('hex'), '--secret', 'secret.bin', '--out', 'x'), /TPM2B_PUBLIC|TPMT_PUBLIC/);
});

test.run();
