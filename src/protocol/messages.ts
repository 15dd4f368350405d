/**
 * bootkey's wire messages, version 1: the types and a validator for each. Every message is a
 * CBOR map `{v: 1, t: "<type>", ...fields}`; byte fields are CBOR byte strings. `parseMessage`
 * checks the version, the type and every field (type and size) and returns a typed value, or
 * throws ProtocolError('BAD_MESSAGE' | 'TOO_LARGE' | 'BAD_VERSION') naming the field.
 *
 * Enrolment (authorised by an enrolment token, never the admin token; from the running system):
 *   enroll-begin → enroll-challenge → enroll-finish → enroll-accepted → enroll-commit → ok
 *   (enroll-abort → ok undoes a pending enrolment)
 * Boot-time release:
 *   attest-begin → attest-challenge → attest-finish → released
 * Machine-side staging (the enrolled machine, in a boot that passes its policy; src/server/staging.ts):
 *   stage-begin{requestHash} → stage-challenge{random} → stage-finish{quote over
 *   nonce = SHA-256(random ‖ requestHash), PCRs, log, prediction, label} → staged
 *   (src/protocol/stage.ts: the request hash and the nonce)
 * Runtime attestation (issue 12, the booted system's agent; docs/PROTOCOL.md):
 *   runtime-begin{machine, akName} → runtime-challenge{nonce, selection, from, boot}
 *   → [runtime-entries{nonce, bank, from, entries} → runtime-more{received}]*   (same connection)
 *   → runtime-report{quote over nonce, PCRs, bank, from, entries} → runtime-result{state, count, failures}
 * Admin: admin → admin-result.   Any request may be answered by `error`.
 * @module
 */
import { ProtocolError } from './errors.ts';
import { encodeCbor, decodeCbor } from './codec.ts';
import { BANK_SIZE, isBankName, type BankName, type PcrValues } from '../pcrs.ts';

export const PROTOCOL_VERSION = 1;

/** Field limits (bytes or characters). */
export const LIMITS = {
  token: 256,
  tpmPublic: 1024,
  ekCert: 8192,
  attest: 1024,
  signature: 1024,
  eventLog: 1536 * 1024,
  id: 128,
  hostname: 255,
  credential: 1024,
  nonce: 64,
  policyJson: 256 * 1024,
  message: 4096,
  failures: 256,
  notices: 8,
  /** Ed25519 signature of the LUKS2 token statement (src/client/token.ts). */
  tokenSig: 128,
  /** The token-signing public key, SPKI DER. */
  tokenKey: 256,
  /** A PredictedBoot as JSON text (src/measuredboot/stage.ts), PKCS#7 blobs included. */
  prediction: 512 * 1024,
  /** A staged boot's label. */
  label: 128,
  /** Lines of a `staged` reply (widenings, signers). */
  stagedLines: 64,
  /** Raw IMA binary-list bytes in one runtime-entries / runtime-report (a chunk). */
  imaChunk: 1024 * 1024,
  /** Raw IMA bytes of one whole runtime report (all chunks of one nonce, held by the connection). */
  imaReport: 32 * 1024 * 1024,
  /** A runtime policy as JSON text (Keylime-sized policies: tens of thousands of digests). */
  runtimePolicy: 1536 * 1024,
  /** Failing entries named in a runtime-result. */
  runtimeFailures: 256,
} as const;

/** A runtime-result's verdict: the chain verified (attesting), failed, or must restart from entry 0. */
export type RuntimeResultState = 'attesting' | 'failed' | 'restart';

export interface PcrSelection {
  bank: BankName;
  pcrs: number[];
}

/** PCR values on the wire: [{bank, pcrs: [[index, value], ...]}]. */
export type WirePcrs = { bank: string; pcrs: [number, Uint8Array][] }[];

export interface ImportBlobWire {
  /** TPM2B_PUBLIC of the sealed object. */
  public: Buffer;
  /** TPM2B_PRIVATE: the duplicate. */
  duplicate: Buffer;
  /** TPM2B_ENCRYPTED_SECRET: the seed encrypted to the EK. */
  inSymSeed: Buffer;
}

/**
 * Something the operator must act on although the request succeeded (a `released` reply's
 * `notices`); the client logs each as one line. Codes: AK_NO_DA (docs/SERVER.md).
 * Clients that predate the field ignore it (parsers read only the fields they know).
 */
