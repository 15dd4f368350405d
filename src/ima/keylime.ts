/**
 * Importing Keylime's runtime policies (issue 12 §2) into bootkey's format, keeping the verdict.
 *
 * Keylime's runtime policy (keylime/ima/ima.py EMPTY_RUNTIME_POLICY, meta.version 1):
 *   { "meta": {"version": 1, "generator": N, "timestamp": ...}, "release": 0,
 *     "digests": {path: [hex | "algo:hex"]}, "excludes": [regex], "keyrings": {name: [hex]},
 *     "ima": {"ignored_keyrings": [name | "*"], "log_hash_alg": "sha1", "dm_policy": null | {...}},
 *     "ima-buf": {name: [hex]}, "verification-keys": "<JSON string>" }
 * `verification-keys` is a JSON *string* (sometimes encoded twice) of
 * `{"pubkeys": [base64 DER SubjectPublicKeyInfo], "keyids": [int]}` (ImaKeyring.to_string).
 *
 * Keylime compares a digest as bare hex against the list whatever the entry's algorithm; bootkey
 * compares `algo:hex`, taking a bare hex digest's algorithm from its length (40 → sha1, 64 →
 * sha256, 96 → sha384, 128 → sha512). The one case that changes a verdict: an entry hashed with
 * sm3_256 (64 hex digits) against a bare 64-digit digest — import it as "sm3_256:hex".
 * What the import cannot carry is reported in `warnings` (dm_policy: bootkey does not validate
 * device-mapper measurements, they are then judged as plain ima-buf entries: fail-closed).
 * Keylime's older allowlist (text lines "<hex digest>  <path>", sha256sum output) imports too.
 * @module
 */
import { RuntimePolicyError, type RuntimePolicy, RUNTIME_POLICY_FORMAT, RUNTIME_POLICY_VERSION, POLICY_LIMITS, normalizeDigest, translateExclude, validateRuntimePolicy } from './policy.ts';
import { loadVerificationKey, ImaSigError } from './sig.ts';

export interface KeylimeImport {
  readonly policy: RuntimePolicy;
  readonly warnings: readonly string[];
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const KNOWN = new Set(['meta', 'release', 'digests', 'excludes', 'keyrings', 'ima', 'ima-buf', 'verification-keys']);

/** Keylime's `verification-keys` → PEM public keys. */
export function keylimeVerificationKeys(v: unknown): string[] {
  const pems: string[] = [];
  const one = (s: unknown, depth: number): void => {
    if (s === '' || s === null || s === undefined) return;
    if (Array.isArray(s)) {
      s.forEach((x) => one(x, depth));
      return;
    }
    if (typeof s === 'string') {
      if (depth > 2) throw new RuntimePolicyError('BAD_KEY', 'verification-keys: encoded more than twice');
      let parsed: unknown;
      try {
        parsed = JSON.parse(s);
      } catch (e) {
        throw new RuntimePolicyError('BAD_KEY', `verification-keys: not a JSON keyring string (${(e as Error).message})`, { cause: e });
      }
      one(parsed, depth + 1);
      return;
    }
    if (!isObj(s) || !Array.isArray(s.pubkeys)) throw new RuntimePolicyError('BAD_KEY', 'verification-keys: expected {"pubkeys": [base64 DER], "keyids": [...]}');
    if (s.pubkeys.length > POLICY_LIMITS.keys) throw new RuntimePolicyError('TOO_LARGE', `verification-keys: more than ${POLICY_LIMITS.keys} keys`);
    s.pubkeys.forEach((b64, i) => {
      if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/=\s]+$/.test(b64)) throw new RuntimePolicyError('BAD_KEY', `verification-keys.pubkeys[${i}]: not base64`);
      const der = Buffer.from(b64, 'base64');
      try {
        loadVerificationKey(der, `verification-keys.pubkeys[${i}]`);
      } catch (e) {
        if (e instanceof ImaSigError) throw new RuntimePolicyError('BAD_KEY', e.message, { cause: e });
        throw e;
      }
      const body = der.toString('base64').replace(/.{1,64}/g, '$&\n');
      pems.push(`-----BEGIN PUBLIC KEY-----\n${body}-----END PUBLIC KEY-----\n`);
    });
  };
  one(v, 0);
  return pems;
}

function digestLists(v: unknown, field: string, warnings: string[]): Record<string, string[]> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new RuntimePolicyError('BAD_FORMAT', `${field}: must be an object of name → [digests]`);
  const out: Record<string, string[]> = {};
  for (const [name, list] of Object.entries(v)) {
    if (!Array.isArray(list)) throw new RuntimePolicyError('BAD_FORMAT', `${field}[${JSON.stringify(name.slice(0, 200))}]: must be a list`);
    const ds: string[] = [];
    list.forEach((d, i) => {
      // Keylime writes "" for an empty file's entry in some generators; it never matches a digest.
      if (d === '') {
        warnings.push(`${field}[${JSON.stringify(name)}][${i}]: empty digest dropped`);
        return;
      }
      ds.push(normalizeDigest(d, `${field}[${JSON.stringify(name.slice(0, 200))}][${i}]`));
    });
    out[name] = ds;
  }
  return out;
}

