/**
 * Bounded, seeded fuzzing of parseEventLog (and replay): mutated corpus logs (bit flips,
 * truncations, huge size fields, splices) and random bytes. Only EventLogError may come out,
 * each parse is quick, no event claims more data than the input has, and memory stays flat.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { byteMutation, applyMutations, type ByteMutation, type MutationBounds } from '../helpers/byte-mutations.ts';
import { parseEventLog, replay, EventLogError } from '../../src/measuredboot/index.ts';

const DIR = fileURLToPath(new URL('../data/eventlogs/', import.meta.url));
const SEEDS = [
  'google__go-tpm-tools__internal__test__eventlogs__rhel8-uefi.bin',
  'google__go-tpm-tools__internal__test__eventlogs__arch-linux-workstation.bin',
  'google__go-tpm-tools__internal__test__eventlogs__debian-10.bin',
  'grawity__tpm_futurepcr__tests__fixtures__ACTUAL_SYSTEMS__HP_Compaq_TPM1.2_UEFI_SB_Windows.log',
  'tpm2-software__tpm2-tss__test__data__fapi__eventlog__binary_measurements_hcrtm.b64.bin',
  'google__go-eventlog__testdata__eventlogs__ccel__cos-113-intel-tdx-dupe-separator-unpadded.bin',
  'tpm2-software__tpm2-tools__test__integration__fixtures__event-uefivar.bin',
].map((f) => readFileSync(DIR + f));

let maxMs = 0;
/** Parses; anything but an EventLogError fails the test. */
function check(buf: Buffer): void {
  const t0 = performance.now();
  try {
    const log = parseEventLog(buf);
    assert.ok(log.length <= buf.length);
    for (const e of log.events) {
      assert.ok(e.data.length <= buf.length, 'event data longer than the input');
      assert.ok(e.offset < buf.length);
    }
    replay(log);
    JSON.stringify(log.events.map((e) => e.decoded), (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  } catch (e) {
    if (!(e instanceof EventLogError)) throw new Error(`non-EventLogError on ${buf.length}-byte input: ${(e as Error)?.stack ?? e}`);
    assert.match(e.message, /at byte \d+/);
  }
  maxMs = Math.max(maxMs, performance.now() - t0);
}

const BOUNDS: MutationBounds = { maxFlips: 16, u32Values: [0xffffffff, 0x40000000, 0x01000001, 0x7fffffff, 1000, 0, 2, 4, 0xffff], maxSplice: 2048, flipStride: 97 };
const mutation = byteMutation(BOUNDS);
const mutate = (src: Buffer, muts: ByteMutation[], other: Buffer): Buffer => applyMutations(src, muts, other, BOUNDS.flipStride);

test('mutated corpus logs: only EventLogError, bounded', () => {
  const start = performance.now();
  fc.assert(
    fc.property(fc.nat({ max: SEEDS.length - 1 }), fc.nat({ max: SEEDS.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 6 }), (i, j, muts) => {
      check(mutate(SEEDS[i], muts, SEEDS[j]));
    }),
    { seed: 0x5eed, numRuns: 2500 },
  );
  assert.ok(performance.now() - start < 8000, 'took too long');
});

test('every truncation of a small log, and every event-size field set huge', () => {
  const log = SEEDS[6];
  for (let n = 0; n <= log.length; n++) check(log.subarray(0, n));
  const rhel = parseEventLog(SEEDS[0]);
  for (const e of rhel.events.slice(0, 40)) {
    const b = Buffer.from(SEEDS[0]);
    const sizeAt = e.offset + (e.index === 0 ? 28 : 4 + 4 + 4 + 3 * 2 + 20 + 32 + 48);
    for (const v of [0x40000000, 0xffffffff, b.length]) {
      b.writeUInt32LE(v, sizeAt);
      check(b);
      try {
        parseEventLog(b);
        assert.unreachable(`size ${v} of event ${e.index} accepted`);
      } catch (err) {
        assert.instance(err, EventLogError);
        assert.ok(['TOO_LARGE', 'TRUNCATED', 'BAD_HEADER'].includes((err as EventLogError).code), (err as Error).message);
      }
    }
  }
});

test('random bytes, and random bytes after a valid header', () => {
  const header = SEEDS[0].subarray(0, parseEventLog(SEEDS[0]).events[1].offset);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4096 }), fc.boolean(), (bytes, withHeader) => {
      check(withHeader ? Buffer.concat([header, bytes]) : Buffer.from(bytes));
    }),
    { seed: 42, numRuns: 3000 },
  );
});

test('memory stays flat: 64 MiB of claimed sizes do not allocate', () => {
  global.gc?.();
  const before = process.memoryUsage().rss;
  const b = Buffer.from(SEEDS[0]);
  for (let k = 0; k < 200; k++) {
    b.writeUInt32LE(0x00ffffff - k, 32 + 4 + 4 + 4 + 3 * 2 + 20 + 32 + 48 + 41);
    check(b);
  }
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown < 64 * 1024 * 1024, `rss grew by ${grown}`);
  assert.ok(maxMs < 1000, `slowest parse took ${maxMs} ms`);
});

test.run();
