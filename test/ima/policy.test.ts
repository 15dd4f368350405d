/**
 * The runtime policy (src/ima/policy.ts): loader bounds and errors, the verdict per entry, and the
 * attacker's tests — an unlisted binary, a signature by an unknown key, a signature over another
 * digest, the exclude that only matches unanchored, a keyring key the policy does not list.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { checkRuntimePolicy, compileRuntimePolicy, loadRuntimePolicy, RuntimePolicyError, serializeRuntimePolicy, translateExclude, type RuntimePolicy } from '../../src/ima/policy.ts';
import { loadVerificationKey } from '../../src/ima/sig.ts';
import { policyFromEntries } from '../../src/ima/generate.ts';
import { parseImaList } from '../../src/ima/list.ts';
import { bindImaToQuote, unverifiedImaEntries } from '../../src/ima/trusted.ts';
import { entry, pem, policy, rsaKey, ecKey, sha256, tool, trusted, ROOT } from './policy-helpers.ts';
import type { KeyObject } from 'node:crypto';

const signer = rsaKey();
const stranger = ecKey();
const signerPem = pem(signer.publicKey);
const keyid = (pub: KeyObject) => loadVerificationKey(pem(pub)).keyids[0];

/** security.ima v2 over `digest` (sha256) by `priv`. */
function imaSig(priv: KeyObject, pub: KeyObject, content: string): Buffer {
  const raw = sign('sha256', Buffer.from(content), priv);
  const h = Buffer.alloc(9);
  h[0] = 3; h[1] = 2; h[2] = 4;
  Buffer.from(keyid(pub), 'hex').copy(h, 3);
  h.writeUInt16BE(raw.length, 7);
  return Buffer.concat([h, raw]);
}
const file = (path: string, content: string, sig?: Buffer, index = 1) => entry({ index, path, digest: sha256(content), sig: sig ?? Buffer.alloc(0) });
const listed = (path: string, content: string) => ({ [path]: [`sha256:${sha256(content).toString('hex')}`] });

test('attack: an unlisted binary is refused with its name, its digest and the reason', () => {
  const p = policy({ digests: listed('/usr/bin/ls', 'ls') });
  const r = checkRuntimePolicy(p, trusted([file('/usr/bin/ls', 'ls', undefined, 3), file('/usr/bin/evil', 'evil', undefined, 1432)]));
  assert.not.ok(r.ok);
  assert.equal(r.failures.map((f) => [f.index, f.path, f.code]), [[1432, '/usr/bin/evil', 'UNLISTED_PATH']]);
  assert.is(r.failures[0].message, `entry 1432 /usr/bin/evil: sha256:${sha256('evil').toString('hex')} not in the policy (the path is not listed)`);
  // a listed path with another content: the allowed digests are named
  const changed = checkRuntimePolicy(p, trusted([file('/usr/bin/ls', 'trojaned ls', undefined, 7)]));
  assert.is(changed.failures[0].code, 'DIGEST_NOT_ALLOWED');
  assert.match(changed.failures[0].message, /^entry 7 \/usr\/bin\/ls: sha256:[0-9a-f]{64} not in the policy \(allowed: sha256:[0-9a-f]{16}…\)$/);
});

test('attack: a signature by an unknown key is refused (digest not listed), naming the keyid', () => {
  const p = policy({ verificationKeys: [signerPem] });
  const good = checkRuntimePolicy(p, trusted([file('/opt/app', 'app', imaSig(signer.privateKey, signer.publicKey, 'app'))]));
  assert.ok(good.ok, JSON.stringify(good.failures));
  assert.is(good.passed.signature, 1);
  const r = checkRuntimePolicy(p, trusted([file('/opt/app', 'app', imaSig(stranger.privateKey, stranger.publicKey, 'app'), 88)]));
  assert.equal(r.failures.map((f) => f.code), ['BAD_SIGNATURE']);
  assert.is(r.failures[0].message, `entry 88 /opt/app: signature by key ${keyid(stranger.publicKey)}: no such key in the policy, and sha256:${sha256('app').toString('hex')} is not in the policy (the path is not listed)`);
});

