/**
 * Loading a policy file: JSON parse plus a structural check that mirrors
 * schema/policy.schema.json (JSON Schema draft 2020-12), so that a malformed file is refused
 * with the path of the bad field instead of failing later in checkPolicy.
 * @module
 */
import { PolicyError } from './policy-errors.ts';
import { POLICY_VERSION, type Policy } from './policy.ts';
import { BANK_SIZE, isBankName } from '../pcrs.ts';

type J = Record<string, unknown>;

function bad(path: string, what: string): never {
  throw new PolicyError('BAD_POLICY', `policy: ${path}: ${what}`);
}
function obj(v: unknown, path: string, allowed: string[], required: string[] = []): J {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(path, 'expected an object');
  const o = v as J;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(`${path}.${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
  for (const k of required) if (!(k in o)) bad(`${path}.${k}`, 'missing');
  return o;
}
function arr(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) bad(path, 'expected an array');
  return v;
}
function str(v: unknown, path: string, re?: RegExp, what = 'a string'): string {
  if (typeof v !== 'string' || (re && !re.test(v))) bad(path, `expected ${what}, got ${JSON.stringify(v)}`);
  return v;
}
function bool(v: unknown, path: string): void {
  if (typeof v !== 'boolean') bad(path, `expected true or false, got ${JSON.stringify(v)}`);
}
function pcrConst(v: unknown, path: string, pcr: number): void {
  if (v !== pcr) bad(path, `expected ${pcr}`);
}

const HEX64 = /^[0-9a-f]{64}$/;
const ROLES = ['shim', 'bootloader', 'uki', 'kernel', 'application'];
const SOURCES = ['grub', 'systemd', 'linux-efi-stub'];

/**
 * Parses and validates a policy (a JSON string, or an already parsed value).
 * @throws PolicyError BAD_POLICY naming the field, e.g. `policy: rules.bootChain.stages[1].allowed[0].digest: expected ...`.
 */
export function parsePolicy(input: string | unknown): Policy {
  let v: unknown = input;
  if (typeof input === 'string') {
    try {
      v = JSON.parse(input);
    } catch (e) {
      throw new PolicyError('BAD_POLICY', `policy: not valid JSON: ${(e as Error).message}`);
    }
  }
  const p = obj(v, '$', ['$schema', 'version', 'comment', 'bank', 'pcrs', 'options', 'rules', 'knownGood', 'knownGoodRules', 'staged', 'staging'], ['version', 'bank', 'pcrs', 'options', 'rules']);
  if (p.version !== POLICY_VERSION && p.version !== 1) bad('version', `unsupported version ${JSON.stringify(p.version)} (this bootkey reads versions 1 and ${POLICY_VERSION})`);
  if (p.version === 1 && p.knownGood !== undefined) bad('knownGood', 'needs version 2');
  if (p.knownGoodRules !== undefined) str(p.knownGoodRules, 'knownGoodRules', HEX64, 'a SHA-256 (64 lowercase hex digits)');
  const bank = str(p.bank, 'bank');
  if (!isBankName(bank)) bad('bank', `unknown bank ${JSON.stringify(bank)}`);
  const hexd = new RegExp(`^[0-9a-f]{${BANK_SIZE[bank] * 2}}$`);
  const digest = (x: unknown, path: string) => str(x, path, hexd, `a ${bank} digest (${BANK_SIZE[bank] * 2} lowercase hex digits)`);
  arr(p.pcrs, 'pcrs').forEach((x, i) => {
    if (!Number.isInteger(x) || (x as number) < 0 || (x as number) > 23) bad(`pcrs[${i}]`, 'expected a PCR index 0-23');
  });
  const o = obj(p.options, 'options', ['allowAnyCmdline', 'allowAnyKernel'], ['allowAnyCmdline', 'allowAnyKernel']);
  bool(o.allowAnyCmdline, 'options.allowAnyCmdline');
  bool(o.allowAnyKernel, 'options.allowAnyKernel');
  if (p.knownGood !== undefined) {
    const kg = obj(p.knownGood, 'knownGood', Array.from({ length: 24 }, (_, i) => String(i)));
    for (const [k, vals] of Object.entries(kg)) arr(vals, `knownGood.${k}`).forEach((x, i) => digest(x, `knownGood.${k}[${i}]`));
  }
  if (p.staged !== undefined) {
    if (p.version === 1) bad('staged', 'needs version 2');
    arr(p.staged, 'staged').forEach((e, i) => {
      const at = `staged[${i}]`;
      const x = obj(e, at, ['label', 'at', 'apps', 'knownGood'], ['apps', 'knownGood']);
      if (x.label !== undefined) str(x.label, `${at}.label`);
      if (x.at !== undefined) str(x.at, `${at}.at`);
      arr(x.apps, `${at}.apps`).forEach((d, j) => digest(d, `${at}.apps[${j}]`));
      const kg = obj(x.knownGood, `${at}.knownGood`, Array.from({ length: 24 }, (_, j) => String(j)));
      for (const [k, d] of Object.entries(kg)) digest(d, `${at}.knownGood.${k}`);
    });
  }
  if (p.staging !== undefined) {
    const x = obj(p.staging, 'staging', ['mode', 'signedBy', 'requireApproval', 'keep'], ['mode']);
    if (!['none', 'signed-by', 'any'].includes(x.mode as string)) bad('staging.mode', `expected "none", "signed-by" or "any", got ${JSON.stringify(x.mode)}`);
    if (x.signedBy !== undefined) {
      arr(x.signedBy, 'staging.signedBy').forEach((c, j) => {
        const y = obj(c, `staging.signedBy[${j}]`, ['sha256', 'subject'], ['sha256']);
        str(y.sha256, `staging.signedBy[${j}].sha256`, HEX64, 'the SHA-256 of a DER certificate (64 lowercase hex digits)');
        if (y.subject !== undefined) str(y.subject, `staging.signedBy[${j}].subject`);
      });
    }
    if (x.requireApproval !== undefined) bool(x.requireApproval, 'staging.requireApproval');
    if (x.keep !== undefined && (!Number.isInteger(x.keep) || (x.keep as number) < 1 || (x.keep as number) > 1000)) bad('staging.keep', 'expected an integer 1-1000');
  }
  const r = obj(p.rules, 'rules', ['firmware', 'bootChain', 'secureBoot', 'keys', 'authorities', 'debug', 'kernelCmdline', 'pcrValues']);

  if (r.firmware !== undefined) {
    const f = obj(r.firmware, 'rules.firmware', ['pcr', 'allowed'], ['pcr', 'allowed']);
    pcrConst(f.pcr, 'rules.firmware.pcr', 0);
    arr(f.allowed, 'rules.firmware.allowed').forEach((fw, i) => {
      const at = `rules.firmware.allowed[${i}]`;
      const x = obj(fw, at, ['crtmVersions', 'events'], ['crtmVersions', 'events']);
      arr(x.crtmVersions, `${at}.crtmVersions`).forEach((s, j) => str(s, `${at}.crtmVersions[${j}]`));
      arr(x.events, `${at}.events`).forEach((e, j) => {
        const ev = obj(e, `${at}.events[${j}]`, ['event', 'type', 'digest', 'description'], ['type', 'digest']);
        str(ev.type, `${at}.events[${j}].type`);
        digest(ev.digest, `${at}.events[${j}].digest`);
      });
    });
  }
  if (r.bootChain !== undefined) {
    const b = obj(r.bootChain, 'rules.bootChain', ['pcr', 'stages', 'preBoot', 'requireExitBootServices'], ['pcr', 'stages']);
    pcrConst(b.pcr, 'rules.bootChain.pcr', 4);
    if (b.requireExitBootServices !== undefined) bool(b.requireExitBootServices, 'rules.bootChain.requireExitBootServices');
    if (b.preBoot !== undefined) arr(b.preBoot, 'rules.bootChain.preBoot').forEach((seq, i) => arr(seq, `rules.bootChain.preBoot[${i}]`).forEach((d, j) => digest(d, `rules.bootChain.preBoot[${i}][${j}]`)));
    arr(b.stages, 'rules.bootChain.stages').forEach((s, i) => {
      const at = `rules.bootChain.stages[${i}]`;
      const st = obj(s, at, ['role', 'allowed', 'allowAny', 'optional', 'signedBy'], ['role', 'allowed']);
      if (st.signedBy !== undefined) {
        arr(st.signedBy, `${at}.signedBy`).forEach((c, j) => {
          const x = obj(c, `${at}.signedBy[${j}]`, ['sha256', 'subject'], ['sha256']);
          str(x.sha256, `${at}.signedBy[${j}].sha256`, HEX64, 'the SHA-256 of a DER certificate (64 lowercase hex digits)');
          if (x.subject !== undefined) str(x.subject, `${at}.signedBy[${j}].subject`);
        });
      }
      if (!ROLES.includes(st.role as string)) bad(`${at}.role`, `expected one of ${ROLES.join(', ')}`);
      if (st.allowAny !== undefined) bool(st.allowAny, `${at}.allowAny`);
      if (st.optional !== undefined) bool(st.optional, `${at}.optional`);
      arr(st.allowed, `${at}.allowed`).forEach((a, j) => {
        const x = obj(a, `${at}.allowed[${j}]`, ['digest', 'path'], ['digest']);
        digest(x.digest, `${at}.allowed[${j}].digest`);
        if (x.path !== undefined) str(x.path, `${at}.allowed[${j}].path`);
      });
    });
  }
  if (r.secureBoot !== undefined) {
    const s = obj(r.secureBoot, 'rules.secureBoot', ['pcr', 'enabled', 'setupMode'], ['pcr', 'enabled']);
    pcrConst(s.pcr, 'rules.secureBoot.pcr', 7);
    bool(s.enabled, 'rules.secureBoot.enabled');
    if (s.setupMode !== undefined) bool(s.setupMode, 'rules.secureBoot.setupMode');
  }
  if (r.keys !== undefined) {
    const k = obj(r.keys, 'rules.keys', ['pcr', 'PK', 'KEK', 'db', 'dbxMustContain'], ['pcr', 'PK', 'KEK', 'db', 'dbxMustContain']);
    pcrConst(k.pcr, 'rules.keys.pcr', 7);
    for (const name of ['PK', 'KEK', 'db']) {
      arr(k[name], `rules.keys.${name}`).forEach((e, i) => {
        const x = obj(e, `rules.keys.${name}[${i}]`, ['sha256', 'subjects'], ['sha256', 'subjects']);
        if (x.sha256 !== 'absent') str(x.sha256, `rules.keys.${name}[${i}].sha256`, HEX64, 'a SHA-256 (64 lowercase hex digits) or "absent"');
        arr(x.subjects, `rules.keys.${name}[${i}].subjects`).forEach((s, j) => str(s, `rules.keys.${name}[${i}].subjects[${j}]`));
      });
    }
    arr(k.dbxMustContain, 'rules.keys.dbxMustContain').forEach((e, i) => str(e, `rules.keys.dbxMustContain[${i}]`, /^[\w-]+:[0-9a-f]+$/, 'a "type:hex" entry'));
  }
  if (r.authorities !== undefined) {
    const a = obj(r.authorities, 'rules.authorities', ['pcr', 'allowed'], ['pcr', 'allowed']);
    pcrConst(a.pcr, 'rules.authorities.pcr', 7);
    arr(a.allowed, 'rules.authorities.allowed').forEach((e, i) => {
      const x = obj(e, `rules.authorities.allowed[${i}]`, ['sha256', 'variable', 'subject'], ['sha256', 'variable']);
      str(x.sha256, `rules.authorities.allowed[${i}].sha256`, HEX64, 'a SHA-256 (64 lowercase hex digits)');
      str(x.variable, `rules.authorities.allowed[${i}].variable`);
      if (x.subject !== undefined) str(x.subject, `rules.authorities.allowed[${i}].subject`);
    });
  }
  if (r.debug !== undefined) {
    const d = obj(r.debug, 'rules.debug', ['pcr', 'allowUefiDebugMode', 'allowDmaProtectionDisabled'], ['pcr', 'allowUefiDebugMode', 'allowDmaProtectionDisabled']);
    pcrConst(d.pcr, 'rules.debug.pcr', 7);
    bool(d.allowUefiDebugMode, 'rules.debug.allowUefiDebugMode');
    bool(d.allowDmaProtectionDisabled, 'rules.debug.allowDmaProtectionDisabled');
  }
  if (r.kernelCmdline !== undefined) {
    const c = obj(r.kernelCmdline, 'rules.kernelCmdline', ['allowed'], ['allowed']);
    arr(c.allowed, 'rules.kernelCmdline.allowed').forEach((e, i) => {
      const at = `rules.kernelCmdline.allowed[${i}]`;
      const x = obj(e, at, ['source', 'pcr', 'text', 'digest'], ['source']);
      if (!SOURCES.includes(x.source as string)) bad(`${at}.source`, `expected one of ${SOURCES.join(', ')}`);
      if (x.pcr !== undefined && (!Number.isInteger(x.pcr) || (x.pcr as number) < 0 || (x.pcr as number) > 23)) bad(`${at}.pcr`, 'expected a PCR index 0-23');
      if (x.text === undefined && x.digest === undefined) bad(at, 'needs "text" or "digest"');
      if (x.text !== undefined) str(x.text, `${at}.text`);
      if (x.digest !== undefined) digest(x.digest, `${at}.digest`);
    });
  }
  if (r.pcrValues !== undefined) {
    const pv = obj(r.pcrValues, 'rules.pcrValues', Array.from({ length: 24 }, (_, i) => String(i)));
    for (const [k, vals] of Object.entries(pv)) arr(vals, `rules.pcrValues.${k}`).forEach((x, i) => digest(x, `rules.pcrValues.${k}[${i}]`));
  }
  return v as Policy;
}

/**
 * parsePolicy for the server's hot path: one parse per distinct policy text (a machine's policy
 * is read from the store at every boot). Keyed by the whole text, so a changed policy (set-policy,
 * add-boot, a staged boot made active) is another key and is parsed afresh: nothing to invalidate.
 * The result is deeply frozen (shared between requests: nobody may change it). Bounded: the
 * oldest entries go first.
 */
export function parsePolicyCached(json: string): Policy {
  const hit = policyCache.get(json);
  if (hit) return hit;
  const p = deepFreeze(parsePolicy(json));
  if (policyCache.size >= POLICY_CACHE_MAX) policyCache.delete(policyCache.keys().next().value!);
  policyCache.set(json, p);
  return p;
}

const POLICY_CACHE_MAX = 1024;
const policyCache = new Map<string, Policy>();

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}