export interface Notice {
  code: string;
  message: string;
}

export type Message =
  | { t: 'enroll-begin'; enrolToken: string; ekPublic: Buffer; ekCert?: Buffer; akPublic: Buffer; machineId: string; hostname: string }
  | { t: 'enroll-challenge'; enrollment: string; credentialBlob: Buffer; encryptedSecret: Buffer; nonce: Buffer; pcrSelection: PcrSelection[] }
  | { t: 'enroll-finish'; enrolToken: string; enrollment: string; proof: Buffer; quote: Buffer; signature: Buffer; pcrs: PcrValues; eventLog: Buffer; policy?: string }
  | { t: 'enroll-accepted'; machine: string; serverShare: Buffer; releasedPcr: number; policySummary: string; tokenSig: Buffer }
  | { t: 'enroll-commit'; enrolToken: string; enrollment: string }
  | { t: 'enroll-abort'; enrolToken: string; enrollment: string }
  | { t: 'attest-begin'; machine: string; akName: Buffer; ekName: Buffer; releasedPcr: number }
  | { t: 'attest-challenge'; nonce: Buffer; pcrSelection: PcrSelection[]; releasedPcr: number; expiresIn: number; tokenKey: Buffer }
  | { t: 'attest-finish'; machine: string; akName: Buffer; ekName: Buffer; releasedPcr: number; nonce: Buffer; quote: Buffer; signature: Buffer; pcrs: PcrValues; eventLog: Buffer }
  | { t: 'stage-begin'; machine: string; akName: Buffer; requestHash: Buffer }
  | { t: 'stage-challenge'; random: Buffer; pcrSelection: PcrSelection[]; expiresIn: number }
  | { t: 'stage-finish'; machine: string; akName: Buffer; random: Buffer; quote: Buffer; signature: Buffer; pcrs: PcrValues; eventLog: Buffer; prediction: string; label?: string }
  | { t: 'staged'; id: string; state: string; widenings: string[]; signers: string[] }
  | { t: 'released'; blob: ImportBlobWire; sealedTo: PcrSelection[]; notices?: Notice[] }
  // ---- runtime attestation (docs/PROTOCOL.md) ----
  | { t: 'runtime-begin'; machine: string; akName: Buffer }
  | {
      t: 'runtime-challenge'; nonce: Buffer; pcrSelection: PcrSelection[]; expiresIn: number;
      /** Entries the server's chain holds for the boot below: send entries from this index on. */
      from: number;
      /** The boot that chain belongs to (absent: no chain yet): TPM resetCount and SHA-256 of the quoted boot PCRs. */
      resetCount?: number; bootDigest?: Buffer;
    }
  | { t: 'runtime-entries'; machine: string; nonce: Buffer; bank: BankName; from: number; entries: Buffer }
  | { t: 'runtime-more'; received: number }
  | {
      t: 'runtime-report'; machine: string; akName: Buffer; nonce: Buffer; quote: Buffer; signature: Buffer; pcrs: PcrValues;
      /** The bank of the template hashes in `entries` (sha1: binary_runtime_measurements; sha256: ..._sha256). */
      bank: BankName;
      /** Index of the first entry in `entries` (the continuation of any runtime-entries chunks of this nonce). */
      from: number;
      /** Consecutive entries of the binary measurement list, as the kernel writes them. */
      entries: Buffer;
    }
  | {
      t: 'runtime-result'; state: RuntimeResultState;
      /** Entries verified in this boot's chain (the next report starts here). */
      count: number;
      /** Entries sent that the quote did not cover yet (appended after the quote). */
      unbound: number;
      message: string;
      /** One line per failing entry ("entry 1432 /usr/bin/x: …"). */
      failures: string[];
    }
  | {
      t: 'admin'; adminToken: string; op: string; machine?: string; policy?: string; eventLog?: Buffer; limit?: number; flag?: boolean;
      /** set-policy / put-policy: accept a policy that pins no code (policy-lint.ts). */
      allowPermissive?: boolean;
      /** token-create: uses, lifetime in seconds, free-text comment. */
      uses?: number; ttl?: number; comment?: string;
      /** staged-approve / staged-drop: the staged boot's id (s-…). */
      staged?: string;
      /** set-runtime-policy: the runtime (IMA) policy, JSON text (src/ima/policy.ts). */
      runtimePolicy?: string;
      /** set-stale-limit: seconds (0 = off); approve: how long the approval lasts. */
      seconds?: number;
    }
  | { t: 'admin-result'; json: string }
  | { t: 'ok' }
  | { t: 'error'; code: string; message: string; failures?: string[] };