test('attack: a valid signature moved onto another digest is refused ("does not verify")', () => {
  const p = policy({ verificationKeys: [signerPem] });
  const sigOfGood = imaSig(signer.privateKey, signer.publicKey, 'good binary');
  const r = checkRuntimePolicy(p, trusted([file('/usr/bin/x', 'evil binary', sigOfGood, 88)]));
  assert.equal(r.failures.map((f) => f.code), ['BAD_SIGNATURE']);
  assert.match(r.failures[0].message, new RegExp(`^entry 88 /usr/bin/x: signature by key ${keyid(signer.publicKey)} does not verify, and sha256:`));
  // ... and a listed digest still passes with a broken signature (Keylime: the digest list decides then)
  assert.ok(checkRuntimePolicy({ ...p, digests: listed('/usr/bin/x', 'evil binary') }, trusted([file('/usr/bin/x', 'evil binary', sigOfGood)])).ok);
});

test('attack: an exclude matches at the start of the path only (Python re.match), not anywhere', () => {
  const p = policy({ excludes: ['/tmp/.*', '/var/log'] });
  const r = checkRuntimePolicy(p, trusted([
    file('/tmp/build/x', 'a', undefined, 1),
    file('/usr/bin/tmp/evil', 'b', undefined, 2), // contains "/tmp/" but does not start with it
    file('/home/u/var/log', 'c', undefined, 3),
    file('/var/log/syslog', 'd', undefined, 4),
    file('/var/logger', 'e', undefined, 5), // Keylime semantics: "/var/log" also matches "/var/logger"
  ]));
  assert.equal(r.failures.map((f) => f.index), [2, 3]);
  assert.is(r.passed.excluded, 3);
  // the alternatives cannot unanchor each other: "a|b" inside one exclude stays anchored
  const alt = checkRuntimePolicy(policy({ excludes: ['/x|/y'] }), trusted([file('/z/y', 'z')]));
  assert.not.ok(alt.ok);
});

