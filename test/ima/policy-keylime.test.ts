/**
 * Keylime parity: every case of Keylime's own verifier test (keylime/keylime test/test_ima_verification.py,
 * runtime-policy era) on its own vectors, imported with `importKeylimePolicy`, gives Keylime's verdict here.
 * Plus the import of Keylime's real example policies (test/data/ima/keylime-policy/PROVENANCE.md).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { importKeylimePolicy, importKeylimeAllowlist, keylimeVerificationKeys } from '../../src/ima/keylime.ts';
import { checkRuntimePolicy, type RuntimePolicy, RuntimePolicyError } from '../../src/ima/policy.ts';
import { loadVerificationKey } from '../../src/ima/sig.ts';
import { asciiEntries, readKp, trusted } from './policy-helpers.ts';

const MEASUREMENTS = readKp('measurements');
const SIGNATURES = readKp('signatures');
const BAD_SIGNATURES = readKp('bad-signatures');
const KEYRINGS = readKp('keyrings');
const RSA = readKp('rsa2048pub.pem');
const EC = readKp('secp256k1pub.pem');

const imp = (name: string): RuntimePolicy => importKeylimePolicy(JSON.parse(readKp(name)), name).policy;
const TEST = imp('runtime-policy-test.json');
const WRONG = imp('runtime-policy-wrong.json');
const EMPTY = importKeylimePolicy({ meta: { version: 1 }, digests: {}, excludes: [], keyrings: {}, ima: { ignored_keyrings: [], log_hash_alg: 'sha1', dm_policy: null }, 'ima-buf': {}, 'verification-keys': '' }).policy;
const EXCLUDES = ['boot_aggregate', '/lib/modules/5.4.48-openpower1/kernel/drivers/usb/common/usb-common.ko', '/lib/modules/5.4.48-openpower1/kernel/drivers/gpu/drm/drm_panel_orientation_quirks.ko', '/usr/bin/dd', '/usr/bin/zmore', '/usr/bin/zless'];
const withKeys = (p: RuntimePolicy, ...keys: string[]): RuntimePolicy => ({ ...p, verificationKeys: [...p.verificationKeys, ...keys] });
const withExcludes = (p: RuntimePolicy): RuntimePolicy => ({ ...p, excludes: EXCLUDES });
const verdict = (p: RuntimePolicy, ...texts: string[]) => checkRuntimePolicy(p, trusted(asciiEntries(...texts)));

test('test_measurment_verification: listed digests pass, an empty policy fails every entry', () => {
  assert.ok(verdict(TEST, MEASUREMENTS).ok);
  const r = verdict(EMPTY, MEASUREMENTS);
  assert.not.ok(r.ok);
  assert.is(r.failures.length, 3);
  assert.ok(r.failures.every((f) => f.code === 'UNLISTED_PATH'));
  assert.match(r.failures[1].message, /^entry 1 \/lib\/modules\/5\.4\.48-openpower1\/kernel\/drivers\/usb\/common\/usb-common\.ko: sha256:f1125b94/);
});

test('test_signature_verification: no key fails; the RSA key verifies entry 0 only; both keys verify both', () => {
  const none = verdict(EMPTY, SIGNATURES);
  assert.equal(none.failures.map((f) => f.code), ['BAD_SIGNATURE', 'BAD_SIGNATURE']);
  assert.match(none.failures[0].message, /signature by key f3452d23: no such key in the policy/);
  const rsaOnly = withKeys(EMPTY, RSA);
  const lines = SIGNATURES.split('\n');
  assert.ok(verdict(rsaOnly, lines[0] + '\n').ok);
  const second = verdict(rsaOnly, lines[1] + '\n');
  assert.not.ok(second.ok);
  assert.match(second.failures[0].message, /signature by key 531f4025: no such key/);
  const both = verdict(withKeys(EMPTY, RSA, EC), SIGNATURES);
  assert.ok(both.ok, JSON.stringify(both.failures));
  assert.is(both.passed.signature, 2);
});

test('keyids: the RSA and secp256k1 keys answer to the keyids Keylime stores (4081397027, 1394556965)', () => {
  assert.is(loadVerificationKey(RSA).keyids[0], (4081397027).toString(16));
  assert.is(loadVerificationKey(EC).keyids[0], (1394556965).toString(16).padStart(8, '0'));
});

test('test_ima_buf_verification: the .ima key listed in keyrings passes and is learned', () => {
  const r = verdict(TEST, KEYRINGS);
  assert.ok(r.ok, JSON.stringify(r.failures));
  assert.is(r.passed.keys, 1);
  assert.is(r.learnedKeys.length, 1);
  assert.is(r.learnedKeys[0].keyring, '.ima');
});

test('test_mixed_verfication: every case', () => {
  const keys = (p: RuntimePolicy) => withKeys(p, RSA, EC);
  // every entry is covered by the allowlist and there's no keyring -> pass
  assert.ok(verdict(TEST, MEASUREMENTS, SIGNATURES).ok);
  // entries are not covered by an exclude list (no digests, keys only) -> fail
  const r = verdict(keys(EMPTY), MEASUREMENTS, SIGNATURES);
  assert.not.ok(r.ok);
  assert.equal(r.failures.map((f) => f.index), [0, 1, 2]);
  // covered by allow list or by signature verification -> pass
  assert.ok(verdict(keys(TEST), MEASUREMENTS, SIGNATURES).ok);
  // the signature is valid but the hash in the allowlist is wrong -> pass (runtime-policy era)
  assert.ok(verdict(keys(WRONG), SIGNATURES).ok);
  // the signature is valid and the file is not in the allowlist -> pass
  assert.ok(verdict(keys(EMPTY), SIGNATURES).ok);
  // the signature is invalid (no key) but the correct hash is in the allowlist -> pass
  assert.ok(verdict(TEST, SIGNATURES).ok);
  // no signature, hash correct -> pass
  assert.ok(verdict(TEST, MEASUREMENTS).ok);
  // all files excluded, hashes wrong -> pass
  assert.ok(verdict(withExcludes(WRONG), MEASUREMENTS).ok);
  // all files excluded, signatures valid -> pass
  assert.ok(verdict(keys(withExcludes(TEST)), SIGNATURES).ok);
  assert.ok(verdict(keys(withExcludes(WRONG)), MEASUREMENTS).ok);
  // a malformed signature on an excluded path -> must not pass; on a listed one -> must not pass
  const bad1 = verdict(withExcludes(TEST), BAD_SIGNATURES);
  assert.equal(bad1.failures.map((f) => f.code), ['MALFORMED_SIGNATURE']);
  assert.not.ok(verdict(TEST, BAD_SIGNATURES).ok);
});

test('verification-keys: Keylime\'s JSON keyring string imports both keys, and they verify', () => {
  const p = imp('runtime-policy-verification-keys.json');
  assert.is(p.verificationKeys.length, 2);
  assert.ok(verdict(p, SIGNATURES).ok);
  // encoded twice (json.dumps(keyring.to_string())), as keylime_convert_runtime_policy writes it
  const once = JSON.parse(readKp('runtime-policy-verification-keys.json'))['verification-keys'];
  assert.is(keylimeVerificationKeys(JSON.stringify(once)).length, 2);
  assert.throws(() => keylimeVerificationKeys('{"pubkeys": ["bm90IGEga2V5"]}'), (e: RuntimePolicyError) => e.code === 'BAD_KEY');
});

test('import: Keylime\'s real example policies (FCOS allowlist conversion, signer test, create-policy output)', () => {
  const fcos = importKeylimePolicy(JSON.parse(readKp('runtime-policy-fcos.json')));
  assert.is(Object.keys(fcos.policy.digests).length, 21);
  assert.equal(fcos.policy.digests['/boot/grub2/i386-pc/testload.mod'], ['sha1:68e1d012e3f193dcde955e6ffbbc80e22b0f8778']);
  assert.equal(fcos.policy.digests.boot_aggregate, ['sha256:4309217e9709def327c3409407f4d52907aeba46ef1b4f46529fd095f2ef9fb2']);
  assert.equal(fcos.policy.keyrings['.ima'], ['sha256:a7d52aaa18c23d2d9bb2abb4308c0eeee67387a42259f4a6b1a42257065f3d5a']);
  assert.match(fcos.policy.meta?.generator ?? '', /Keylime generator 2/);
  assert.equal(fcos.warnings, []);
  const signer = importKeylimePolicy(JSON.parse(readKp('sign-runtime-policy.json')));
  assert.is(Object.keys(signer.policy.digests).length, 7);
  // keylime_create_policy's output over a base policy: the test's other list is not in it
  const created = importKeylimePolicy(JSON.parse(readKp('create-policy-sha256.json'))).policy;
  const r = checkRuntimePolicy(created, trusted(asciiEntries(readKp('create-ima-log-sha256'))));
  assert.equal(r.failures.map((f) => [f.path, f.code]), [['boot_aggregate', 'UNLISTED_PATH'], ['/data', 'UNLISTED_PATH']]);
});

test('import: what does not carry over is a warning; what Keylime would refuse is an error', () => {
  const base = JSON.parse(readKp('runtime-policy-test.json'));
  const dm = importKeylimePolicy({ ...base, ima: { ...base.ima, dm_policy: { table_load: {} } }, extra: 1 });
  assert.ok(dm.warnings.some((w) => /dm_policy/.test(w)));
  assert.ok(dm.warnings.some((w) => /unknown field "extra"/.test(w)));
  assert.throws(() => importKeylimePolicy({ ...base, excludes: ['(unclosed'] }), (e: RuntimePolicyError) => e.code === 'BAD_REGEX' && /excludes\[0\]/.test(e.message));
  assert.throws(() => importKeylimePolicy({ ...base, digests: { '/x': ['zz'] } }), (e: RuntimePolicyError) => e.code === 'BAD_DIGEST' && /"\/x"/.test(e.message));
  assert.throws(() => importKeylimePolicy({ meta: { version: 5 }, hashes: {} }), (e: RuntimePolicyError) => /pre-7 JSON format/.test(e.message));
  assert.throws(() => importKeylimePolicy({ payloadType: 'application/vnd.keylime+json', payload: '', signatures: [] }), (e: RuntimePolicyError) => /DSSE/.test(e.message));
  assert.throws(() => importKeylimePolicy({ ...base, meta: { version: 2 } }), (e: RuntimePolicyError) => /meta\.version 2/.test(e.message));
  // wrapped as the tenant's bridge format writes it
  assert.is(Object.keys(importKeylimePolicy({ runtime_policy: base, mb_refstate: null }).policy.digests).length, 6);
});

test('import: the older text allowlist (sha256sum lines) and an exclude list', () => {
  const r = importKeylimeAllowlist('# comment\n1350320e5f7f51553bac8aa403489a1b135bc101  /usr/bin/dd\nd33d5d13792292e202dbf69a6f1b07bc8a02f01424db8489ba7bb7d43c0290ef  /usr/bin/with space\n', '/tmp/.*\n');
  assert.equal(r.policy.digests['/usr/bin/dd'], ['sha1:1350320e5f7f51553bac8aa403489a1b135bc101']);
  assert.ok(r.policy.digests['/usr/bin/with space']);
  assert.equal(r.policy.excludes, ['/tmp/.*']);
  assert.throws(() => importKeylimeAllowlist('not a line\n'), (e: RuntimePolicyError) => /line 1/.test(e.message));
});

test.run();