export type MessageType = Message['t'];
export type MessageOf<T extends MessageType> = Extract<Message, { t: T }>;

// ---------- field readers ----------

type Obj = Record<string, unknown>;

function bad(t: string, field: string, what: string): never {
  throw new ProtocolError('BAD_MESSAGE', `${t}: field "${field}" ${what}`);
}

function bytes(o: Obj, t: string, k: string, max: number, exact?: number): Buffer {
  const v = o[k];
  if (!(v instanceof Uint8Array)) bad(t, k, 'must be a byte string');
  if (v.length > max) throw new ProtocolError('TOO_LARGE', `${t}: field "${k}" has ${v.length} bytes, the limit is ${max}`);
  if (exact !== undefined && v.length !== exact) bad(t, k, `must be ${exact} bytes, got ${v.length}`);
  return Buffer.from(v);
}
function optBytes(o: Obj, t: string, k: string, max: number): Buffer | undefined {
  return o[k] === undefined || o[k] === null ? undefined : bytes(o, t, k, max);
}
function str(o: Obj, t: string, k: string, max: number, re?: RegExp): string {
  const v = o[k];
  if (typeof v !== 'string') bad(t, k, 'must be a text string');
  if (v.length > max) throw new ProtocolError('TOO_LARGE', `${t}: field "${k}" has ${v.length} characters, the limit is ${max}`);
  if (re && !re.test(v)) bad(t, k, 'has an invalid format');
  return v;
}
function optStr(o: Obj, t: string, k: string, max: number): string | undefined {
  return o[k] === undefined || o[k] === null ? undefined : str(o, t, k, max);
}
function int(o: Obj, t: string, k: string, min: number, max: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(t, k, `must be an integer in [${min}, ${max}]`);
  return v;
}
function obj(v: unknown, t: string, k: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) bad(t, k, 'must be a map');
  return v as Obj;
}
function arr(v: unknown, t: string, k: string, max: number): unknown[] {
  if (!Array.isArray(v)) bad(t, k, 'must be an array');
  if (v.length > max) throw new ProtocolError('TOO_LARGE', `${t}: field "${k}" has ${v.length} entries, the limit is ${max}`);
  return v;
}

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Largest IMA entry index/count on the wire (the parser's default bound is 1,000,000 entries). */
export const MAX_IMA_INDEX = 0x7fffffff;

function bank(o: Obj, t: string, k: string): BankName {
  const b = str(o, t, k, 16);
  if (!isBankName(b)) bad(t, k, `"${b}" is not a known bank`);
  return b;
}

function selection(o: Obj, t: string, k: string): PcrSelection[] {
  return arr(o[k], t, k, 8).map((e, i) => {
    const s = obj(e, t, `${k}[${i}]`);
    const bank = str(s, t, 'bank', 16);
    if (!isBankName(bank)) bad(t, `${k}[${i}].bank`, `"${bank}" is not a known bank`);
    const pcrs = arr(s.pcrs, t, `${k}[${i}].pcrs`, 24).map((p) => {
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p > 23) bad(t, `${k}[${i}].pcrs`, 'must hold PCR indices 0..23');
      return p;
    });
    return { bank, pcrs };
  });
}

function pcrValues(o: Obj, t: string, k: string): PcrValues {
  const out: PcrValues = new Map();
  for (const [i, e] of arr(o[k], t, k, 8).entries()) {
    const b = obj(e, t, `${k}[${i}]`);
    const bank = str(b, t, 'bank', 16);
    if (!isBankName(bank)) bad(t, `${k}[${i}].bank`, `"${bank}" is not a known bank`);
    if (out.has(bank)) bad(t, `${k}[${i}].bank`, `bank ${bank} appears twice`);
    const m = new Map<number, Buffer>();
    for (const p of arr(b.pcrs, t, `${k}[${i}].pcrs`, 24)) {
      if (!Array.isArray(p) || p.length !== 2) bad(t, `${k}[${i}].pcrs`, 'must hold [index, value] pairs');
      const [idx, val] = p as [unknown, unknown];
      if (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0 || idx > 23) bad(t, `${k}[${i}].pcrs`, 'has a PCR index outside 0..23');
      if (!(val instanceof Uint8Array) || val.length !== BANK_SIZE[bank]) bad(t, `${k}[${i}].pcrs`, `PCR ${idx} must be ${BANK_SIZE[bank]} bytes`);
      if (m.has(idx)) bad(t, `${k}[${i}].pcrs`, `PCR ${idx} appears twice`);
      m.set(idx, Buffer.from(val));
    }
    out.set(bank, m);
  }
  return out;
}

