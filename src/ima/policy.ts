/**
 * The IMA runtime policy (issue 12 §2): which files, buffers and keys a running machine may
 * measure, and the verdict on a bound measurement list.
 *
 *   loadRuntimePolicy(bytes) ─▶ compileRuntimePolicy ─▶ checkRuntimePolicy(policy, TrustedImaEntries)
 *
 * The verdict per entry follows Keylime's verifier (keylime/ima/ima.py: _validate_ima_ng,
 * _validate_ima_sig, _validate_ima_buf), so a policy imported from Keylime gives the same verdict
 * on the same list:
 *
 *  1. A violation (ToMToU / open-writers: all-zero template hash) binds none of its fields: it is a
 *     warning, or a failure when the policy says `"violations": "fail"` (Keylime's default ignores them).
 *  2. An entry measured into another PCR than 10 fails (Keylime: ima_pcr).
 *  3. `ima-buf` whose buffer is a key (X.509 certificate or public key; the kernel's KEY_CHECK):
 *     ignored keyring (`ignoredKeyrings` has its name or "*") → pass, and the key is not learned;
 *     else excluded name → pass; else the buffer's digest must be in `keyrings[name]`, and then the
 *     key is LEARNED: later `ima-sig` entries may be signed by it (Keylime adds it to its keyrings).
 *     A key of an unsupported type fails. Other `ima-buf`: excluded → pass, else digest in `imaBuf[name]`.
 *  4. Files (`ima`, `ima-ng`, `ima-sig`, `ima-modsig`): a signature field whose header does not
 *     hold together fails outright (Keylime's parser refuses the line); excluded path → pass; a signature that
 *     verifies with a policy or learned key → pass even when the digest is not listed; the digest
 *     listed for the path → pass; else fail, naming the digest, the allowed ones and why the
 *     signature (if any) did not help.
 *  5. `boot_aggregate`: when the caller gives the values computed from the QUOTED PCRs 0–9
 *     (`bootAggregates`), the entry must equal one of them (the policy's own values do not count);
 *     otherwise it is checked like a file (Keylime does the same after adding the quoted values).
 *
 * Excludes are regular expressions, joined and tried with Python's `re.match`: anchored at the
 * START of the path only (`/tmp` also excludes `/tmpfoo`). Each must compile on its own.
 * Digests are `algo:hex`; an entry's digest passes only in its own algorithm.
 * @module
 */
import { createHash } from 'node:crypto';
import { BootkeyError } from '../errors.ts';
import type { ImaEntry } from './types.ts';
import type { TrustedImaEntries } from './trusted.ts';
import { ImaSigError, type VerificationKey, describeKey, keyIndex, loadVerificationKey, sigFieldWellFormed, tryLoadKey, verifyImaSignature, verifyModsig, type SigResult } from './sig.ts';

export const RUNTIME_POLICY_FORMAT = 'bootkey-runtime-policy';
export const RUNTIME_POLICY_VERSION = 1;

/** The runtime policy as stored (JSON). */
export interface RuntimePolicy {
  readonly format: typeof RUNTIME_POLICY_FORMAT;
  readonly version: 1;
  readonly meta?: { readonly generator?: string; readonly created?: string; readonly source?: string; readonly comment?: string };
  /** Path → allowed digests (`sha256:hex`, ...). */
  readonly digests: Readonly<Record<string, readonly string[]>>;
  /** Regular expressions (Keylime semantics: joined, matched at the start of the path). */
  readonly excludes: readonly string[];
  /** Keyring name (`.ima`, `.builtin_trusted_keys`, ...) → allowed digests of the keys measured into it. */
  readonly keyrings: Readonly<Record<string, readonly string[]>>;
  /** Keyrings whose measured keys are neither checked nor learned; "*" = all. */
  readonly ignoredKeyrings: readonly string[];
  /** `ima-buf` name (`kexec-cmdline`, ...) → allowed digests. */
  readonly imaBuf: Readonly<Record<string, readonly string[]>>;
  /** PEM public keys or X.509 certificates (RSA, ECDSA) for ima-sig / ima-modsig signatures. */
  readonly verificationKeys: readonly string[];
  /** What a violation entry does: "ignore" (a warning; default, as Keylime) or "fail". */
  readonly violations?: 'ignore' | 'fail';
}

