/**
 * A tiny bounded little-endian reader. Every read checks the remaining length first and
 * throws EventLogError (with the absolute byte offset) instead of a Buffer RangeError.
 * @module
 */
import { EventLogError } from './errors.ts';

export class Reader {
  /** Current position, relative to `buf`. */
  pos = 0;
  /** Index of the event being read (for error messages). */
  eventIndex?: number;

  /**
   * @param buf the bytes to read
   * @param base absolute offset of `buf[0]` in the log, for error messages
   */
  constructor(
    readonly buf: Buffer,
    readonly base = 0,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Absolute offset in the log of the current position. */
  get offset(): number {
    return this.base + this.pos;
  }

  fail(code: ConstructorParameters<typeof EventLogError>[0], message: string, at = this.pos): never {
    throw new EventLogError(code, message, this.base + at, this.eventIndex);
  }

  need(n: number, what: string): void {
    if (n > this.remaining) this.fail('TRUNCATED', `${what} needs ${n} bytes, only ${this.remaining} left`);
  }

  u8(what = 'UINT8'): number {
    this.need(1, what);
    return this.buf[this.pos++];
  }

  u16(what = 'UINT16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what = 'UINT32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(what = 'UINT64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A UINT64 length that must fit in the remaining bytes (times `unit`): returned as a number. */
  len64(what: string, unit = 1): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v * BigInt(unit) > BigInt(this.remaining)) this.fail('BAD_SIZE', `${what} ${v}${unit > 1 ? ` (x${unit} bytes)` : ''} exceeds the ${this.remaining} bytes left`, at);
    return Number(v);
  }

  /** A view (no copy) of the next n bytes. */
  bytes(n: number, what = 'bytes'): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Buffer {
    return this.bytes(this.remaining);
  }

  skip(n: number, what = 'bytes'): void {
    this.need(n, what);
    this.pos += n;
  }
}