export function pcrValuesToWire(v: PcrValues): WirePcrs {
  return [...v].map(([bank, m]) => ({ bank, pcrs: [...m].sort((a, b) => a[0] - b[0]) }));
}

function blob(o: Obj, t: string, k: string): ImportBlobWire {
  const b = obj(o[k], t, k);
  return { public: bytes(b, t, `public`, LIMITS.tpmPublic), duplicate: bytes(b, t, 'duplicate', LIMITS.credential), inSymSeed: bytes(b, t, 'inSymSeed', LIMITS.credential) };
}

function notices(o: Obj, t: string, k: string): Notice[] | undefined {
  if (o[k] === undefined || o[k] === null) return undefined;
  return arr(o[k], t, k, LIMITS.notices).map((e, i) => {
    const n = obj(e, t, `${k}[${i}]`);
    return { code: str(n, t, 'code', 64, /^[A-Z][A-Z0-9_]*$/), message: str(n, t, 'message', LIMITS.message) };
  });
}

// ---------- parse / encode ----------

const PARSERS: { [T in MessageType]: (o: Obj, t: T) => MessageOf<T> } = {
  'enroll-begin': (o, t) => ({
    t, enrolToken: str(o, t, 'enrolToken', LIMITS.token), ekPublic: bytes(o, t, 'ekPublic', LIMITS.tpmPublic),
    ekCert: optBytes(o, t, 'ekCert', LIMITS.ekCert), akPublic: bytes(o, t, 'akPublic', LIMITS.tpmPublic),
    machineId: str(o, t, 'machineId', LIMITS.id), hostname: str(o, t, 'hostname', LIMITS.hostname),
  }),
  'enroll-challenge': (o, t) => ({
    t, enrollment: str(o, t, 'enrollment', LIMITS.id, ID_RE), credentialBlob: bytes(o, t, 'credentialBlob', LIMITS.credential),
    encryptedSecret: bytes(o, t, 'encryptedSecret', LIMITS.credential), nonce: bytes(o, t, 'nonce', LIMITS.nonce), pcrSelection: selection(o, t, 'pcrSelection'),
  }),
  'enroll-finish': (o, t) => ({
    t, enrolToken: str(o, t, 'enrolToken', LIMITS.token), enrollment: str(o, t, 'enrollment', LIMITS.id, ID_RE),
    proof: bytes(o, t, 'proof', 64), quote: bytes(o, t, 'quote', LIMITS.attest), signature: bytes(o, t, 'signature', LIMITS.signature),
    pcrs: pcrValues(o, t, 'pcrs'), eventLog: bytes(o, t, 'eventLog', LIMITS.eventLog), policy: optStr(o, t, 'policy', LIMITS.id),
  }),
  'enroll-accepted': (o, t) => ({
    t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), serverShare: bytes(o, t, 'serverShare', 32, 32),
    releasedPcr: int(o, t, 'releasedPcr', 0, 23), policySummary: str(o, t, 'policySummary', LIMITS.message),
    tokenSig: bytes(o, t, 'tokenSig', LIMITS.tokenSig),
  }),
  'enroll-commit': (o, t) => ({ t, enrolToken: str(o, t, 'enrolToken', LIMITS.token), enrollment: str(o, t, 'enrollment', LIMITS.id, ID_RE) }),
  'enroll-abort': (o, t) => ({ t, enrolToken: str(o, t, 'enrolToken', LIMITS.token), enrollment: str(o, t, 'enrollment', LIMITS.id, ID_RE) }),
  'attest-begin': (o, t) => ({
    t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), akName: bytes(o, t, 'akName', 2 + 64), ekName: bytes(o, t, 'ekName', 2 + 64),
    releasedPcr: int(o, t, 'releasedPcr', 0, 23),
  }),
  'attest-challenge': (o, t) => ({
    t, nonce: bytes(o, t, 'nonce', LIMITS.nonce), pcrSelection: selection(o, t, 'pcrSelection'),
    releasedPcr: int(o, t, 'releasedPcr', 0, 23), expiresIn: int(o, t, 'expiresIn', 0, 3600), tokenKey: bytes(o, t, 'tokenKey', LIMITS.tokenKey),
  }),
  'attest-finish': (o, t) => ({
    t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), akName: bytes(o, t, 'akName', 2 + 64), ekName: bytes(o, t, 'ekName', 2 + 64),
    releasedPcr: int(o, t, 'releasedPcr', 0, 23), nonce: bytes(o, t, 'nonce', LIMITS.nonce),
    quote: bytes(o, t, 'quote', LIMITS.attest), signature: bytes(o, t, 'signature', LIMITS.signature),
    pcrs: pcrValues(o, t, 'pcrs'), eventLog: bytes(o, t, 'eventLog', LIMITS.eventLog),
  }),
  'stage-begin': (o, t) => ({ t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), akName: bytes(o, t, 'akName', 2 + 64), requestHash: bytes(o, t, 'requestHash', 32, 32) }),
  'stage-challenge': (o, t) => ({
    t, random: bytes(o, t, 'random', 32, 32), pcrSelection: selection(o, t, 'pcrSelection'), expiresIn: int(o, t, 'expiresIn', 0, 3600),
  }),
  'stage-finish': (o, t) => ({
    t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), akName: bytes(o, t, 'akName', 2 + 64), random: bytes(o, t, 'random', 32, 32),
    quote: bytes(o, t, 'quote', LIMITS.attest), signature: bytes(o, t, 'signature', LIMITS.signature),
    pcrs: pcrValues(o, t, 'pcrs'), eventLog: bytes(o, t, 'eventLog', LIMITS.eventLog),
    prediction: str(o, t, 'prediction', LIMITS.prediction), label: optStr(o, t, 'label', LIMITS.label),
  }),
  staged: (o, t) => ({
    t, id: str(o, t, 'id', LIMITS.id), state: str(o, t, 'state', 32, /^[a-z-]+$/),
    widenings: arr(o.widenings, t, 'widenings', LIMITS.stagedLines).map((x, i) => (typeof x === 'string' && x.length <= LIMITS.message ? x : bad(t, `widenings[${i}]`, 'must be a text string'))),
    signers: arr(o.signers, t, 'signers', LIMITS.stagedLines).map((x, i) => (typeof x === 'string' && x.length <= LIMITS.message ? x : bad(t, `signers[${i}]`, 'must be a text string'))),
  }),
  released: (o, t) => ({ t, blob: blob(o, t, 'blob'), sealedTo: selection(o, t, 'sealedTo'), notices: notices(o, t, 'notices') }),
  'runtime-begin': (o, t) => ({ t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), akName: bytes(o, t, 'akName', 2 + 64) }),
  'runtime-challenge': (o, t) => ({
    t, nonce: bytes(o, t, 'nonce', LIMITS.nonce), pcrSelection: selection(o, t, 'pcrSelection'), expiresIn: int(o, t, 'expiresIn', 0, 3600),
    from: int(o, t, 'from', 0, MAX_IMA_INDEX),
    resetCount: o.resetCount === undefined || o.resetCount === null ? undefined : int(o, t, 'resetCount', 0, 0xffffffff),
    bootDigest: o.bootDigest === undefined || o.bootDigest === null ? undefined : bytes(o, t, 'bootDigest', 32, 32),
  }),
  'runtime-entries': (o, t) => ({
    t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), nonce: bytes(o, t, 'nonce', LIMITS.nonce), bank: bank(o, t, 'bank'),
    from: int(o, t, 'from', 0, MAX_IMA_INDEX), entries: bytes(o, t, 'entries', LIMITS.imaChunk),
  }),
  'runtime-more': (o, t) => ({ t, received: int(o, t, 'received', 0, MAX_IMA_INDEX) }),
  'runtime-report': (o, t) => ({
    t, machine: str(o, t, 'machine', LIMITS.id, ID_RE), akName: bytes(o, t, 'akName', 2 + 64), nonce: bytes(o, t, 'nonce', LIMITS.nonce),
    quote: bytes(o, t, 'quote', LIMITS.attest), signature: bytes(o, t, 'signature', LIMITS.signature), pcrs: pcrValues(o, t, 'pcrs'),
    bank: bank(o, t, 'bank'), from: int(o, t, 'from', 0, MAX_IMA_INDEX), entries: bytes(o, t, 'entries', LIMITS.imaChunk),
  }),
  'runtime-result': (o, t) => ({
    t, state: str(o, t, 'state', 16, /^(attesting|failed|restart)$/) as RuntimeResultState,
    count: int(o, t, 'count', 0, MAX_IMA_INDEX), unbound: int(o, t, 'unbound', 0, MAX_IMA_INDEX), message: str(o, t, 'message', LIMITS.message),
    failures: arr(o.failures, t, 'failures', LIMITS.runtimeFailures).map((x, i) => (typeof x === 'string' && x.length <= LIMITS.message ? x : bad(t, `failures[${i}]`, 'must be a text string'))),
  }),
  admin: (o, t) => ({
    t, adminToken: str(o, t, 'adminToken', LIMITS.token), op: str(o, t, 'op', 32, /^[a-z-]+$/),
    machine: o.machine === undefined ? undefined : str(o, t, 'machine', LIMITS.id, ID_RE), policy: optStr(o, t, 'policy', LIMITS.policyJson),
    eventLog: optBytes(o, t, 'eventLog', LIMITS.eventLog), limit: o.limit === undefined ? undefined : int(o, t, 'limit', 1, 100000),
    flag: o.flag === undefined ? undefined : o.flag === true,
    allowPermissive: o.allowPermissive === undefined ? undefined : o.allowPermissive === true,
    uses: o.uses === undefined ? undefined : int(o, t, 'uses', 1, 100000), ttl: o.ttl === undefined ? undefined : int(o, t, 'ttl', 60, 366 * 86400),
    comment: optStr(o, t, 'comment', LIMITS.hostname),
    staged: o.staged === undefined ? undefined : str(o, t, 'staged', LIMITS.id, ID_RE),
    runtimePolicy: optStr(o, t, 'runtimePolicy', LIMITS.runtimePolicy),
    seconds: o.seconds === undefined ? undefined : int(o, t, 'seconds', 0, 366 * 86400),
  }),
  'admin-result': (o, t) => ({ t, json: str(o, t, 'json', 16 * 1024 * 1024) }),
  ok: (_o, t) => ({ t }),
  error: (o, t) => ({
    t, code: str(o, t, 'code', 64), message: str(o, t, 'message', LIMITS.message),
    failures: o.failures === undefined ? undefined : arr(o.failures, t, 'failures', LIMITS.failures).map((f, i) => {
      if (typeof f !== 'string' || f.length > LIMITS.message) bad(t, `failures[${i}]`, 'must be a text string');
      return f;
    }),
  }),
};

