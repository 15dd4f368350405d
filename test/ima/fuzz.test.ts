/**
 * Bounded, seeded fuzzing of parseImaList, replay and bindImaToQuote: mutated real lists (bit
 * flips, truncations, u32 fields set huge, splices), random bytes and random ASCII lines. Only
 * ImaParseError (parser) or a BootkeyError (replay, binding) may come out; no entry claims more
 * bytes than the input has; each parse is quick; and no mutated list binds to the real PCR 10
 * unless its bound entries are byte-identical to the real ones.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { byteMutation, applyMutations, type ByteMutation, type MutationBounds } from '../helpers/byte-mutations.ts';
import { parseImaList } from '../../src/ima/list.ts';
import { ImaParseError } from '../../src/ima/errors.ts';
import { replayIma } from '../../src/ima/replay.ts';
import { bindImaToQuote } from '../../src/ima/trusted.ts';
import { BootkeyError } from '../../src/errors.ts';
import { K61, K612, pcr10, read } from './helpers.ts';

const SEEDS = [
  read(K61 + 'binary_runtime_measurements'),
  read(K612 + 'binary_runtime_measurements_sha256'),
  read(K61 + 'ascii_runtime_measurements'),
  read(K612 + 'ascii_runtime_measurements_sha256'),
];
const QUOTE = [pcr10(K61), pcr10(K612), pcr10(K61), pcr10(K612)];
const REAL = SEEDS.map((s) => parseImaList(s).entries);

let maxMs = 0;
let bound = 0;
function check(buf: Buffer, seed?: number): void {
  const t0 = performance.now();
  try {
    const l = parseImaList(buf, { maxEntries: 10_000 });
    for (const e of l.entries) {
      assert.ok(e.templateData.length <= buf.length, 'template data longer than the input');
      assert.ok(e.templateHash.length <= 64);
    }
    replayIma(l.entries, l.bank, ['sha1', 'sha256']);
    if (seed !== undefined) {
      try {
        const b = bindImaToQuote(l.entries, l.bank, { count: 0, pcr10: {} }, QUOTE[seed]);
        // Whatever binds must be exactly the real entries (the fields the kernel measured).
        b.trusted.entries.forEach((e, i) => {
          const r = REAL[seed][i];
          // (A violation binds nothing of its fields: consumers must not read them.)
          if (e.violation) return;
          assert.ok(e.templateData.equals(r.templateData), `entry ${i} bound with changed data`);
          assert.is(e.path, r.path);
        });
        bound++;
      } catch (err) {
        if (!(err instanceof BootkeyError)) throw err;
      }
    }
  } catch (e) {
    if (!(e instanceof ImaParseError)) throw new Error(`non-ImaParseError on ${buf.length}-byte input: ${(e as Error)?.stack ?? e}`);
    assert.match(e.message, /at byte \d+|line \d+/);
  }
  maxMs = Math.max(maxMs, performance.now() - t0);
}

const BOUNDS: MutationBounds = { maxFlips: 8, u32Values: [0xffffffff, 0x40000000, 0x01000001, 0x7fffffff, 1000, 0, 1, 4, 20, 32, 255, 256], maxSplice: 512, flipStride: 61 };
const mutation = byteMutation(BOUNDS);
const mutate = (src: Buffer, muts: ByteMutation[], other: Buffer): Buffer => applyMutations(src, muts, other, BOUNDS.flipStride);

test('mutated real lists (binary and ASCII): only ImaParseError / BootkeyError; nothing altered binds', () => {
  const start = performance.now();
  fc.assert(
    fc.property(fc.nat({ max: SEEDS.length - 1 }), fc.nat({ max: SEEDS.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 5 }), (i, j, muts) => {
      check(mutate(SEEDS[i], muts, SEEDS[j]), i);
    }),
    { seed: 0x1a1a, numRuns: 3000 },
  );
  assert.ok(performance.now() - start < 20000, 'took too long');
});

test('every truncation and every u32 set huge in a real binary list', () => {
  const s = SEEDS[0];
  for (let n = 0; n <= s.length; n++) check(s.subarray(0, n), 0);
  for (let p = 0; p + 4 <= s.length; p += 1) {
    const b = Buffer.from(s);
    b.writeUInt32LE(0xfffffff0, p);
    check(b, 0);
  }
});

test('random bytes, random ASCII lines', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => check(Buffer.from(bytes))),
    { seed: 7, numRuns: 2000 },
  );
  const word = fc.stringMatching(/^[0-9a-f:a-z/._ -]{0,70}$/);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('10', '0', '23', '24', 'x'), fc.constantFrom('00'.repeat(20), '11'.repeat(32), 'ab', ''), fc.constantFrom('ima', 'ima-ng', 'ima-sig', 'ima-buf', 'ima-modsig', 'ima-sigv2', 'zz'), word), { maxLength: 8 }), (lines) => {
      check(Buffer.from(lines.map((l) => l.join(' ')).join('\n')));
    }),
    { seed: 8, numRuns: 2000 },
  );
});

test('the unmutated seeds bind; memory stays flat; each parse is quick', () => {
  SEEDS.forEach((s, i) => check(s, i));
  assert.ok(bound >= 4);
  const before = process.memoryUsage().rss;
  for (let k = 0; k < 300; k++) {
    const b = Buffer.from(SEEDS[0]);
    b.writeUInt32LE(0x00ffffff - k, 106 + 24 + 4 + 7);
    check(b);
  }
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown < 64 * 1024 * 1024, `rss grew by ${grown}`);
  assert.ok(maxMs < 1000, `slowest parse took ${maxMs} ms`);
});

test.run();
