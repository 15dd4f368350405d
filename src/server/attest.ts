/**
 * The boot-time verification pipeline: pure apart from the injected nonce consumer (the store's
 * atomic mark-used) and clock. Checklist, in order; the first failure refuses with its code:
 *
 *  1. UNKNOWN_MACHINE / REVOKED / PENDING: the machine exists and is active.
 *  2. AK_MISMATCH: the AK name sent equals the enrolled one (constant time).
 *  3. SIGNATURE: the quote is signed by the enrolled AK (restricted signing key, SHA-256).
 *  4. MAGIC / TYPE: TPM_GENERATED_VALUE and TPM_ST_ATTEST_QUOTE.
 *  5. NONCE: extraData equals the nonce sent (constant time); then the store atomically marks
 *     that nonce used if it was issued for this machine, unused and unexpired; a replay is
 *     NONCE_USED, a late answer NONCE_EXPIRED, a nonce never issued (or issued to another
 *     machine) NONCE.
 *  6. PCR_DIGEST: the quote's digest equals the digest of the PCR values sent.
 *  7. SELECTION: the quote covers the required selection (every PCR the policy reads, derived
 *     from the policy by policyPcrs, and the released PCR) in the policy's bank.
 *  8. COUNTERS: resetCount/restartCount did not go backwards since the last success.
 *  9–11. EVENTLOG / REPLAY / ALREADY_RELEASED / POLICY: evaluateBoot (measuredboot/verdict.ts),
 *     the same function as `bootkey policy check --pcrs`: the log parses strictly, is bound to
 *     the quoted values (bindLogToQuote: only events of quoted PCRs, after replay matched), the
 *     released PCR is zero, and checkPolicy passes on that TrustedLog; `failures` lists every
 *     failed rule.
 * Then the server share is wrapped to the enrolled EK with createImportBlob, sealed to the
 * quoted selection and values (which include the released PCR at zero, so that the blob never
 * unseals again once the client has extended that PCR).
 *
 * A release whose enrolled AK lacks noDA carries the notice AK_NO_DA (notices.ts): the machine
 * still unlocks, and is told to re-enrol.
 *
 * Not checked: the TPM clock and firmwareVersion (no policy uses them yet).
 * @module
 */
import { verifyQuote, quotePcrDigest, createImportBlob, objectName } from '../tpm/verify.ts';
import { unmarshalPublic2B, hashInfo, type TPMSPCRSelection, type TPMTPublic } from '../tpm/structures.ts';
import { TPM_ALG } from '../tpm/constants.ts';
import { TpmError } from '../tpm/errors.ts';
import { parseEventLog, EventLogError } from '../measuredboot/index.ts';
import type { Policy } from '../measuredboot/policy.ts';
import { parsePolicyCached } from '../measuredboot/policy-load.ts';
import type { EventLog } from '../measuredboot/types.ts';
import { bindLogToQuote, BindError, initialPcrValue, type TrustedLog } from '../measuredboot/trusted.ts';
import { evaluateBoot, requiredPcrs } from '../measuredboot/verdict.ts';
import { BANK_SIZE, type BankName, type PcrValues } from '../pcrs.ts';
import type { MessageOf, PcrSelection, ImportBlobWire } from '../protocol/messages.ts';
import type { ConsumeResult, MachineRecord } from './store.ts';
import { ServerError } from './errors.ts';
import { ctEqual, sha256 } from './secrets.ts';
import { akNotices } from './notices.ts';

export const DEFAULT_RELEASED_PCR = 15;
export const DEFAULT_NONCE_TTL_MS = 60_000;

const BANK_ALG: Record<BankName, number> = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384, sha512: TPM_ALG.SHA512, sm3_256: TPM_ALG.SM3_256 };

export function toTpmSelection(sel: PcrSelection[]): TPMSPCRSelection[] {
  return sel.map((s) => ({ hash: BANK_ALG[s.bank], pcrs: [...s.pcrs].sort((a, b) => a - b) }));
}
export function fromTpmSelection(sel: TPMSPCRSelection[]): PcrSelection[] {
  return sel.map((s) => ({ bank: hashInfo(s.hash).bank as BankName, pcrs: [...s.pcrs] }));
}

/** The selection a machine must quote: every PCR the policy reads (policyPcrs) ∪ the released PCR, in the policy's bank. */
export function requiredSelection(policy: Policy, releasedPcr: number): PcrSelection[] {
  return [{ bank: policy.bank, pcrs: requiredPcrs(policy, releasedPcr) }];
}

