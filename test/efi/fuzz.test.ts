/**
 * Bounded, seeded fuzzing of the EFI layer (efiReport: PE headers, Authenticode digests, the
 * certificate table and PKCS#7, UKI sections and the nested .linux PE): bit flips, truncations,
 * huge 32-bit fields, splices, aimed at the headers and at the signature. Only EfiError may come
 * out, each run is quick, and memory stays flat.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { efiReport, parsePe, verifyAuthenticode, EfiError } from '../../src/efi/index.ts';
import { buildPe } from './build-pe.ts';
import { ROOT } from './helpers.ts';

const SIGNED = readFileSync(ROOT + 'test/data/efi/tiny-uki.signed.efi');
const CA = [new X509Certificate(readFileSync(ROOT + 'test/data/efi/tiny-signer.pem'))];
const SEEDS = [SIGNED, readFileSync(ROOT + 'test/data/efi/tiny-uki.efi'), buildPe({ pe32plus: false, nrva: 6 }), buildPe({ nrva: 3 })];
const CERT_AT = parsePe(SIGNED).certTable!.offset;

let maxMs = 0;
/** efiReport with the CA; anything but an EfiError fails the test. Returns the signature state. */
function check(buf: Buffer): string {
  const t0 = performance.now();
  try {
    const r = efiReport(buf, CA);
    assert.ok(['valid', 'invalid', 'none'].includes(r.signature));
    JSON.stringify(r);
    return r.signature;
  } catch (e) {
    if (!(e instanceof EfiError)) throw new Error(`non-EfiError on a ${buf.length}-byte input: ${(e as Error)?.stack ?? e}`);
    assert.match(e.message, /^at byte \d+: /);
    assert.ok(e.offset >= 0 && e.offset <= buf.length + 0x100000000, `offset ${e.offset}`);
    return 'refused';
  } finally {
    maxMs = Math.max(maxMs, performance.now() - t0);
  }
}

type Mutation =
  | { kind: 'flip'; pos: number; bit: number; n: number; region: 'head' | 'cert' | 'any' }
  | { kind: 'truncate'; pos: number }
  | { kind: 'u32'; pos: number; value: number; region: 'head' | 'cert' | 'any' }
  | { kind: 'splice'; from: number; to: number; len: number; other: number };

const region = fc.constantFrom('head' as const, 'cert' as const, 'any' as const);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat({ max: 7 }), n: fc.integer({ min: 1, max: 8 }), region }),
  fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('u32' as const), pos: fc.nat(), value: fc.constantFrom(0xffffffff, 0x7fffffff, 0x40000000, 0x10000, 0x1000, 0x200, 8, 4, 0, 0x20b, 0x10b), region }),
  fc.record({ kind: fc.constant('splice' as const), from: fc.nat(), to: fc.nat(), len: fc.nat({ max: 512 }), other: fc.nat() }),
);

function at(b: Buffer, pos: number, r: 'head' | 'cert' | 'any'): number {
  if (r === 'head') return pos % Math.min(b.length, 0x400);
  if (r === 'cert' && b.length > CERT_AT) return CERT_AT + (pos % (b.length - CERT_AT));
  return pos % b.length;
}

function mutate(src: Buffer, muts: Mutation[], other: Buffer): Buffer {
  let b = Buffer.from(src);
  for (const m of muts) {
    if (b.length < 4) break;
    switch (m.kind) {
      case 'flip':
        for (let i = 0; i < m.n; i++) b[at(b, m.pos + i * 31, m.region)] ^= 1 << m.bit;
        break;
      case 'truncate':
        b = b.subarray(0, m.pos % (b.length + 1));
        break;
      case 'u32':
        b.writeUInt32LE(m.value >>> 0, Math.min(at(b, m.pos, m.region), b.length - 4));
        break;
      case 'splice': {
        const f = m.from % b.length;
        const o = m.other % Math.max(other.length, 1);
        b = Buffer.concat([b.subarray(0, f), other.subarray(o, o + m.len), b.subarray(m.to % b.length)]);
        break;
      }
    }
  }
  return b;
}

test('the seeds are what the fuzzing needs: a valid signed UKI, an unsigned one, PE32, no cert entry', () => {
  assert.is(efiReport(SIGNED, CA).signature, 'valid');
  assert.ok(efiReport(SIGNED).uki);
  assert.is(efiReport(SEEDS[1]).signature, 'none');
  assert.is(efiReport(SEEDS[2]).file.format, 'PE32');
  assert.is(parsePe(SEEDS[3]).certTable, undefined);
});