/**
 * Converts a Keylime runtime policy (parsed JSON) to bootkey's format.
 * @throws RuntimePolicyError naming the field
 */
export function importKeylimePolicy(v: unknown, source?: string): KeylimeImport {
  if (!isObj(v)) throw new RuntimePolicyError('BAD_FORMAT', 'a Keylime runtime policy is a JSON object');
  const warnings: string[] = [];
  // Keylime's API and tenant wrap it: {"runtime_policy": {...}} (create_mb/runtime bridge) or a DSSE envelope.
  if (isObj(v.runtime_policy) && !('digests' in v)) v = v.runtime_policy;
  const p = v as Record<string, unknown>;
  if ('payloadType' in p && 'signatures' in p) throw new RuntimePolicyError('BAD_FORMAT', 'a DSSE-signed Keylime policy: verify and extract its payload first (keylime_sign_runtime_policy)');
  if (!('digests' in p) && 'hashes' in p) throw new RuntimePolicyError('BAD_FORMAT', 'a Keylime allowlist of the pre-7 JSON format ("hashes"): convert it with keylime_convert_runtime_policy first');
  if (!('digests' in p)) throw new RuntimePolicyError('BAD_FORMAT', 'not a Keylime runtime policy: no "digests"');
  const meta = isObj(p.meta) ? p.meta : {};
  if (meta.version !== undefined && meta.version !== 1) throw new RuntimePolicyError('BAD_FORMAT', `meta.version ${JSON.stringify(meta.version)}: only Keylime runtime policy version 1 is known`);
  for (const k of Object.keys(p)) if (!KNOWN.has(k)) warnings.push(`unknown field ${JSON.stringify(k)} ignored`);
  const ima = isObj(p.ima) ? p.ima : {};
  if (ima.dm_policy !== undefined && ima.dm_policy !== null) {
    warnings.push('ima.dm_policy: device-mapper measurements are not validated by bootkey; they are judged as ima-buf entries (listed in "ima-buf" or refused)');
  }
  if (ima.log_hash_alg !== undefined && ima.log_hash_alg !== 'sha1') {
    warnings.push(`ima.log_hash_alg ${JSON.stringify(ima.log_hash_alg)}: not needed (bootkey takes the template-hash bank from the list)`);
  }
  const excludes = Array.isArray(p.excludes) ? p.excludes : p.excludes === undefined || p.excludes === null ? [] : undefined;
  if (!excludes) throw new RuntimePolicyError('BAD_FORMAT', 'excludes: must be a list of regular expressions');
  excludes.forEach((re, i) => {
    if (typeof re !== 'string') throw new RuntimePolicyError('BAD_FORMAT', `excludes[${i}]: must be a string`);
    translateExclude(re, `excludes[${i}]`);
  });
  const ignored = ima.ignored_keyrings ?? [];
  if (!Array.isArray(ignored) || ignored.some((x) => typeof x !== 'string')) throw new RuntimePolicyError('BAD_FORMAT', 'ima.ignored_keyrings: must be a list of names');
  const created = typeof meta.timestamp === 'string' ? meta.timestamp : undefined;
  const policy = validateRuntimePolicy({
    format: RUNTIME_POLICY_FORMAT,
    version: RUNTIME_POLICY_VERSION,
    meta: {
      generator: `keylime import${meta.generator !== undefined ? ` (Keylime generator ${String(meta.generator)})` : ''}`,
      ...(created ? { created } : {}),
      ...(source ? { source } : {}),
    },
    digests: digestLists(p.digests, 'digests', warnings),
    excludes,
    keyrings: digestLists(p.keyrings, 'keyrings', warnings),
    ignoredKeyrings: ignored,
    imaBuf: digestLists(p['ima-buf'], 'ima-buf', warnings),
    verificationKeys: keylimeVerificationKeys(p['verification-keys']),
  });
  return { policy, warnings };
}

/**
 * Keylime's older allowlist: one "<hex digest> <path>" per line (sha256sum / sha1sum output, the
 * path may hold spaces), `#` comments. Optional excludes: one regex per line.
 * @throws RuntimePolicyError naming the line
 */
export function importKeylimeAllowlist(text: string, excludeText?: string, source?: string): KeylimeImport {
  const digests: Record<string, string[]> = {};
  const warnings: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (!line.trim() || line.trimStart().startsWith('#')) return;
    const m = /^([0-9a-fA-F]+)\s+\*?(.+)$/.exec(line.trim());
    if (!m) throw new RuntimePolicyError('BAD_FORMAT', `allowlist line ${i + 1}: expected "<hex digest> <path>"`);
    const d = normalizeDigest(m[1], `allowlist line ${i + 1}`);
    (digests[m[2]] ??= []).includes(d) || digests[m[2]].push(d);
  });
  const excludes = (excludeText ?? '').split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() && !l.startsWith('#'));
  const policy = validateRuntimePolicy({
    format: RUNTIME_POLICY_FORMAT,
    version: RUNTIME_POLICY_VERSION,
    meta: { generator: 'keylime allowlist import', ...(source ? { source } : {}) },
    digests,
    excludes,
    keyrings: {},
    ignoredKeyrings: [],
    imaBuf: {},
    verificationKeys: [],
  });
  return { policy, warnings };
}
