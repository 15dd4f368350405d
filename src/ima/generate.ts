/**
 * Runtime policies from a known-good machine (issue 12 §2): from its measurement list, or by
 * hashing a directory tree. `policyFromEntries` is pure; `policyFromDir` reads the file system.
 *
 * No default EXCLUDES are written: an exclude passes anything under it, executables included (an
 * attacker's binary in an excluded /tmp would pass). The directory walk SKIPS the volatile and
 * pseudo file systems (DEFAULT_SKIP) — their files are not in the policy, so if the kernel's IMA
 * policy measures them they fail until the operator adds an exclude on purpose.
 * @module
 */
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { ImaEntry } from './types.ts';
import { type RuntimePolicy, RUNTIME_POLICY_FORMAT, RUNTIME_POLICY_VERSION, validateRuntimePolicy, DIGEST_SIZES } from './policy.ts';
import { tryLoadKey } from './sig.ts';

/** Directories the walk does not enter (as absolute paths on the measured system). */
export const DEFAULT_SKIP: readonly string[] = ['/proc', '/sys', '/dev', '/run', '/tmp', '/var/tmp', '/var/log', '/var/cache', '/lost+found'];

/**
 * Excludes for `--default-excludes`: the volatile and pseudo file systems as Keylime users often
 * exclude them. Opt-in: anything run from there passes too.
 */
export const DEFAULT_EXCLUDES: readonly string[] = ['/proc/.*', '/sys/.*', '/dev/.*', '/run/.*', '/tmp/.*', '/var/tmp/.*', '/var/log/.*'];

export interface GenerateOptions {
  readonly excludes?: readonly string[];
  readonly generator?: string;
  readonly source?: string;
  readonly created?: string;
}

function build(digests: Map<string, Set<string>>, keyrings: Map<string, Set<string>>, imaBuf: Map<string, Set<string>>, o: GenerateOptions): RuntimePolicy {
  const obj = (m: Map<string, Set<string>>) => Object.fromEntries([...m].map(([k, v]) => [k, [...v]]));
  return validateRuntimePolicy({
    format: RUNTIME_POLICY_FORMAT,
    version: RUNTIME_POLICY_VERSION,
    meta: { generator: o.generator ?? 'bootkey runtime-policy generate', ...(o.created ? { created: o.created } : {}), ...(o.source ? { source: o.source } : {}) },
    digests: obj(digests),
    excludes: [...(o.excludes ?? [])],
    keyrings: obj(keyrings),
    ignoredKeyrings: [],
    imaBuf: obj(imaBuf),
    verificationKeys: [],
  });
}

const add = (m: Map<string, Set<string>>, k: string, v: string) => {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
};

/**
 * A policy allowing exactly what a known-good list measured: every file digest (boot_aggregate
 * included, as Keylime's generator does — the verifier judges it against the quoted PCRs anyway),
 * every key measured into a keyring, every other ima-buf. Violations and unreadable entries are
 * skipped and counted.
 */
export function policyFromEntries(entries: readonly ImaEntry[], o: GenerateOptions = {}): { policy: RuntimePolicy; skipped: number } {
  const digests = new Map<string, Set<string>>();
  const keyrings = new Map<string, Set<string>>();
  const imaBuf = new Map<string, Set<string>>();
  let skipped = 0;
  for (const e of entries) {
    if (e.violation || e.path === undefined || !e.digest || !e.digestAlgo || DIGEST_SIZES[e.digestAlgo] !== e.digest.length) {
      skipped++;
      continue;
    }
    const d = `${e.digestAlgo}:${e.digest.toString('hex')}`;
    if (e.templateName === 'ima-buf' || (e.buf !== undefined && e.sig === undefined)) {
      let isKey = false;
      try {
        isKey = !!tryLoadKey(e.buf ?? Buffer.alloc(0));
      } catch {
        isKey = true; // a key of an unsupported type: listed, it still fails at check time
      }
      add(isKey ? keyrings : imaBuf, e.path, d);
    } else {
      add(digests, e.path, d);
    }
  }
  return { policy: build(digests, keyrings, imaBuf, o), skipped };
}

export interface DirOptions extends GenerateOptions {
  /** Digest algorithm (default sha256: Debian's IMA default). */
  readonly algo?: string;
  /** The measured system's root in this file system (default '/'): paths are recorded relative to it. */
  readonly root?: string;
  /** Absolute paths (on the measured system) not walked; default DEFAULT_SKIP. */
  readonly skip?: readonly string[];
  /** Stop after this many files (default 2,000,000). */
  readonly maxFiles?: number;
}

export interface DirResult {
  readonly policy: RuntimePolicy;
  readonly files: number;
  readonly bytes: number;
  /** Paths that could not be read (permissions, vanished), with the reason. */
  readonly unreadable: readonly string[];
}

const CHUNK = 1 << 20;

function hashFile(path: string, algo: string, buf: Buffer): { digest: string; size: number } {
  const h = createHash(algo);
  const fd = openSync(path, 'r');
  let size = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      size += n;
    }
  } finally {
    closeSync(fd);
  }
  return { digest: h.digest('hex'), size };
}

/**
 * Hashes every regular file under `dirs` (absolute paths on the measured system), as IMA would
 * measure them: the path the kernel records is the file's own path (symbolic links are not
 * followed; their targets are walked where they are). Other mounts are walked too.
 */
export function policyFromDir(dirs: readonly string[], o: DirOptions = {}): DirResult {
  const algo = o.algo ?? 'sha256';
  if (!['sha1', 'sha256', 'sha384', 'sha512'].includes(algo)) throw new RangeError(`--algo ${algo}: use sha1, sha256, sha384 or sha512`);
  const root = (o.root ?? '/').replace(/\/+$/, '');
  const skip = new Set((o.skip ?? DEFAULT_SKIP).map((s) => s.replace(/\/+$/, '')));
  const maxFiles = o.maxFiles ?? 2_000_000;
  const digests = new Map<string, Set<string>>();
  const unreadable: string[] = [];
  const buf = Buffer.allocUnsafe(CHUNK);
  let files = 0;
  let bytes = 0;
  const walk = (abs: string): void => {
    if (skip.has(abs)) return;
    const real = root + abs;
    let st;
    try {
      st = lstatSync(real);
    } catch (e) {
      unreadable.push(`${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      return;
    }
    if (st.isDirectory()) {
      let names: string[];
      try {
        names = readdirSync(real).sort();
      } catch (e) {
        unreadable.push(`${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        return;
      }
      for (const n of names) walk(abs === '/' ? `/${n}` : join(abs, n));
      return;
    }
    if (!st.isFile()) return;
    if (++files > maxFiles) throw new RangeError(`more than ${maxFiles} files: narrow the directories`);
    try {
      const r = hashFile(real, algo, buf);
      bytes += r.size;
      add(digests, abs, `${algo}:${r.digest}`);
    } catch (e) {
      files--;
      unreadable.push(`${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  for (const d of dirs) {
    if (!d.startsWith('/')) throw new RangeError(`${d}: give absolute paths (on the measured system)`);
    walk(d === '/' ? '/' : d.replace(/\/+$/, ''));
  }
  return { policy: build(digests, new Map(), new Map(), o), files, bytes, unreadable };
}
