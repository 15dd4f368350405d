/** `bootkey efi show`: the JSON, --ca, exit statuses 0/1/2 and the single `bootkey:` stderr line. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { ROOT } from './helpers.ts';
import { runCli as run, oneErrorLine } from '../helpers/cli.ts';

const SIGNED = ROOT + 'test/data/efi/tiny-uki.signed.efi';
const UNSIGNED = ROOT + 'test/data/efi/tiny-uki.efi';
const SIGNER = ROOT + 'test/data/efi/tiny-signer.pem';
const SNAKEOIL = '/usr/share/ovmf/PkKek-1-snakeoil.pem';
const tmp = mkdtempSync(tmpdir() + '/bootkey-efi-cli-');

test('show --json: authenticode in 4 banks, signature, signers, uki', () => {
  const r = run(['efi', 'show', SIGNED, '--json']);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(Object.keys(j.authenticode), ['sha1', 'sha256', 'sha384', 'sha512']);
  assert.match(j.authenticode.sha1, /^[0-9a-f]{40}$/);
  assert.match(j.authenticode.sha256, /^[0-9a-f]{64}$/);
  assert.match(j.authenticode.sha384, /^[0-9a-f]{96}$/);
  assert.match(j.authenticode.sha512, /^[0-9a-f]{128}$/);
  assert.is(j.signature, 'valid');
  assert.is(j.caChecked, false);
  assert.is(j.signers.length, 1);
  assert.equal(Object.keys(j.signers[0]), ['subject', 'issuer', 'serial', 'sha256']);
  assert.is(j.signers[0].subject, 'CN=bootkey tiny test signer');
  assert.is(j.signatures[0].signedDigest, j.authenticode.sha256);
  assert.equal(Object.keys(j.uki.sections), ['.linux', '.osrel', '.cmdline', '.initrd', '.uname']);
  assert.is(j.uki.cmdline, 'console=ttyS0 tiny=1');
  assert.is(j.uki.uname, '6.1.0-tiny');
  assert.match(j.uki.osrel, /PRETTY_NAME="tiny test UKI"/);
  assert.is(j.uki.stubVersion, '252.39-1~deb12u2');
  assert.equal(Object.keys(j.uki.kernel.authenticode), ['sha1', 'sha256', 'sha384', 'sha512']);
  assert.is.not(j.uki.kernel.authenticode.sha256, j.authenticode.sha256);
  assert.is(j.uki.pcr11.length, 8, '252: .uname is not measured');
  // The same from stdin.
  const s = run(['efi', 'show', '-', '--json'], readFileSync(SIGNED));
  assert.is(JSON.parse(s.stdout).authenticode.sha512, j.authenticode.sha512);
});

test('--ca: valid and exit 0 with the signer, invalid and exit 1 with another CA; unsigned is none', () => {
  const ok = run(['efi', 'show', SIGNED, '--ca', SIGNER, '--json']);
  assert.is(ok.status, 0, ok.stderr);
  const j = JSON.parse(ok.stdout);
  assert.is(j.signature, 'valid');
  assert.is(j.signatures[0].signers[0].chain, 'trusted');
  const bad = run(['efi', 'show', SIGNED, '--ca', SNAKEOIL, '--json']);
  assert.is(bad.status, 1);
  const k = JSON.parse(bad.stdout);
  assert.is(k.signature, 'invalid');
  assert.is(k.signatures[0].signers[0].reason, 'the signer does not chain to any given CA');
  // Either of two CAs is enough.
  assert.is(run(['efi', 'show', SIGNED, '--ca', SNAKEOIL, '--ca', SIGNER]).status, 0);
  const none = run(['efi', 'show', UNSIGNED, '--json']);
  assert.is(none.status, 0);
  assert.is(JSON.parse(none.stdout).signature, 'none');
  assert.is(run(['efi', 'show', UNSIGNED, '--ca', SIGNER]).status, 1);
});

test('text output names the digest, the signer and the UKI sections', () => {
  const r = run(['efi', 'show', SIGNED]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^PE32\+ x64, 8240 bytes, 7 sections: /);
  assert.match(r.stdout, /signature: valid \(no CA given: not chained\)/);
  assert.match(r.stdout, /signer: CN=bootkey tiny test signer/);
  assert.match(r.stdout, /UKI \(systemd-stub 252\.39-1~deb12u2\):/);
  assert.match(r.stdout, /\.cmdline name 461203a89f23e36c3a4dc817f905b00484d2cf7e7d9376f13df91c41d84abe46/);
});

test('hostile and wrong inputs: one bootkey: line with the offset, exit 1; usage exit 2', () => {
  writeFileSync(`${tmp}/text`, 'not a PE file at all');
  oneErrorLine(run(['efi', 'show', `${tmp}/text`]).stderr, /^bootkey: at byte 0: no MZ signature/);
  assert.is(run(['efi', 'show', `${tmp}/text`]).status, 1);
  const t = readFileSync(SIGNED).subarray(0, 0x188 + 100);
  writeFileSync(`${tmp}/trunc`, t);
  const r = run(['efi', 'show', `${tmp}/trunc`]);
  assert.is(r.status, 1);
  oneErrorLine(r.stderr, /^bootkey: at byte \d+: section table \(7 entries at 0x188\) runs past the end of the file/);
  const missing = run(['efi', 'show', `${tmp}/nope`]);
  assert.is(missing.status, 1);
  oneErrorLine(missing.stderr, /cannot read EFI file .*ENOENT/);
  const badCa = run(['efi', 'show', SIGNED, '--ca', `${tmp}/text`]);
  assert.is(badCa.status, 1);
  oneErrorLine(badCa.stderr, /CA certificate .*: not a PEM or DER X\.509 certificate/);
  assert.is(run(['efi', 'show']).status, 2);
  assert.is(run(['efi', 'show', SIGNED, '--bogus']).status, 2);
});

test('--help, and the command list', () => {
  const h = run(['efi', 'show', '--help']);
  assert.is(h.status, 0);
  assert.match(h.stdout, /^usage: bootkey efi show FILE \[--ca CERT\]\.\.\. \[--json\]/);
  assert.match(h.stdout, /Exit status: 0 shown/);
  assert.match(run(['--help']).stdout, /efi show +an EFI file/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
