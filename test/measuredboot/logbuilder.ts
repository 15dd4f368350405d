/** Builds small TCG event logs byte by byte for the tests (not a test file itself). */
import { createHash } from 'node:crypto';

export const ALG = { sha1: 0x0004, sha256: 0x000b, sha384: 0x000c, sha512: 0x000d, sm3_256: 0x0012 } as const;
const HASH: Record<number, string> = { 4: 'sha1', 0xb: 'sha256', 0xc: 'sha384', 0xd: 'sha512', 0x12: 'sm3' };
const SIZE: Record<number, number> = { 4: 20, 0xb: 32, 0xc: 48, 0xd: 64, 0x12: 32 };

export const u8 = (v: number) => Buffer.from([v]);
export function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}
export function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}
export const hash = (alg: string, ...parts: Buffer[]) => {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** TCG_PCR_EVENT (legacy format). */
export function event1(pcr: number, type: number, data: Buffer, digest = hash('sha1', data)): Buffer {
  return Buffer.concat([u32(pcr), u32(type), digest, u32(data.length), data]);
}

/** TCG_EfiSpecIdEvent data. `algs`: [algId, digestSize]. */
export function specIdData(algs: [number, number][], vendor = Buffer.alloc(0)): Buffer {
  return Buffer.concat([
    Buffer.from('Spec ID Event03\0', 'latin1'),
    u32(0), u8(0), u8(2), u8(0), u8(2),
    u32(algs.length),
    ...algs.flatMap(([a, s]) => [u16(a), u16(s)]),
    u8(vendor.length), vendor,
  ]);
}

export function header(algs: [number, number][] = [[ALG.sha1, 20], [ALG.sha256, 32]]): Buffer {
  return event1(0, 3, specIdData(algs), Buffer.alloc(20));
}

/** TCG_PCR_EVENT2 with digests of `data` (or given ones) for each algorithm. */
export function event2(pcr: number, type: number, data: Buffer, algs: number[] = [ALG.sha1, ALG.sha256], digests?: Buffer[]): Buffer {
  const ds = algs.map((a, i) => Buffer.concat([u16(a), digests?.[i] ?? (HASH[a] ? hash(HASH[a], data) : Buffer.alloc(SIZE[a] ?? 0))]));
  return Buffer.concat([u32(pcr), u32(type), u32(algs.length), ...ds, u32(data.length), data]);
}

export function guidBytes(g: string): Buffer {
  const h = g.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

/** UEFI_VARIABLE_DATA. */
export function variableData(guid: string, name: string, data: Buffer): Buffer {
  return Buffer.concat([guidBytes(guid), u64(name.length), u64(data.length), Buffer.from(name, 'utf16le'), data]);
}

export const EFI_GLOBAL = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