/** A policy that cannot be used: the message names the field. */
export class RuntimePolicyError extends BootkeyError {
  readonly layer = 'ima-policy';
  constructor(code: 'BAD_JSON' | 'BAD_FORMAT' | 'TOO_LARGE' | 'BAD_DIGEST' | 'BAD_REGEX' | 'BAD_KEY', message: string, options?: { cause?: unknown }) {
    super(code, message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** Bounds of the loader (a policy of a whole distribution is ~10^5 paths). */
export const POLICY_LIMITS = {
  bytes: 256 * 1024 * 1024,
  paths: 4_000_000,
  digestsPerPath: 4096,
  pathLength: 4096,
  excludes: 4096,
  excludeLength: 4096,
  keys: 1024,
  keyrings: 1024,
} as const;

/** Digest sizes by IMA's algorithm names. */
export const DIGEST_SIZES: Readonly<Record<string, number>> = {
  md5: 16, sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64, sm3: 32, sm3_256: 32, 'sm3-256': 32,
  streebog256: 32, streebog512: 64, 'sha3-256': 32, 'sha3-384': 48, 'sha3-512': 64,
};

/** Normalises a policy digest to `algo:hex` (lowercase); untyped hex takes the algorithm of its length. */
export function normalizeDigest(s: unknown, where: string): string {
  if (typeof s !== 'string') throw new RuntimePolicyError('BAD_DIGEST', `${where}: a digest must be a string`);
  const i = s.indexOf(':');
  let algo = i >= 0 ? s.slice(0, i).toLowerCase() : '';
  const hex = (i >= 0 ? s.slice(i + 1) : s).toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex) || hex.length % 2) throw new RuntimePolicyError('BAD_DIGEST', `${where}: ${JSON.stringify(s.slice(0, 80))} is not a hex digest`);
  if (!algo) {
    algo = ({ 32: 'md5', 40: 'sha1', 56: 'sha224', 64: 'sha256', 96: 'sha384', 128: 'sha512' } as Record<number, string>)[hex.length] ?? '';
    if (!algo) throw new RuntimePolicyError('BAD_DIGEST', `${where}: a digest of ${hex.length / 2} bytes and no algorithm`);
  }
  const size = DIGEST_SIZES[algo];
  if (size === undefined) throw new RuntimePolicyError('BAD_DIGEST', `${where}: unknown digest algorithm ${JSON.stringify(algo)}`);
  if (size * 2 !== hex.length) throw new RuntimePolicyError('BAD_DIGEST', `${where}: a ${algo} digest is ${size} bytes, not ${hex.length / 2}`);
  return `${algo}:${hex}`;
}

/**
 * Translates one exclude (Python `re` syntax, as Keylime's) to a JavaScript source, or throws.
 * Python-only syntax with a JS equivalent is rewritten ((?P<n>…), (?P=n), \Z, \A); what has none
 * (inline flags, possessive quantifiers, conditionals) is refused rather than read differently.
 */
export function translateExclude(re: string, where: string): string {
  if (re.length > POLICY_LIMITS.excludeLength) throw new RuntimePolicyError('TOO_LARGE', `${where}: ${re.length} characters exceeds ${POLICY_LIMITS.excludeLength}`);
  if (/\(\?[aiLmsux-]+[):]/.test(re)) throw new RuntimePolicyError('BAD_REGEX', `${where}: Python inline flags (?…) are not supported: ${JSON.stringify(re)}`);
  if (/\(\?\(/.test(re)) throw new RuntimePolicyError('BAD_REGEX', `${where}: conditional groups are not supported: ${JSON.stringify(re)}`);
  if (/[*+?}][+]/.test(re.replace(/\\./g, ''))) throw new RuntimePolicyError('BAD_REGEX', `${where}: possessive quantifiers are not supported: ${JSON.stringify(re)}`);
  const js = re
    .replace(/\(\?P<([A-Za-z_][A-Za-z0-9_]*)>/g, '(?<$1>')
    .replace(/\(\?P=([A-Za-z_][A-Za-z0-9_]*)\)/g, '\\k<$1>')
    .replace(/(^|[^\\])((?:\\\\)*)\\Z/g, '$1$2$(?![\\s\\S])')
    .replace(/(^|[^\\])((?:\\\\)*)\\A/g, '$1$2^');
  try {
    new RegExp(js);
  } catch (e) {
    throw new RuntimePolicyError('BAD_REGEX', `${where}: not a valid regular expression: ${JSON.stringify(re)} (${(e as Error).message})`, { cause: e });
  }
  return js;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function digestMap(v: unknown, field: string, maxKeys: number): Record<string, string[]> {
  if (v === undefined) return {};
  if (!isObj(v)) throw new RuntimePolicyError('BAD_FORMAT', `${field}: must be an object of name → [digests]`);
  const out: Record<string, string[]> = Object.create(null);
  let n = 0;
  for (const [name, list] of Object.entries(v)) {
    if (++n > maxKeys) throw new RuntimePolicyError('TOO_LARGE', `${field}: more than ${maxKeys} names`);
    if (name.length === 0 || name.length > POLICY_LIMITS.pathLength) throw new RuntimePolicyError('BAD_FORMAT', `${field}: a name of ${name.length} characters`);
    if (!Array.isArray(list)) throw new RuntimePolicyError('BAD_FORMAT', `${field}[${JSON.stringify(name.slice(0, 200))}]: must be a list of digests`);
    if (list.length > POLICY_LIMITS.digestsPerPath) throw new RuntimePolicyError('TOO_LARGE', `${field}[${JSON.stringify(name.slice(0, 200))}]: more than ${POLICY_LIMITS.digestsPerPath} digests`);
    out[name] = [...new Set(list.map((d, i) => normalizeDigest(d, `${field}[${JSON.stringify(name.slice(0, 200))}][${i}]`)))];
  }
  return out;
}

function stringList(v: unknown, field: string, max: number, maxLen: number): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new RuntimePolicyError('BAD_FORMAT', `${field}: must be a list of strings`);
  if (v.length > max) throw new RuntimePolicyError('TOO_LARGE', `${field}: more than ${max} items`);
  return v.map((s, i) => {
    if (typeof s !== 'string') throw new RuntimePolicyError('BAD_FORMAT', `${field}[${i}]: must be a string`);
    if (s.length > maxLen) throw new RuntimePolicyError('TOO_LARGE', `${field}[${i}]: ${s.length} characters exceeds ${maxLen}`);
    return s;
  });
}

/**
 * Validates a parsed policy object (bootkey format) and returns it normalised (digests `algo:hex`).
 * Checks every regex and key, so a policy that loads also compiles.
 * @throws RuntimePolicyError
 */
export function validateRuntimePolicy(v: unknown): RuntimePolicy {
  if (!isObj(v)) throw new RuntimePolicyError('BAD_FORMAT', 'a runtime policy is a JSON object');
  if (v.format !== RUNTIME_POLICY_FORMAT) {
    const hint = 'digests' in v && 'meta' in v ? ' (this looks like a Keylime runtime policy: use `bootkey runtime-policy import`)' : '';
    throw new RuntimePolicyError('BAD_FORMAT', `"format" must be "${RUNTIME_POLICY_FORMAT}"${hint}`);
  }
  if (v.version !== RUNTIME_POLICY_VERSION) throw new RuntimePolicyError('BAD_FORMAT', `"version" ${JSON.stringify(v.version)} is not supported (this bootkey reads version ${RUNTIME_POLICY_VERSION})`);
  const known = new Set(['format', 'version', 'meta', 'digests', 'excludes', 'keyrings', 'ignoredKeyrings', 'imaBuf', 'verificationKeys', 'violations']);
  for (const k of Object.keys(v)) if (!known.has(k)) throw new RuntimePolicyError('BAD_FORMAT', `unknown field ${JSON.stringify(k)}`);
  let meta: RuntimePolicy['meta'];
  if (v.meta !== undefined) {
    if (!isObj(v.meta)) throw new RuntimePolicyError('BAD_FORMAT', 'meta: must be an object');
    const m: Record<string, string> = {};
    for (const [k, x] of Object.entries(v.meta)) {
      if (!['generator', 'created', 'source', 'comment'].includes(k)) throw new RuntimePolicyError('BAD_FORMAT', `meta: unknown field ${JSON.stringify(k)}`);
      if (typeof x !== 'string' || x.length > 4096) throw new RuntimePolicyError('BAD_FORMAT', `meta.${k}: must be a string of at most 4096 characters`);
      m[k] = x;
    }
    meta = m;
  }
  if (v.violations !== undefined && v.violations !== 'ignore' && v.violations !== 'fail') {
    throw new RuntimePolicyError('BAD_FORMAT', 'violations: must be "ignore" or "fail"');
  }
  const excludes = stringList(v.excludes, 'excludes', POLICY_LIMITS.excludes, POLICY_LIMITS.excludeLength);
  excludes.forEach((re, i) => translateExclude(re, `excludes[${i}]`));
  const verificationKeys = stringList(v.verificationKeys, 'verificationKeys', POLICY_LIMITS.keys, 64 * 1024);
  verificationKeys.forEach((k, i) => policyKey(k, i));
  return {
    format: RUNTIME_POLICY_FORMAT,
    version: RUNTIME_POLICY_VERSION,
    ...(meta ? { meta } : {}),
    digests: digestMap(v.digests, 'digests', POLICY_LIMITS.paths),
    excludes,
    keyrings: digestMap(v.keyrings, 'keyrings', POLICY_LIMITS.keyrings),
    ignoredKeyrings: stringList(v.ignoredKeyrings, 'ignoredKeyrings', POLICY_LIMITS.keyrings, 256),
    imaBuf: digestMap(v.imaBuf, 'imaBuf', POLICY_LIMITS.keyrings),
    verificationKeys,
    ...(v.violations ? { violations: v.violations } : {}),
  };
}

function policyKey(pem: string, i: number): VerificationKey {
  try {
    return loadVerificationKey(pem, `verificationKeys[${i}]`);
  } catch (e) {
    if (e instanceof ImaSigError) throw new RuntimePolicyError('BAD_KEY', e.message, { cause: e });
    throw e;
  }
}

/**
 * Parses and validates a bootkey runtime policy (JSON bytes).
 * @throws RuntimePolicyError BAD_JSON, BAD_FORMAT, TOO_LARGE, BAD_DIGEST, BAD_REGEX, BAD_KEY
 */
export function loadRuntimePolicy(bytes: Uint8Array | string): RuntimePolicy {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength;
  if (size > POLICY_LIMITS.bytes) throw new RuntimePolicyError('TOO_LARGE', `a runtime policy of ${size} bytes exceeds the ${POLICY_LIMITS.bytes}-byte limit`);
  let v: unknown;
  try {
    v = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (e) {
    throw new RuntimePolicyError('BAD_JSON', `not JSON: ${(e as Error).message}`, { cause: e });
  }
  return validateRuntimePolicy(v);
}

/** Serialises a policy (stable key order, one digest list per line). */
export function serializeRuntimePolicy(p: RuntimePolicy): string {
  const sorted = (m: Readonly<Record<string, readonly string[]>>) => Object.fromEntries(Object.keys(m).sort().map((k) => [k, [...m[k]].sort()]));
  const o = {
    format: p.format,
    version: p.version,
    ...(p.meta ? { meta: p.meta } : {}),
    ...(p.violations ? { violations: p.violations } : {}),
    excludes: p.excludes,
    ignoredKeyrings: p.ignoredKeyrings,
    verificationKeys: p.verificationKeys,
    keyrings: sorted(p.keyrings),
    imaBuf: sorted(p.imaBuf),
    digests: sorted(p.digests),
  };
  return JSON.stringify(o, null, 1) + '\n';
}

/** A policy ready to judge lists: sets, one compiled regex, keys decoded. Compile once per policy. */
export interface CompiledRuntimePolicy {
  readonly policy: RuntimePolicy;
  readonly digests: ReadonlyMap<string, ReadonlySet<string>>;
  readonly keyrings: ReadonlyMap<string, ReadonlySet<string>>;
  readonly imaBuf: ReadonlyMap<string, ReadonlySet<string>>;
  readonly ignoredKeyrings: ReadonlySet<string>;
  readonly exclude: RegExp | null;
  readonly keys: readonly VerificationKey[];
  readonly violations: 'ignore' | 'fail';
}

function toSets(m: Readonly<Record<string, readonly string[]>>): Map<string, Set<string>> {
  return new Map(Object.entries(m).map(([k, v]) => [k, new Set(v)]));
}

/** @throws RuntimePolicyError for a policy object not made by load/validate (bad regex or key). */
export function compileRuntimePolicy(p: RuntimePolicy): CompiledRuntimePolicy {
  const excl = p.excludes.map((re, i) => translateExclude(re, `excludes[${i}]`));
  return {
    policy: p,
    digests: toSets(p.digests),
    keyrings: toSets(p.keyrings),
    imaBuf: toSets(p.imaBuf),
    ignoredKeyrings: new Set(p.ignoredKeyrings),
    // Keylime: "(" + ")|(".join(excludes) + ")" tried with re.match — anchored at the start only.
    exclude: excl.length ? new RegExp(`^(?:${excl.map((s) => `(?:${s})`).join('|')})`) : null,
    keys: p.verificationKeys.map((k, i) => policyKey(k, i)),
    violations: p.violations ?? 'ignore',
  };
}

export type RuntimeFailureCode =
  | 'UNLISTED_PATH'        // no digest listed for this path
  | 'DIGEST_NOT_ALLOWED'   // the path is listed, not with this digest
  | 'BAD_SIGNATURE'        // not listed, and its signature does not verify / has no key
  | 'MALFORMED_SIGNATURE'  // a sig field whose header does not hold together (refused even when excluded)
  | 'BOOT_AGGREGATE'       // boot_aggregate not the one of the quoted PCRs (or of the policy)
  | 'UNLISTED_KEYRING'     // a key measured into a keyring the policy does not list
  | 'KEY_NOT_ALLOWED'      // a key whose digest the keyring's list lacks
  | 'UNSUPPORTED_KEY'      // a measured key of a type that cannot be used
  | 'UNLISTED_BUFFER'      // an ima-buf name the policy does not list
  | 'BUFFER_NOT_ALLOWED'   // an ima-buf whose digest the name's list lacks
  | 'VIOLATION'            // a ToMToU / open-writers violation, with "violations": "fail"
  | 'WRONG_PCR'            // measured into another PCR than 10
  | 'UNREADABLE_ENTRY';    // a template without a path and digest

export interface RuntimeFailure {
  readonly index: number;
  readonly path: string;
  readonly code: RuntimeFailureCode;
  readonly message: string;
}

/** A key learned from an ima-buf entry (kept by the verifier between incremental reports). */
export interface LearnedKey {
  readonly keyring: string;
  /** The buffer as measured (base64). */
  readonly data: string;
}

export interface RuntimeCheckOptions {
  /**
   * boot_aggregate values (`algo:hex`) computed from the QUOTED PCRs; when given, the entry must
   * equal one of them. Absent: the policy's `digests.boot_aggregate` (or an exclude) decides.
   */
  readonly bootAggregates?: readonly string[];
  /** Keys learned from earlier entries of the same boot (incremental reports). */
  readonly learnedKeys?: readonly LearnedKey[];
  /** Stop collecting failures after this many (default 10,000); `ok` stays false. */
  readonly maxFailures?: number;
}

export interface RuntimeCheckResult {
  /** No failure. */
  readonly ok: boolean;
  /** The entries were bound to a quote (false: an operator's file, `unverifiedImaEntries`). */
  readonly verified: boolean;
  readonly checked: number;
  readonly failures: readonly RuntimeFailure[];
  /** Failures beyond maxFailures, not listed. */
  readonly moreFailures: number;
  readonly warnings: readonly string[];
  /** learnedKeys given plus those learned here: what the verifier stores for the next report. */
  readonly learnedKeys: readonly LearnedKey[];
  /** Entries passed by exclude / signature / digest (for reports). */
  readonly passed: { readonly excluded: number; readonly signature: number; readonly digest: number; readonly keys: number; readonly buffers: number; readonly ignored: number };
}

const short = (h: string) => (h.length > 16 ? `${h.slice(0, 16)}…` : h);

function allowedText(set: ReadonlySet<string> | undefined): string {
  if (!set || set.size === 0) return 'none listed';
  const all = [...set];
  const shown = all.slice(0, 3).map((d) => {
    const [a, h] = d.split(':');
    return `${a}:${short(h)}`;
  });
  return `allowed: ${shown.join(', ')}${all.length > 3 ? ` (+${all.length - 3} more)` : ''}`;
}

/**
 * Judges bound entries against a runtime policy. Pure: no I/O, no clock.
 * Entries must come from `bindImaToQuote` (or `unverifiedImaEntries` for an operator's file:
 * `verified` is then false and the caller must say so).
 */
export function checkRuntimePolicy(policy: RuntimePolicy | CompiledRuntimePolicy, trusted: TrustedImaEntries, opts: RuntimeCheckOptions = {}): RuntimeCheckResult {
  const c = 'exclude' in policy && 'keys' in policy ? (policy as CompiledRuntimePolicy) : compileRuntimePolicy(policy as RuntimePolicy);
  const maxFailures = opts.maxFailures ?? 10_000;
  const failures: RuntimeFailure[] = [];
  let moreFailures = 0;
  const warnings: string[] = [];
  const passed = { excluded: 0, signature: 0, digest: 0, keys: 0, buffers: 0, ignored: 0 };
  const learned: LearnedKey[] = [...(opts.learnedKeys ?? [])];
  const learnedKeys: VerificationKey[] = [];
  for (const l of learned) {
    try {
      const k = tryLoadKey(Buffer.from(l.data, 'base64'));
      if (k) learnedKeys.push(k);
    } catch {
      /* a learned key that no longer loads verifies nothing */
    }
  }
  let index = keyIndex([...c.keys, ...learnedKeys]);
  const bootAggregates = opts.bootAggregates ? new Set(opts.bootAggregates.map((d, i) => normalizeDigest(d, `bootAggregates[${i}]`))) : undefined;

  const fail = (e: ImaEntry, code: RuntimeFailureCode, what: string) => {
    if (failures.length >= maxFailures) {
      moreFailures++;
      return;
    }
    const path = e.path ?? '';
    failures.push({ index: e.index, path, code, message: `entry ${e.index}${path ? ` ${path}` : ''}: ${what}` });
  };
  const excluded = (name: string) => c.exclude !== null && c.exclude.test(name);

  for (const e of trusted.entries) {
    if (e.violation) {
      if (c.violations === 'fail') fail(e, 'VIOLATION', 'a measurement violation (ToMToU or open writer): its file was not measured reliably');
      else warnings.push(`entry ${e.index}${e.path ? ` ${e.path}` : ''}: measurement violation ignored`);
      continue;
    }
    if (e.pcr !== 10) {
      fail(e, 'WRONG_PCR', `measured into PCR ${e.pcr}, not 10`);
      continue;
    }
    const name = e.path;
    if (name === undefined || !e.digest || !e.digestAlgo) {
      fail(e, 'UNREADABLE_ENTRY', `template ${e.templateName} has no path and digest to judge`);
      continue;
    }
    const digest = `${e.digestAlgo}:${e.digest.toString('hex')}`;

    if (e.templateName === 'ima-buf' || (e.buf !== undefined && e.sig === undefined)) {
      const buf = e.buf ?? Buffer.alloc(0);
      let key: VerificationKey | undefined;
      try {
        key = tryLoadKey(buf);
      } catch (err) {
        fail(e, 'UNSUPPORTED_KEY', `key measured into keyring ${name} cannot be used: ${(err as Error).message}`);
        continue;
      }
      if (key) {
        if (c.ignoredKeyrings.has('*') || c.ignoredKeyrings.has(name)) {
          passed.ignored++;
          continue;
        }
        if (excluded(name)) {
          passed.excluded++;
        } else {
          const allowed = c.keyrings.get(name);
          if (!allowed) {
            fail(e, 'UNLISTED_KEYRING', `key ${describeKey(key)} (${digest}) measured into keyring ${name}, which the policy does not list`);
            continue;
          }
          if (!allowed.has(digest)) {
            fail(e, 'KEY_NOT_ALLOWED', `key ${describeKey(key)} (${digest}) not in the policy for keyring ${name} (${allowedText(allowed)})`);
            continue;
          }
          passed.keys++;
        }
        // Learned: later signatures may be by this key (Keylime adds it to its keyrings).
        learned.push({ keyring: name, data: buf.toString('base64') });
        learnedKeys.push(key);
        index = keyIndex([...c.keys, ...learnedKeys]);
        continue;
      }
      if (excluded(name)) {
        passed.excluded++;
        continue;
      }
      const allowed = c.imaBuf.get(name);
      if (!allowed) fail(e, 'UNLISTED_BUFFER', `buffer ${digest} not in the policy (no ima-buf entry named ${name})`);
      else if (!allowed.has(digest)) fail(e, 'BUFFER_NOT_ALLOWED', `buffer ${digest} not in the policy (${allowedText(allowed)})`);
      else passed.buffers++;
      continue;
    }

    if (name === 'boot_aggregate' && bootAggregates) {
      if (bootAggregates.has(digest)) passed.digest++;
      else fail(e, 'BOOT_AGGREGATE', `${digest} is not the boot_aggregate of the quoted PCRs (${allowedText(bootAggregates)})`);
      continue;
    }
    if (e.sig && e.sig.length > 0 && !sigFieldWellFormed(e.sig)) {
      fail(e, 'MALFORMED_SIGNATURE', `its signature field (${e.sig.length} bytes) is malformed: the header's sig_size does not match`);
      continue;
    }
    if (excluded(name)) {
      passed.excluded++;
      continue;
    }
    let sigResult: SigResult | undefined;
    if (e.sig && e.sig.length > 0) {
      sigResult = verifyImaSignature(e.sig, e.digestAlgo, e.digest, index, e.digestType);
      if (sigResult.ok) {
        passed.signature++;
        continue;
      }
    }
    let modResult: SigResult | undefined;
    if (e.modsig && e.modsig.length > 0 && e.modsigDigest && e.modsigDigestAlgo) {
      modResult = verifyModsig(e.modsig, e.modsigDigestAlgo, e.modsigDigest, index.all);
      if (modResult.ok) {
        passed.signature++;
        continue;
      }
    }
    const allowed = c.digests.get(name);
    if (allowed?.has(digest)) {
      passed.digest++;
      continue;
    }
    const why = [sigResult, modResult].filter((r): r is Extract<SigResult, { ok: false }> => !!r && !r.ok).map((r) => r.message);
    if (why.length > 0) {
      fail(e, 'BAD_SIGNATURE', `${why.join('; ')}, and ${digest} is not in the policy (${allowed ? allowedText(allowed) : 'the path is not listed'})`);
    } else if (!allowed) {
      fail(e, 'UNLISTED_PATH', `${digest} not in the policy (the path is not listed)`);
    } else {
      fail(e, name === 'boot_aggregate' ? 'BOOT_AGGREGATE' : 'DIGEST_NOT_ALLOWED', `${digest} not in the policy (${allowedText(allowed)})`);
    }
  }
  return {
    ok: failures.length === 0 && moreFailures === 0,
    verified: trusted.verified,
    checked: trusted.entries.length,
    failures,
    moreFailures,
    warnings,
    learnedKeys: learned,
    passed,
  };
}

/** SHA-256 of a key's SubjectPublicKeyInfo (for `show`). */
export function keyFingerprint(k: VerificationKey): string {
  return createHash('sha256').update(k.spki).digest('hex');
}
