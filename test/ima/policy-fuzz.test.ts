/**
 * Seeded fuzzing of the runtime-policy loader, the Keylime import, the IMA signature parser and
 * the signature / modsig verifiers: only RuntimePolicyError / ImaSigError may come out of the
 * loaders, the verifiers never throw and never accept a mutated signature, each call is quick.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { sign } from 'node:crypto';
import { loadRuntimePolicy, RuntimePolicyError, serializeRuntimePolicy, checkRuntimePolicy } from '../../src/ima/policy.ts';
import { importKeylimePolicy } from '../../src/ima/keylime.ts';
import { ImaSigError, keyIndex, loadVerificationKey, parseImaSignature, verifyImaSignature, verifyModsig } from '../../src/ima/sig.ts';
import { entry, pem, policy, readKp, rsaKey, ecKey, sha256, trusted } from './policy-helpers.ts';

const SEED = 0x1ba;
const rsa = rsaKey();
const ec = ecKey();
const keys = [loadVerificationKey(pem(rsa.publicKey)), loadVerificationKey(pem(ec.publicKey))];
const index = keyIndex(keys);
const digest = sha256('fuzzed file');

function v2(priv: typeof rsa.privateKey, k: (typeof keys)[0]): Buffer {
  const raw = sign('sha256', Buffer.from('fuzzed file'), priv);
  const h = Buffer.alloc(9); h[0] = 3; h[1] = 2; h[2] = 4; Buffer.from(k.keyids[0], 'hex').copy(h, 3); h.writeUInt16BE(raw.length, 7);
  return Buffer.concat([h, raw]);
}
const GOOD = [v2(rsa.privateKey, keys[0]), v2(ec.privateKey, keys[1])];

const mutation = (len: number) => fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: len - 1 }), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat({ max: len }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat({ max: len - 1 }), v: fc.nat({ max: 255 }) }),
);
function mutate(b: Buffer, m: { kind: 'flip' | 'cut' | 'set'; at: number; bit?: number; v?: number }): Buffer {
  const c = Buffer.from(b);
  if (m.kind === 'cut') return c.subarray(0, m.at);
  if (m.kind === 'flip') c[m.at] ^= 1 << m.bit!;
  else c[m.at] = m.v!;
  return c;
}

test('signature parser and verifier: random and mutated signatures never throw, never verify once changed', () => {
  let maxMs = 0;
  fc.assert(fc.property(fc.nat({ max: 1 }), fc.array(mutation(300), { minLength: 1, maxLength: 3 }), (which, ms) => {
    const good = GOOD[which];
    let b = good;
    for (const m of ms) b = mutate(b, { ...m, at: Math.min(m.at, Math.max(0, b.length - 1)) });
    const t0 = performance.now();
    try {
      parseImaSignature(b);
    } catch (e) {
      assert.instance(e, ImaSigError);
    }
    const r = verifyImaSignature(b, 'sha256', digest, index);
    maxMs = Math.max(maxMs, performance.now() - t0);
    // a changed signature verifies only if the change kept the same bytes, or hit ECDSA's benign DER slack (none: strict DER)
    if (r.ok) assert.ok(b.equals(good) || (b.length === good.length && b.subarray(3, 7).equals(good.subarray(3, 7)) && b[0] === 5), `mutated signature verified: ${b.toString('hex')}`);
  }), { seed: SEED, numRuns: 400 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
    const r = verifyImaSignature(bytes, 'sha256', digest, index);
    assert.not.ok(r.ok);
  }), { seed: SEED, numRuns: 300 });
  assert.ok(maxMs < 500, `slowest ${maxMs} ms`);
});

test('modsig verifier: random and truncated DER never throws', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
    assert.not.ok(verifyModsig(bytes, 'sha256', digest, keys).ok);
    assert.not.ok(verifyModsig(Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), bytes]), 'sha256', digest, keys).ok);
  }), { seed: SEED, numRuns: 300 });
});

test('policy loader: mutated real policies and random JSON give RuntimePolicyError or a policy that checks', () => {
  const base = serializeRuntimePolicy(importKeylimePolicy(JSON.parse(readKp('runtime-policy-verification-keys.json'))).policy);
  const seeds = [base, serializeRuntimePolicy(importKeylimePolicy(JSON.parse(readKp('runtime-policy-fcos.json'))).policy)];
  const e = trusted([entry({ path: '/usr/bin/dd', sig: GOOD[0] })]);
  fc.assert(fc.property(fc.nat({ max: 1 }), fc.array(mutation(4000), { minLength: 1, maxLength: 4 }), (which, ms) => {
    let b: Buffer = Buffer.from(seeds[which]);
    for (const m of ms) b = mutate(b, { ...m, at: Math.min(m.at, Math.max(0, b.length - 1)) });
    try {
      const p = loadRuntimePolicy(b);
      checkRuntimePolicy(p, e); // whatever loads also compiles and judges
    } catch (err) {
      assert.instance(err, RuntimePolicyError);
    }
  }), { seed: SEED, numRuns: 300 });
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
    for (const obj of [v, { format: 'bootkey-runtime-policy', version: 1, digests: v }, { format: 'bootkey-runtime-policy', version: 1, excludes: v, verificationKeys: v }]) {
      try {
        checkRuntimePolicy(loadRuntimePolicy(JSON.stringify(obj ?? null)), e);
      } catch (err) {
        assert.instance(err, RuntimePolicyError);
      }
    }
  }), { seed: SEED, numRuns: 500 });
});

test('Keylime import: random JSON and mutated real policies give RuntimePolicyError or a valid policy', () => {
  const real = JSON.parse(readKp('runtime-policy-test.json'));
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), fc.constantFrom('digests', 'excludes', 'keyrings', 'ima', 'ima-buf', 'verification-keys', 'meta'), (v, field) => {
    for (const obj of [v, { ...real, [field]: v }]) {
      try {
        const r = importKeylimePolicy(obj);
        loadRuntimePolicy(serializeRuntimePolicy(r.policy));
      } catch (err) {
        assert.instance(err, RuntimePolicyError);
      }
    }
  }), { seed: SEED, numRuns: 500 });
});

test.run();