test('attack: a key measured into a keyring the policy does not list (or with another digest) is refused and not learned', () => {
  const dir = mkdtempSync(tmpdir() + '/bootkey-ima-pol-');
  try {
    tool('openssl', ['req', '-new', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${dir}/k.pem`, '-subj', '/CN=bootkey ima key', '-days', '30', '-outform', 'DER', '-out', `${dir}/c.der`]);
    const der = readFileSync(`${dir}/c.der`);
    const priv = readFileSync(`${dir}/k.pem`, 'utf8');
    const k = loadVerificationKey(der);
    const raw = sign('sha256', Buffer.from('tool'), priv);
    const h = Buffer.alloc(9); h[0] = 3; h[1] = 2; h[2] = 4; Buffer.from(k.keyids[0], 'hex').copy(h, 3); h.writeUInt16BE(raw.length, 7);
    const keyEntry = entry({ index: 1, templateName: 'ima-buf', path: '.ima', digest: sha256(der), buf: der });
    const signed = file('/usr/local/bin/tool', 'tool', Buffer.concat([h, raw]), 2);
    const keyDigest = `sha256:${sha256(der).toString('hex')}`;
    // listed: the key passes and is learned, so the file it signed passes
    const ok = checkRuntimePolicy(policy({ keyrings: { '.ima': [keyDigest] } }), trusted([keyEntry, signed]));
    assert.ok(ok.ok, JSON.stringify(ok.failures));
    assert.equal([ok.passed.keys, ok.passed.signature], [1, 1]);
    // keyring not listed: refused, and its signatures do not count
    const r = checkRuntimePolicy(policy({ keyrings: { '.builtin_trusted_keys': [keyDigest] } }), trusted([keyEntry, signed]));
    assert.equal(r.failures.map((f) => [f.index, f.code]), [[1, 'UNLISTED_KEYRING'], [2, 'BAD_SIGNATURE']]);
    assert.match(r.failures[0].message, /^entry 1 \.ima: key [0-9a-f]{8} \(P-256, CN=bootkey ima key\) \(sha256:[0-9a-f]{64}\) measured into keyring \.ima, which the policy does not list$/);
    // another digest listed
    const other = checkRuntimePolicy(policy({ keyrings: { '.ima': [`sha256:${'00'.repeat(32)}`] } }), trusted([keyEntry]));
    assert.equal(other.failures.map((f) => f.code), ['KEY_NOT_ALLOWED']);
    // ignored keyring: passes, not learned
    const ign = checkRuntimePolicy(policy({ ignoredKeyrings: ['.ima'] }), trusted([keyEntry, signed]));
    assert.equal(ign.failures.map((f) => f.index), [2]);
    // learned keys carry over to the next report of the same boot (incremental)
    const next = checkRuntimePolicy(policy(), trusted([signed]), { learnedKeys: ok.learnedKeys });
    assert.ok(next.ok);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ima-buf buffers: listed by name and digest, else refused', () => {
  const buf = Buffer.from('console=ttyS0');
  const e = entry({ index: 4, templateName: 'ima-buf', path: 'kexec-cmdline', digest: sha256(buf), buf });
  assert.ok(checkRuntimePolicy(policy({ imaBuf: { 'kexec-cmdline': [`sha256:${sha256(buf).toString('hex')}`] } }), trusted([e])).ok);
  assert.equal(checkRuntimePolicy(policy(), trusted([e])).failures.map((f) => f.code), ['UNLISTED_BUFFER']);
  assert.equal(checkRuntimePolicy(policy({ imaBuf: { 'kexec-cmdline': [`sha256:${'11'.repeat(32)}`] } }), trusted([e])).failures.map((f) => f.code), ['BUFFER_NOT_ALLOWED']);
});

test('boot_aggregate: the quoted PCRs\' value decides when given (the policy\'s does not count); else the policy', () => {
  const ba = entry({ index: 0, path: 'boot_aggregate', digest: sha256('pcrs 0-9') });
  const listedBa = policy({ digests: { boot_aggregate: [`sha256:${sha256('pcrs 0-9').toString('hex')}`] } });
  assert.ok(checkRuntimePolicy(listedBa, trusted([ba])).ok);
  assert.ok(checkRuntimePolicy(policy(), trusted([ba]), { bootAggregates: [`sha256:${sha256('pcrs 0-9').toString('hex')}`] }).ok);
  const r = checkRuntimePolicy(listedBa, trusted([ba]), { bootAggregates: [`sha256:${sha256('another boot').toString('hex')}`] });
  assert.equal(r.failures.map((f) => f.code), ['BOOT_AGGREGATE']);
  assert.match(r.failures[0].message, /is not the boot_aggregate of the quoted PCRs/);
  // an exclude cannot wave it through once PCRs are known
  assert.not.ok(checkRuntimePolicy(policy({ excludes: ['boot_aggregate'] }), trusted([ba]), { bootAggregates: [`sha256:${'22'.repeat(32)}`] }).ok);
});

test('violations warn by default (Keylime), fail with "violations": "fail"; another PCR fails', () => {
  const v = entry({ index: 5, path: '/data/buf', violation: true, digest: Buffer.alloc(32) });
  const r = checkRuntimePolicy(policy(), trusted([v]));
  assert.ok(r.ok);
  assert.equal(r.warnings, ['entry 5 /data/buf: measurement violation ignored']);
  assert.equal(checkRuntimePolicy(policy({ violations: 'fail' }), trusted([v])).failures.map((f) => f.code), ['VIOLATION']);
  assert.equal(checkRuntimePolicy(policy({ digests: listed('/x', 'x') }), trusted([{ ...file('/x', 'x'), pcr: 11 }])).failures.map((f) => f.code), ['WRONG_PCR']);
  assert.equal(checkRuntimePolicy(policy(), trusted([entry({ templateName: 'ima-foo', path: undefined, digest: undefined, digestAlgo: undefined, opaque: true })])).failures.map((f) => f.code), ['UNREADABLE_ENTRY']);
});

test('an entry passes only in its own algorithm (sha1:X does not allow sha256 entries with X as prefix etc.)', () => {
  const d = sha256('x');
  const p = policy({ digests: { '/x': [`sha1:${d.subarray(0, 20).toString('hex')}`] } });
  assert.not.ok(checkRuntimePolicy(p, trusted([entry({ path: '/x', digest: d })])).ok);
  assert.ok(checkRuntimePolicy(p, trusted([entry({ path: '/x', digestAlgo: 'sha1', digest: d.subarray(0, 20) })])).ok);
});

test('loader: round trip, bounds and clear errors naming the field', () => {
  const p = policy({ digests: { '/a': ['SHA256:' + 'AB'.repeat(32), 'ab'.repeat(32)] }, excludes: ['/tmp/.*'], verificationKeys: [signerPem], meta: { comment: 'x' } });
  const loaded = loadRuntimePolicy(serializeRuntimePolicy(p));
  assert.equal(loaded.digests['/a'], ['sha256:' + 'ab'.repeat(32)]);
  assert.equal(loadRuntimePolicy(serializeRuntimePolicy(loaded)), loaded);
  const bad = (v: unknown, code: string, re: RegExp) => assert.throws(() => loadRuntimePolicy(JSON.stringify(v)), (e: RuntimePolicyError) => e.code === code && re.test(e.message));
  bad({ ...p, format: 'x' }, 'BAD_FORMAT', /"format" must be "bootkey-runtime-policy"/);
  bad({ meta: {}, digests: {} }, 'BAD_FORMAT', /looks like a Keylime runtime policy/);
  bad({ ...p, version: 2 }, 'BAD_FORMAT', /"version" 2 is not supported/);
  bad({ ...p, extra: 1 }, 'BAD_FORMAT', /unknown field "extra"/);
  bad({ ...p, digests: { '/a': ['md5:00'] } }, 'BAD_DIGEST', /digests\["\/a"\]\[0\]: a md5 digest is 16 bytes, not 1/);
  bad({ ...p, digests: { '/a': ['sha256:zz'] } }, 'BAD_DIGEST', /not a hex digest/);
  bad({ ...p, digests: { '/a': 'x' } }, 'BAD_FORMAT', /must be a list of digests/);
  bad({ ...p, excludes: ['(a'] }, 'BAD_REGEX', /excludes\[0\]: not a valid regular expression/);
  bad({ ...p, excludes: ['(?i)/tmp'] }, 'BAD_REGEX', /inline flags/);
  bad({ ...p, verificationKeys: ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'] }, 'BAD_KEY', /verificationKeys\[0\]/);
  bad({ ...p, violations: 'maybe' }, 'BAD_FORMAT', /violations/);
  bad({ ...p, digests: { '/a': Array(5000).fill('ab'.repeat(32)) } }, 'TOO_LARGE', /more than 4096 digests/);
  assert.throws(() => loadRuntimePolicy('{'), (e: RuntimePolicyError) => e.code === 'BAD_JSON');
});

test('excludes: Python syntax translated ((?P<n>), \\Z), what JavaScript would read differently refused', () => {
  assert.is(translateExclude('/(?P<d>usr)/(?P=d)\\Z', 'x'), '/(?<d>usr)/\\k<d>$(?![\\s\\S])');
  const c = compileRuntimePolicy(policy({ excludes: ['/var/log/.*\\.log\\Z'] }));
  assert.ok(c.exclude!.test('/var/log/a.log'));
  assert.not.ok(c.exclude!.test('/var/log/a.log.sh'));
  assert.throws(() => translateExclude('/a++', 'x'), (e: RuntimePolicyError) => /possessive/.test(e.message));
});

test('real list: a policy generated from the QEMU list passes it, bound to its PCR 10; one file dropped is named', () => {
  const dir = ROOT + 'test/data/ima/qemu-debian/';
  const l = parseImaList(readFileSync(dir + 'binary_runtime_measurements'));
  const pcrs = JSON.parse(readFileSync(dir + 'pcrs.json', 'utf8'));
  const b = bindImaToQuote(l.entries, l.bank, { count: 0, pcr10: {} }, new Map([['sha256', Buffer.from(pcrs.sha256['10'], 'hex')]]));
  assert.ok(b.trusted.verified);
  const { policy: p } = policyFromEntries(l.entries);
  const r = checkRuntimePolicy(p, b.trusted);
  assert.ok(r.ok, JSON.stringify(r.failures));
  const dropped = { ...p, digests: Object.fromEntries(Object.entries(p.digests).filter(([k]) => k !== '/bin/busybox')) };
  const r2 = checkRuntimePolicy(dropped, b.trusted);
  assert.equal(r2.failures.map((f) => [f.path, f.code]), [['/bin/busybox', 'UNLISTED_PATH']]);
  assert.ok(r2.verified);
  assert.not.ok(checkRuntimePolicy(p, unverifiedImaEntries(l.entries)).verified);
});

test('maxFailures bounds the report, ok stays false', () => {
  const es = Array.from({ length: 50 }, (_, i) => file(`/f${i}`, `${i}`, undefined, i));
  const r = checkRuntimePolicy(policy(), trusted(es), { maxFailures: 10 });
  assert.equal([r.ok, r.failures.length, r.moreFailures], [false, 10, 40]);
});

test.run();
