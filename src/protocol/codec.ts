/**
 * Framing and CBOR coding (RFC 8949, via cbor-x) of bootkey's wire messages.
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of CBOR; one frame holds
 * one message, a CBOR map with a protocol version `v` and a type `t`. Frames are bounded
 * (MAX_FRAME) before any allocation; decoding refuses trailing bytes, and every message is
 * validated field by field (src/protocol/messages.ts) before anyone looks at it.
 * @module
 */
import { Encoder } from 'cbor-x';
import { ProtocolError } from './errors.ts';

/** Largest frame accepted: an event log (≤ 1 MiB here) plus a quote and PCRs fit easily. */
export const MAX_FRAME = 2 * 1024 * 1024;

const cbor = new Encoder({ mapsAsObjects: true, useRecords: false, tagUint8Array: false, int64AsType: 'number' } as ConstructorParameters<typeof Encoder>[0]);

/** Encodes `v`; cbor-x's shared output region is zeroed after the copy (messages carry shares). */
export function encodeCbor(v: unknown): Buffer {
  const shared = cbor.encode(v);
  const out = Buffer.from(shared);
  shared.fill(0);
  return out;
}

/** Decodes exactly one CBOR item; anything else is ProtocolError('BAD_MESSAGE'). */
export function decodeCbor(b: Uint8Array): unknown {
  try {
    return cbor.decode(b);
  } catch (e) {
    throw new ProtocolError('BAD_MESSAGE', `not a valid CBOR message: ${(e as Error).message}`);
  }
}

export function frame(payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME) throw new ProtocolError('TOO_LARGE', `message of ${payload.length} bytes exceeds the ${MAX_FRAME}-byte limit`);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(payload.length);
  return Buffer.concat([h, payload]);
}

/**
 * Incremental deframer: push() bytes as they arrive, next() returns complete frames.
 * A length over `max` is refused before anything is buffered for it.
 */
export class Deframer {
  private chunks: Buffer[] = [];
  private have = 0;
  constructor(private readonly max = MAX_FRAME) {}

  push(b: Buffer): void {
    this.chunks.push(b);
    this.have += b.length;
  }

  /** The next complete frame, or undefined if more bytes are needed. */
  next(): Buffer | undefined {
    if (this.have < 4) return undefined;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.have);
    this.chunks = [all];
    const n = all.readUInt32BE(0);
    if (n > this.max) throw new ProtocolError('TOO_LARGE', `peer announced a ${n}-byte message, the limit is ${this.max}`);
    if (this.have < 4 + n) return undefined;
    const f = Buffer.from(all.subarray(4, 4 + n));
    all.fill(0, 0, 4 + n); // the copy is the only one left (frames may carry secrets)
    const rest = all.subarray(4 + n);
    this.chunks = rest.length ? [rest] : [];
    this.have = rest.length;
    return f;
  }

  get buffered(): number {
    return this.have;
  }
}
