/**
 * A simulated machine's IMA measurement list (issue 12 §6): binary `ima-sig` entries in the
 * classic `binary_runtime_measurements` layout (sha1 template hashes), as Debian's kernel writes
 * them with `ima_policy=tcb` (the real lists in test/data/ima/qemu-debian12/ have this shape),
 * and the running PCR 10 in the sha1 and sha256 banks (sha256: H(template data), kernels ≥ 5.8).
 *
 * Entry 0 is boot_aggregate = SHA-256 over the sha256 values of PCRs 0–9 (what Debian's 6.1
 * kernel records: checked on the real list). Later entries are files from a fixed pool of paths
 * with deterministic digests (so one runtime policy covers every simulated machine); a machine's
 * list grows by appending pool entries, like a running system that executes or reads files.
 * @module
 */
import { createHash } from 'node:crypto';
import type { BankName } from '../../src/pcrs.ts';

/** The pool of measured files: realistic paths (libraries, executables, units), fixed digests. */
export function filePool(n: number): { path: string; digest: Buffer }[] {
  const dirs = ['/usr/lib/x86_64-linux-gnu/', '/usr/bin/', '/usr/sbin/', '/usr/lib/systemd/system/', '/usr/lib/python3/dist-packages/pkg/', '/etc/'];
  const out: { path: string; digest: Buffer }[] = [];
  for (let i = 0; i < n; i++) {
    const path = `${dirs[i % dirs.length]}file-${i.toString(36)}${i % 6 === 0 ? '.so.1' : ''}`;
    out.push({ path, digest: createHash('sha256').update('bootkey-bench-file:' + path).digest() });
  }
  return out;
}

/** ima-sig template data: d-ng ("sha256:\0" + digest), n-ng (path + NUL), sig (empty). */
export function imaSigData(path: string, digest: Buffer, algo = 'sha256'): Buffer {
  const d = Buffer.concat([Buffer.from(algo + ':\0'), digest]);
  const n = Buffer.from(path + '\0');
  const parts: Buffer[] = [];
  for (const f of [d, n, Buffer.alloc(0)]) {
    const l = Buffer.alloc(4);
    l.writeUInt32LE(f.length);
    parts.push(l, f);
  }
  return Buffer.concat(parts);
}

/** One binary-list entry (sha1 template hash) and its template hashes per bank. */
export function imaEntry(data: Buffer, template = 'ima-sig'): { bytes: Buffer; sha1: Buffer; sha256: Buffer } {
  const sha1 = createHash('sha1').update(data).digest();
  const sha256 = createHash('sha256').update(data).digest();
  const head = Buffer.alloc(4 + 20 + 4);
  head.writeUInt32LE(10, 0);
  sha1.copy(head, 4);
  head.writeUInt32LE(template.length, 24);
  const dl = Buffer.alloc(4);
  dl.writeUInt32LE(data.length);
  return { bytes: Buffer.concat([head, Buffer.from(template), dl, data]), sha1, sha256 };
}

/** boot_aggregate over the sha256 values of PCRs 0–9 (in order). */
export function bootAggregate(sha256Pcrs: (p: number) => Buffer): Buffer {
  const h = createHash('sha256');
  for (let i = 0; i < 10; i++) h.update(sha256Pcrs(i));
  return h.digest();
}

/** A growing list: its bytes (one Buffer per entry) and PCR 10 per bank after each append. */
export class SimImaList {
  readonly entries: Buffer[] = [];
  pcr10: Record<'sha1' | 'sha256', Buffer> = { sha1: Buffer.alloc(20), sha256: Buffer.alloc(32) };
  #next: number;

  constructor(readonly pool: { path: string; digest: Buffer }[], aggregate: Buffer, start = 0) {
    this.#push(imaSigData('boot_aggregate', aggregate));
    this.#next = start;
  }

  #push(data: Buffer): void {
    const e = imaEntry(data);
    this.entries.push(e.bytes);
    this.pcr10 = {
      sha1: createHash('sha1').update(this.pcr10.sha1).update(e.sha1).digest(),
      sha256: createHash('sha256').update(this.pcr10.sha256).update(e.sha256).digest(),
    };
  }

  /** Appends `n` entries from the pool (cycling), or one chosen file. */
  grow(n: number): void {
    for (let i = 0; i < n; i++) {
      const f = this.pool[this.#next++ % this.pool.length];
      this.#push(imaSigData(f.path, f.digest));
    }
  }

  /** Appends a file that no policy allows (an intruder's binary). */
  growUnknown(path: string): void {
    this.#push(imaSigData(path, createHash('sha256').update('intruder:' + path).digest()));
  }

  get count(): number {
    return this.entries.length;
  }

  /** Bytes of entries [from, to). */
  slice(from: number, to = this.entries.length): Buffer {
    return Buffer.concat(this.entries.slice(from, to));
  }

  pcr(bank: BankName): Buffer {
    return bank === 'sha1' ? this.pcr10.sha1 : this.pcr10.sha256;
  }
}

/**
 * A Keylime-format runtime policy (issue 12 §2: bootkey imports it) allowing every pool file
 * and the given boot_aggregate digests (as Keylime's create_runtime_policy lists it: the
 * verifier does not special-case it).
 */
export function keylimePolicy(pool: { path: string; digest: Buffer }[], bootAggregates: Buffer[] = []): string {
  const digests: Record<string, string[]> = {};
  if (bootAggregates.length) digests.boot_aggregate = bootAggregates.map((b) => b.toString('hex'));
  for (const f of pool) (digests[f.path] ??= []).push(f.digest.toString('hex'));
  return JSON.stringify({
    meta: { version: 1, generator: 'bootkey bench/sim/ima.ts' },
    release: 0,
    digests,
    excludes: [],
    keyrings: {},
    ima: { ignored_keyrings: [], log_hash_alg: 'sha1', dm_policy: null },
    'ima-buf': {},
    'verification-keys': '',
  });
}