/** PCR initial value (PC Client PFP §3.3.3): all ones for 17-22, zeros otherwise. */
export const initialPcr = initialPcrValue;

function refuse(code: string, message: string, failures?: string[]): never {
  throw new ServerError(code, message, failures);
}

/** Maps a quote verification error onto the pipeline's codes. */
export function quoteErrorCode(e: TpmError): string {
  switch (e.code) {
    case 'VERIFY_MAGIC': return 'MAGIC';
    case 'VERIFY_TYPE': return 'TYPE';
    case 'VERIFY_NONCE': return 'NONCE';
    case 'VERIFY_PCR_DIGEST': return 'PCR_DIGEST';
    default: return 'SIGNATURE';
  }
}

export interface VerifiedBoot {
  /** The log bound to the quote: only events of quoted PCRs, after replay matched. */
  trusted: TrustedLog;
  /** The quoted selection and the verified values of exactly those PCRs. */
  selection: TPMSPCRSelection[];
  values: PcrValues;
  resetCount: number;
  restartCount: number;
}

/**
 * Steps 3-6 and 9 for enrolment and attestation alike: the quote (signature, magic, type,
 * extraData = nonce, PCR digest) and the log replay against the quoted values.
 * `skipPcr` is exempt from the replay comparison (the released PCR).
 */
export async function verifyQuoteAndLog(o: {
  akPublic: TPMTPublic; quote: Buffer; signature: Buffer; nonce: Buffer; pcrs: PcrValues; eventLog: Buffer; skipPcr?: number;
  /** Called after the nonce matched extraData and before the PCR digest (the store's mark-used). */
  afterNonce?: () => void | Promise<void>;
  /** Called after the PCR digest matched and before the log is parsed (selection, counters). */
  afterDigest?: (v: Omit<VerifiedBoot, 'trusted'>) => void;
}): Promise<VerifiedBoot> {
  const v = await verifyQuoteOnly(o);
  const log = parseLog(o.eventLog);
  return { trusted: checkReplay(log, v.values, o.skipPcr), ...v };
}

/** Steps 3–6 only: the quote, for attestation (the rest is evaluateBoot). */
export async function verifyQuoteOnly(o: Omit<Parameters<typeof verifyQuoteAndLog>[0], 'eventLog' | 'skipPcr'>): Promise<Omit<VerifiedBoot, 'trusted'>> {
  let q;
  try {
    q = verifyQuote({ akPublic: o.akPublic, message: o.quote, signature: o.signature, nonce: o.nonce, requireHash: 'sha256' });
  } catch (e) {
    if (e instanceof TpmError) refuse(quoteErrorCode(e), `quote: ${e.message}`);
    throw e;
  }
  await o.afterNonce?.();
  let covered: PcrValues;
  try {
    const d = quotePcrDigest(q.hashAlg, q.pcrSelect, o.pcrs);
    covered = d.covered;
    if (!ctEqual(d.digest, q.pcrDigest)) refuse('PCR_DIGEST', 'PCR digest: the quoted digest does not match the digest of the PCR values sent');
  } catch (e) {
    if (e instanceof TpmError) refuse('PCR_DIGEST', e.message);
    throw e;
  }
  const v = { selection: q.pcrSelect, values: covered, resetCount: q.attest.clockInfo.resetCount, restartCount: q.attest.clockInfo.restartCount };
  o.afterDigest?.(v);
  return v;
}

export function parseLog(b: Buffer): EventLog {
  try {
    return parseEventLog(b);
  } catch (e) {
    if (e instanceof EventLogError) refuse('EVENTLOG', `event log: ${e.message}`);
    throw e;
  }
}

/** Step 9 for enrolment: binds the log to the quoted values (all but `skipPcr`); names the first difference. */
export function checkReplay(log: EventLog, quoted: PcrValues, skipPcr?: number): TrustedLog {
  try {
    return bindLogToQuote(log, quoted, skipPcr !== undefined ? { skipPcr } : {});
  } catch (e) {
    if (e instanceof BindError) refuse('REPLAY', e.message);
    throw e;
  }
}

export interface AttestInput {
  machine: MachineRecord | undefined;
  msg: MessageOf<'attest-finish'>;
  /** The store's atomic mark-used of sha256(nonce) for this machine. */
  consumeNonce: (nonceHash: Buffer) => Promise<ConsumeResult>;
  /** The server share in clear (called only after every check passed). */
  share: (m: MachineRecord) => Buffer;
  /** The policy to check against (default: the machine's own); the service passes the machine's policy widened by its active staged boots. */
  policy?: Policy;
}

