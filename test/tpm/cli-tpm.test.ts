/**
 * `bootkey tpm ...` as a process against a real swtpm: quotes verify with tpm2_checkquote
 * (nonce, signature, PCR values), no transient handle is left (also after an error), exit
 * statuses 0/1/2, --help, BOOTKEY_TPM.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSwtpm, tpm2, type Swtpm } from '../helpers/swtpm.ts';
import { unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { objectName } from '../../src/tpm/crypto.ts';

let sw: Swtpm;
let dir: string;
test.before(async () => {
  sw = await startSwtpm();
  dir = mkdtempSync(join(tmpdir(), 'bootkey-cli-tpm-'));
});
test.after(async () => {
  await sw.stop();
  rmSync(dir, { recursive: true, force: true });
});

function bootkey(args: string[], env: NodeJS.ProcessEnv = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function transientHandles(): string {
  return tpm2(sw, 'tpm2_getcap', ['handles-transient']).trim();
}

for (const akAlg of ['ecc', 'rsa']) {
  test(`quote (--ak-alg ${akAlg}, two banks) verifies with tpm2_checkquote, PCR values included; no transient left`, () => {
    tpm2(sw, 'tpm2_pcrextend', ['4:sha256=' + 'ab'.repeat(32) + ',sha1=' + 'cd'.repeat(20)]);
    const f = (n: string) => join(dir, `${akAlg}.${n}`);
    const r = bootkey(['tpm', 'quote', '--tpm', sw.tcti, '--ak-alg', akAlg, '--pcrs', 'sha1:0,1+sha256:0,4,7', '--nonce', 'deadbeef01',
      '--message', f('msg'), '--signature', f('sig'), '--public', f('pub'), '--pcr-values', f('json')]);
    assert.is(r.status, 0, r.stderr);
    assert.is(transientHandles(), '');
    const pcrs = JSON.parse(readFileSync(f('json'), 'utf8'));
    assert.equal(Object.keys(pcrs), ['sha1', 'sha256']);
    assert.equal(Object.keys(pcrs.sha256), ['0', '4', '7']);
    assert.is.not(pcrs.sha256['4'], '0'.repeat(64));
    // tpm2-tools "values" PCR file: the digests in selection order
    const vals = Buffer.concat([...['0', '1'].map((i) => Buffer.from(pcrs.sha1[i], 'hex')), ...['0', '4', '7'].map((i) => Buffer.from(pcrs.sha256[i], 'hex'))]);
    writeFileSync(f('pcrs'), vals);
    tpm2(sw, 'tpm2_checkquote', ['-u', f('pub'), '-m', f('msg'), '-s', f('sig'), '-q', 'deadbeef01', '-g', 'sha256', '-f', f('pcrs'), '-l', 'sha1:0,1+sha256:0,4,7']);
    // a wrong nonce and wrong PCR values are rejected by tpm2_checkquote
    assert.throws(() => tpm2(sw, 'tpm2_checkquote', ['-u', f('pub'), '-m', f('msg'), '-s', f('sig'), '-q', 'deadbeef02', '-g', 'sha256']));
    vals[0] ^= 1;
    writeFileSync(f('pcrs'), vals);
    assert.throws(() => tpm2(sw, 'tpm2_checkquote', ['-u', f('pub'), '-m', f('msg'), '-s', f('sig'), '-q', 'deadbeef01', '-g', 'sha256', '-f', f('pcrs'), '-l', 'sha1:0,1+sha256:0,4,7']));
  });
}

test('quote of an unallocated bank fails with exit 1, one bootkey: line, and still leaves no transient handle', () => {
  const r = bootkey(['tpm', 'quote', '--tpm', sw.tcti, '--pcrs', 'sha512:0', '--nonce', '00',
    '--message', join(dir, 'x.msg'), '--signature', join(dir, 'x.sig'), '--public', join(dir, 'x.pub')]);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /^bootkey: /);
  assert.is(r.stderr.trim().split('\n').length, 1);
  assert.is(transientHandles(), '');
});

test('usage errors exit 2; --help exits 0', () => {
  assert.is(bootkey(['tpm', 'quote', '--tpm', sw.tcti]).status, 2);
  assert.is(bootkey(['tpm', 'quote', '--tpm', sw.tcti, '--pcrs', 'sha256:99', '--nonce', '00', '--message', 'a', '--signature', 'b', '--public', 'c']).status, 2);
  assert.is(bootkey(['tpm', 'ak', '--alg', 'dsa']).status, 2);
  for (const c of ['info', 'quote', 'pcrread', 'ek', 'ak']) {
    const r = bootkey(['tpm', c, '--help']);
    assert.is(r.status, 0);
    assert.match(r.stdout, new RegExp(`^usage: bootkey tpm ${c}`));
    assert.match(r.stdout, /--tpm SPEC/);
  }
});

test('a TPM that is not there: exit 1 with a TRANSPORT message', () => {
  const r = bootkey(['tpm', 'info', '--tpm', 'swtpm:host=127.0.0.1,port=1']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /^bootkey: swtpm:host=127.0.0.1,port=1: connect failed/);
});

test('info --json (via BOOTKEY_TPM)', () => {
  const r = bootkey(['tpm', 'info', '--json'], { BOOTKEY_TPM: sw.tcti });
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.manufacturer, 'IBM');
  assert.ok(j.algorithms.includes('sha256') && j.algorithms.includes('ecdsa'));
  assert.equal(Object.keys(j.pcrBanks), ['sha1', 'sha256', 'sha384']);
  assert.equal(j.ekCertificates, { rsa: true, ecc: false });
  assert.is(transientHandles(), '');
});

test('pcrread --json equals tpm2_pcrread (all banks, 24 PCRs)', () => {
  const r = bootkey(['tpm', 'pcrread', '--tpm', sw.tcti, '--json', '--pcrs', 'sha256:all+sha1:0-9']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(Object.keys(j.sha256).length, 24);
  assert.is(Object.keys(j.sha1).length, 10);
  const out = tpm2(sw, 'tpm2_pcrread', ['sha256:4']);
  assert.is(/0x([0-9A-F]+)/.exec(out)![1].toLowerCase(), j.sha256['4']);
});

test('ek and ak: names printed, public areas written, names equal tpm2_readpublic/createek', () => {
  const r = bootkey(['tpm', 'ek', '--tpm', sw.tcti, '--alg', 'rsa', '--public', join(dir, 'ek.pub'), '--cert', join(dir, 'ek.der')]);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout.trim(), objectName(unmarshalPublic2B(readFileSync(join(dir, 'ek.pub')))).toString('hex'));
  assert.is(/name: ([0-9a-f]+)/.exec(tpm2(sw, 'tpm2_readpublic', ['-c', '0x81010001']))![1], r.stdout.trim());
  assert.is(readFileSync(join(dir, 'ek.der'))[0], 0x30);
  const e = bootkey(['tpm', 'ek', '--tpm', sw.tcti, '--alg', 'ecc', '--public', join(dir, 'eke.pub')]);
  assert.is(e.status, 0, e.stderr);
  tpm2(sw, 'tpm2_createek', ['-G', 'ecc', '-u', join(dir, 'eke2.pub'), '-c', join(dir, 'eke2.ctx')]);
  tpm2(sw, 'tpm2_flushcontext', ['-t']);
  assert.equal(readFileSync(join(dir, 'eke.pub')), readFileSync(join(dir, 'eke2.pub')));
  const noCert = bootkey(['tpm', 'ek', '--tpm', sw.tcti, '--alg', 'ecc', '--cert', join(dir, 'none.der')]);
  assert.is(noCert.status, 1);
  const a1 = bootkey(['tpm', 'ak', '--tpm', sw.tcti, '--public', join(dir, 'ak.pub')]);
  const a2 = bootkey(['tpm', 'ak', '--tpm', sw.tcti]);
  assert.is(a1.status, 0, a1.stderr);
  assert.is(a1.stdout, a2.stdout);
  assert.is(a1.stdout.trim(), objectName(unmarshalPublic2B(readFileSync(join(dir, 'ak.pub')))).toString('hex'));
  assert.is(transientHandles(), '');
});

test.run();