/** Decodes and validates one message; `expect` restricts the allowed types (an `error` is always allowed). */
export function parseMessage<T extends MessageType = MessageType>(payload: Uint8Array, expect?: readonly T[]): MessageOf<T | 'error'> {
  const o = obj(decodeCbor(payload), 'message', '(root)');
  if (o.v !== PROTOCOL_VERSION) throw new ProtocolError('BAD_VERSION', `unsupported protocol version ${JSON.stringify(o.v)} (this side speaks ${PROTOCOL_VERSION})`);
  const t = o.t;
  // own properties only: "toString", "constructor" or "__proto__" must not find Object.prototype's
  if (typeof t !== 'string' || !Object.hasOwn(PARSERS, t)) throw new ProtocolError('BAD_MESSAGE', `unknown message type ${JSON.stringify(t)}`);
  if (expect && !expect.includes(t as T)) {
    if (t === 'error') return PARSERS.error(o, 'error');
    throw new ProtocolError('BAD_MESSAGE', `unexpected message "${t}" (expected ${expect.join(' or ')})`);
  }
  const m = (PARSERS[t as MessageType] as (o: Obj, t: string) => Message)(o, t) as Record<string, unknown>;
  for (const k of Object.keys(m)) if (m[k] === undefined) delete m[k];
  return m as MessageOf<T | 'error'>;
}

/** Encodes a message (PcrValues become the wire form). */
export function encodeMessage(m: Message): Buffer {
  const o: Obj = { v: PROTOCOL_VERSION, ...m };
  if ('pcrs' in m && m.pcrs instanceof Map) o.pcrs = pcrValuesToWire(m.pcrs);
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return encodeCbor(o);
}