test('mutated images: only EfiError, bounded', () => {
  const start = performance.now();
  let refused = 0;
  let invalid = 0;
  fc.assert(
    fc.property(fc.nat({ max: SEEDS.length - 1 }), fc.nat({ max: SEEDS.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 5 }), (i, j, muts) => {
      const r = check(mutate(SEEDS[i], muts, SEEDS[j]));
      if (r === 'refused') refused++;
      if (r === 'invalid') invalid++;
    }),
    { seed: 0xef1, numRuns: 800 },
  );
  assert.ok(refused > 100 && invalid > 30, `the mutations reach both the refusals (${refused}) and the signature checks (${invalid})`);
  assert.ok(performance.now() - start < 30000, 'took too long');
});

test('every byte of the signature flipped: valid only for the fields nobody uses', () => {
  // Offsets in the PKCS#7 of test/data/efi/tiny-uki.signed.efi (openssl asn1parse) whose flip
  // leaves the signature valid, as with OpenSSL's PKCS7_verify: SignedData.version (25), the
  // digestAlgorithms SET contents (32-41), SignerInfo.version (992), and the NULL parameters of
  // the signer's digest (1067) and signature (1314) algorithms. Every other bit 0 of every byte —
  // lengths, tags, certificates, attributes, digests, the RSA signature — invalidates it or is refused.
  const derStart = CERT_AT + 8;
  const derEnd = derStart + parseDerLength(SIGNED.subarray(derStart));
  assert.is(derEnd, SIGNED.length, 'sbsign leaves no padding after this one');
  const benign = [25, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 992, 1067, 1314];
  const stillValid: number[] = [];
  const outcomes = new Map<string, number>();
  for (let off = CERT_AT; off < SIGNED.length; off++) {
    const b = Buffer.from(SIGNED);
    b[off] ^= 0x01;
    let r: string;
    try {
      const res = verifyAuthenticode(parsePe(b), CA);
      r = res.some((x) => x.valid) ? 'valid' : 'invalid';
    } catch (e) {
      assert.instance(e, EfiError);
      assert.ok(off < CERT_AT + 8, `refused for a flip at ${off}, past the WIN_CERTIFICATE header`);
      r = 'refused';
    }
    outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
    if (r === 'valid') stillValid.push(off - derStart);
  }
  assert.equal(stillValid, benign);
  assert.ok((outcomes.get('invalid') ?? 0) > 300 && (outcomes.get('refused') ?? 0) <= 8, JSON.stringify([...outcomes]));
});

/** Length of the outer DER element (tag 0x30, definite length). */
function parseDerLength(d: Buffer): number {
  assert.is(d[0], 0x30);
  if (d[1] < 0x80) return 2 + d[1];
  const n = d[1] & 0x7f;
  return 2 + n + d.subarray(2, 2 + n).reduce((a, x) => a * 256 + x, 0);
}

test('every truncation of the headers, and every header u32 set huge', () => {
  for (let n = 0; n <= 0x400; n += 3) check(SIGNED.subarray(0, n));
  for (let off = 0; off < 0x400; off += 6) {
    for (const v of [0xffffffff, 0x40000000, SIGNED.length]) {
      const b = Buffer.from(SIGNED);
      b.writeUInt32LE(v >>> 0, off);
      check(b);
    }
  }
});

test('random bytes, and random bytes after valid headers', () => {
  const head = SIGNED.subarray(0, 0x400);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4096 }), fc.boolean(), (bytes, withHead) => {
      check(withHead ? Buffer.concat([head, bytes]) : Buffer.from(bytes));
    }),
    { seed: 7, numRuns: 1000 },
  );
});

test('memory stays flat: huge VirtualSize and SizeOfRawData do not allocate', () => {
  global.gc?.();
  const before = process.memoryUsage().rss;
  const pe = parsePe(SIGNED);
  for (const s of pe.sections) {
    for (const v of [0x7fffffff, 0x3fffffff, 0x01000001]) {
      const b = Buffer.from(SIGNED);
      b.writeUInt32LE(v, s.headerOffset + 8); // VirtualSize
      check(b);
      const c = Buffer.from(SIGNED);
      c.writeUInt32LE(v, s.headerOffset + 16); // SizeOfRawData
      check(c);
    }
  }
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown < 128 * 1024 * 1024, `rss grew by ${grown}`);
  assert.ok(maxMs < 1000, `slowest run took ${maxMs} ms`);
});

test.run();
