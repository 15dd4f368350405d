/**
 * Byte-level mutations for the decoders' fuzz tests (event logs, IMA lists): bit flips, truncation,
 * a chosen u32 written anywhere (length fields), and a splice from another seed. Each suite picks
 * its own bounds; the same seed then gives the same inputs as before this helper existed.
 * @module
 */
import fc from 'fast-check';

export type ByteMutation =
  | { kind: 'flip'; pos: number; bit: number; n: number }
  | { kind: 'truncate'; pos: number }
  | { kind: 'u32'; pos: number; value: number }
  | { kind: 'splice'; from: number; to: number; len: number; other: number };

export interface MutationBounds {
  /** Most bits flipped by one flip mutation. */
  maxFlips: number;
  /** Values written as little-endian u32. */
  u32Values: number[];
  /** Longest splice taken from the other seed. */
  maxSplice: number;
  /** Distance between the flipped bytes of one flip mutation. */
  flipStride: number;
}

export function byteMutation(b: MutationBounds): fc.Arbitrary<ByteMutation> {
  return fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat({ max: 7 }), n: fc.integer({ min: 1, max: b.maxFlips }) }),
    fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
    fc.record({ kind: fc.constant('u32' as const), pos: fc.nat(), value: fc.constantFrom(...b.u32Values) }),
    fc.record({ kind: fc.constant('splice' as const), from: fc.nat(), to: fc.nat(), len: fc.nat({ max: b.maxSplice }), other: fc.nat() }),
  );
}

/** `src` with `muts` applied in order (a copy; `other` supplies spliced bytes). */
export function applyMutations(src: Buffer, muts: ByteMutation[], other: Buffer, flipStride: number): Buffer {
  let b = Buffer.from(src);
  for (const m of muts) {
    if (b.length === 0) break;
    switch (m.kind) {
      case 'flip':
        for (let i = 0; i < m.n; i++) b[(m.pos + i * flipStride) % b.length] ^= 1 << m.bit;
        break;
      case 'truncate':
        b = b.subarray(0, m.pos % (b.length + 1));
        break;
      case 'u32':
        if (b.length >= 4) b.writeUInt32LE(m.value >>> 0, m.pos % (b.length - 3));
        break;
      case 'splice': {
        const o = m.other % Math.max(other.length, 1);
        b = Buffer.concat([b.subarray(0, m.from % b.length), other.subarray(o, o + m.len), b.subarray(m.to % b.length)]);
        break;
      }
    }
  }
  return b;
}
