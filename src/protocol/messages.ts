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
} as const;

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
  | {
      t: 'admin'; adminToken: string; op: string; machine?: string; policy?: string; eventLog?: Buffer; limit?: number; flag?: boolean;
      /** set-policy / put-policy: accept a policy that pins no code (policy-lint.ts). */
      allowPermissive?: boolean;
      /** token-create: uses, lifetime in seconds, free-text comment. */
      uses?: number; ttl?: number; comment?: string;
      /** staged-approve / staged-drop: the staged boot's id (s-…). */
      staged?: string;
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
  admin: (o, t) => ({
    t, adminToken: str(o, t, 'adminToken', LIMITS.token), op: str(o, t, 'op', 32, /^[a-z-]+$/),
    machine: o.machine === undefined ? undefined : str(o, t, 'machine', LIMITS.id, ID_RE), policy: optStr(o, t, 'policy', LIMITS.policyJson),
    eventLog: optBytes(o, t, 'eventLog', LIMITS.eventLog), limit: o.limit === undefined ? undefined : int(o, t, 'limit', 1, 100000),
    flag: o.flag === undefined ? undefined : o.flag === true,
    allowPermissive: o.allowPermissive === undefined ? undefined : o.allowPermissive === true,
    uses: o.uses === undefined ? undefined : int(o, t, 'uses', 1, 100000), ttl: o.ttl === undefined ? undefined : int(o, t, 'ttl', 60, 366 * 86400),
    comment: optStr(o, t, 'comment', LIMITS.hostname),
    staged: o.staged === undefined ? undefined : str(o, t, 'staged', LIMITS.id, ID_RE),
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
