/**
 * Bounds-checked big-endian marshalling for TPM 2.0 structures (Part 1 §18 / Part 2 §5).
 * Reader never throws anything but TpmError('MARSHAL'), naming what it was reading,
 * the context (command or file) and the byte offset.
 * @module
 */
import { TpmError } from './errors.ts';

/** Largest TPM2B we accept anywhere (TPM2B_MAX_BUFFER is ~1–2 KiB; NV certs up to a few KiB). */
export const MAX_TPM2B = 16 * 1024;

export class Reader {
  readonly buf: Buffer;
  off: number;
  readonly end: number;
  readonly context: string;

  constructor(buf: Uint8Array, context = 'TPM data', off = 0, end = buf.length) {
    this.buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.off = off;
    this.end = end;
    this.context = context;
  }

  fail(what: string, detail: string): never {
    throw new TpmError('MARSHAL', `${this.context}: ${what} at byte ${this.off}: ${detail}`);
  }

  get remaining(): number {
    return this.end - this.off;
  }

  need(n: number, what: string): void {
    if (n > this.remaining) this.fail(what, `needs ${n} bytes, only ${this.remaining} left`);
  }

  u8(what = 'UINT8'): number {
    this.need(1, what);
    return this.buf[this.off++];
  }
  u16(what = 'UINT16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(what = 'UINT32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  u64(what = 'UINT64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }
  /** A copy of the next n bytes. */
  bytes(n: number, what = 'bytes'): Buffer {
    this.need(n, what);
    const v = Buffer.from(this.buf.subarray(this.off, this.off + n));
    this.off += n;
    return v;
  }
  /** TPM2B: UINT16 size + bytes, size bounded by max. */
  tpm2b(what = 'TPM2B', max = MAX_TPM2B): Buffer {
    const n = this.u16(`${what}.size`);
    if (n > max) this.fail(what, `size ${n} exceeds the maximum ${max}`);
    return this.bytes(n, what);
  }
  /** A sub-reader over a TPM2B's contents, which must be consumed exactly by `fn`. */
  sized<T>(what: string, fn: (r: Reader) => T, max = MAX_TPM2B): T {
    const n = this.u16(`${what}.size`);
    if (n > max) this.fail(what, `size ${n} exceeds the maximum ${max}`);
    this.need(n, what);
    const sub = new Reader(this.buf, this.context, this.off, this.off + n);
    const v = fn(sub);
    if (sub.remaining !== 0) sub.fail(what, `${sub.remaining} unexpected trailing bytes`);
    this.off += n;
    return v;
  }
  /** A TPML count, bounded. */
  count(what: string, max: number): number {
    const n = this.u32(`${what}.count`);
    if (n > max) this.fail(what, `count ${n} exceeds the maximum ${max}`);
    return n;
  }
  /** Asserts the whole input was consumed. */
  done(what = 'structure'): void {
    if (this.remaining !== 0) this.fail(what, `${this.remaining} unexpected trailing bytes`);
  }
}

export class Writer {
  private chunks: Buffer[] = [];
  private len = 0;

  private push(b: Buffer): this {
    this.chunks.push(b);
    this.len += b.length;
    return this;
  }
  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v & 0xff);
    return this.push(b);
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v & 0xffff);
    return this.push(b);
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.push(b);
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    return this.push(b);
  }
  bytes(v: Uint8Array): this {
    return this.push(Buffer.from(v));
  }
  /** TPM2B: UINT16 size + bytes. */
  tpm2b(v: Uint8Array): this {
    if (v.length > 0xffff) throw new TpmError('MARSHAL', `TPM2B of ${v.length} bytes is too large`);
    return this.u16(v.length).bytes(v);
  }
  get length(): number {
    return this.len;
  }
  finish(): Buffer {
    return Buffer.concat(this.chunks, this.len);
  }
}

/** Marshals with a fresh Writer. */
export function marshal(fn: (w: Writer) => void): Buffer {
  const w = new Writer();
  fn(w);
  return w.finish();
}

/** Unmarshals the whole of buf with fn; trailing bytes are an error. */
export function unmarshal<T>(buf: Uint8Array, context: string, fn: (r: Reader) => T): T {
  const r = new Reader(buf, context);
  const v = fn(r);
  r.done(context);
  return v;
}