export interface AttestResult {
  released: MessageOf<'released'>;
  resetCount: number;
  restartCount: number;
  policy: Policy;
  /** The verified values of the quoted PCRs (to match the release to a staged boot). */
  values: PcrValues;
}

/**
 * Runs the whole checklist (module doc) and returns the `released` message.
 * @throws ServerError with the failed check's code (POLICY carries `failures`).
 */
export async function verifyAttestation(inp: AttestInput): Promise<AttestResult> {
  const { machine: m, msg } = inp;
  if (!m) refuse('UNKNOWN_MACHINE', `machine ${msg.machine} is not enrolled`);
  if (m.state === 'revoked') refuse('REVOKED', `machine ${m.id} is revoked`);
  if (m.state !== 'active') refuse('PENDING', `machine ${m.id}'s enrolment was not committed`);
  if (!ctEqual(msg.akName, m.akName)) refuse('AK_MISMATCH', `the AK name sent is not the AK enrolled for machine ${m.id}`);
  const akPublic = unmarshalPublic2B(m.akPublic, 'enrolled AK');
  const policy = inp.policy ?? parsePolicyCached(m.policy);

  const v = await verifyQuoteOnly({
    akPublic, quote: msg.quote, signature: msg.signature, nonce: msg.nonce, pcrs: msg.pcrs,
    afterNonce: async () => {
      const r = await inp.consumeNonce(sha256(msg.nonce));
      if (r === 'used') refuse('NONCE_USED', 'nonce: already used (a replayed quote)');
      if (r === 'expired') refuse('NONCE_EXPIRED', 'nonce: expired; start again with attest-begin');
      if (r !== 'ok') refuse('NONCE', `nonce: not issued by this server for machine ${m.id}`);
    },
    afterDigest: (v) => {
      const need = requiredSelection(policy, m.releasedPcr);
      for (const s of need) {
        const got = v.values.get(s.bank);
        const missing = s.pcrs.filter((p) => !got?.has(p));
        if (missing.length) refuse('SELECTION', `the quote does not cover PCR(s) ${missing.join(', ')} of bank ${s.bank}`);
      }
      if (m.lastResetCount !== undefined && m.lastRestartCount !== undefined) {
        if (v.resetCount < m.lastResetCount || (v.resetCount === m.lastResetCount && v.restartCount < m.lastRestartCount)) {
          refuse('COUNTERS', `TPM counters went backwards: resetCount ${v.resetCount}, restartCount ${v.restartCount}; the last success had ${m.lastResetCount}, ${m.lastRestartCount}`);
        }
      }
    },
  });
  const r = finish(v, msg, policy, m, inp.share);
  const notices = akNotices(akPublic);
  if (notices.length) r.released.notices = notices;
  return r;
}

/**
 * A refusal by evaluateBoot (EVENTLOG, SELECTION, REPLAY, ALREADY_RELEASED, POLICY): decided
 * after the quote verified, so `quoted` holds the values the quote covered (exactly those).
 */
export class VerdictRefusal extends ServerError {
  constructor(code: string, message: string, failures: string[] | undefined, readonly quoted: PcrValues) {
    super(code, message, failures);
  }
}

function finish(v: Omit<VerifiedBoot, 'trusted'>, msg: MessageOf<'attest-finish'>, policy: Policy, m: MachineRecord, share: (m: MachineRecord) => Buffer): AttestResult {
  const verdict = evaluateBoot(policy, msg.eventLog, v.values, { releasedPcr: m.releasedPcr });
  if (!verdict.pass) throw new VerdictRefusal(verdict.code!, verdict.message!, verdict.failures.length ? verdict.failures.map((f) => `${f.rule}: ${f.message}`) : undefined, v.values);

  const ek = unmarshalPublic2B(m.ekPublic, 'enrolled EK');
  if (!ctEqual(objectName(ek), m.ekName)) throw new ServerError('INTERNAL', `machine ${m.id}: stored EK name does not match the stored EK`);
  const secret = share(m);
  let blob;
  try {
    blob = createImportBlob(ek, secret, { pcrs: { selection: v.selection, values: v.values } });
  } finally {
    secret.fill(0);
  }
  const wire: ImportBlobWire = { public: blob.public, duplicate: blob.duplicate, inSymSeed: blob.inSymSeed };
  return { released: { t: 'released', blob: wire, sealedTo: fromTpmSelection(v.selection) }, resetCount: v.resetCount, restartCount: v.restartCount, policy, values: v.values };
}
