/**
 * The Authenticode digest of a large image hashed on a second thread, so that `bootkey efi show`
 * hashes a UKI's sections (PCR 11) and the image (PCR 4) at the same time: on a 58 MB UKI the
 * two passes are ~60-70 ms each. The bytes live in a SharedArrayBuffer, read once; the caller's
 * thread blocks in Atomics.wait only when it needs the result, and falls back to hashing itself
 * if the worker fails or does not answer within `timeoutMs`.
 * @module
 */
import { Worker } from 'node:worker_threads';
import { type DigestName, type Digests, authenticodeRanges, authenticodeDigests, parsePe } from './pe.ts';

// CommonJS source run with `eval: true`: no file to ship next to the bundle or the SEA.
const WORKER = `
const { workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { sab, ranges, banks, out, flag } = workerData;
const f = new Int32Array(flag);
try {
  const buf = Buffer.from(sab);
  const hs = banks.map((b) => createHash(b));
  for (const [a, b] of ranges) if (b > a) { const c = buf.subarray(a, b); for (const h of hs) h.update(c); }
  const o = Buffer.from(out);
  hs.forEach((h, i) => h.digest().copy(o, i * 64));
  Atomics.store(f, 0, 1);
} catch {
  Atomics.store(f, 0, 2);
}
Atomics.notify(f, 0);
`;

/** Reads a file's bytes into a SharedArrayBuffer-backed Buffer (what {@link startImageDigests} needs). */
export function sharedCopy(bytes: Buffer): Buffer {
  const b = Buffer.from(new SharedArrayBuffer(bytes.length));
  bytes.copy(b);
  return b;
}

/**
 * Starts hashing the Authenticode ranges of `bytes` (a Buffer over a SharedArrayBuffer) in `banks`
 * on a worker thread; the returned function blocks until the digests are ready.
 * @throws EfiError when the image does not parse (before any thread starts)
 */
export function startImageDigests(bytes: Buffer, banks: readonly DigestName[], timeoutMs = 60_000): () => Partial<Digests> {
  const pe = parsePe(bytes);
  if (!(bytes.buffer instanceof SharedArrayBuffer)) return () => authenticodeDigests(pe, banks);
  const ranges = authenticodeRanges(pe).map(([a, b]) => [a + bytes.byteOffset, b + bytes.byteOffset]);
  const out = new SharedArrayBuffer(64 * banks.length);
  const flag = new SharedArrayBuffer(4);
  let worker: Worker | undefined;
  try {
    worker = new Worker(WORKER, { eval: true, workerData: { sab: bytes.buffer, ranges, banks: [...banks], out, flag } });
    worker.unref();
  } catch {
    return () => authenticodeDigests(pe, banks);
  }
  return () => {
    const f = new Int32Array(flag);
    Atomics.wait(f, 0, 0, timeoutMs);
    const ok = Atomics.load(f, 0) === 1;
    void worker!.terminate();
    if (!ok) return authenticodeDigests(pe, banks);
    const o = Buffer.from(out);
    return Object.fromEntries(banks.map((b, i) => [b, Buffer.from(o.subarray(i * 64, i * 64 + ({ sha1: 20, sha256: 32, sha384: 48, sha512: 64 } as const)[b]))]));
  };
}
