/**
 * Runtime (IMA) attestation, the verifier (issue 12 §3–4; protocol: docs/PROTOCOL.md). Pure
 * apart from the injected nonce consumer; the service (service.ts) loads and stores the machine's
 * RuntimeRecord and acts on the verdict (audit, webhook, hook). Checklist of a runtime-report,
 * in order; the first failure refuses with its code:
 *
 *  1. (service) UNKNOWN_MACHINE / REVOKED / PENDING / AK_MISMATCH; RUNTIME_OFF without a runtime policy.
 *  2. SIGNATURE / MAGIC / TYPE / NONCE (+ NONCE_USED / NONCE_EXPIRED, purpose `runtime`) / PCR_DIGEST.
 *  3. SELECTION: sha256 PCRs 0–10 quoted.
 *  4. COUNTERS: resetCount/restartCount not behind the stored chain's.
 *  5. IMA_FROM: the report starts at the stored count in the same boot (resetCount and the digest
 *     of the quoted boot PCRs equal), at 0 in another boot: a report that claims fewer entries
 *     than were verified is refused.
 *  6. IMA_LIST: the entries parse (bounded; src/ima/list.ts).
 *  7. bindImaToQuote (src/ima/trusted.ts): entries replay from the stored running PCR 10 to the
 *     quoted PCR 10 in every quoted bank, template hashes recomputed from the template data.
 *     An incremental report that does not → `restart` (the chain starts again from entry 0);
 *     a whole list that does not → `failed` (REPLAY).
 *  8. The runtime policy on the bound entries only → `failed` with one line per failing entry.
 * @module
 */
import { createHash } from 'node:crypto';
import { unmarshalPublic2B } from '../tpm/structures.ts';
import { BANK_SIZE, isBankName, type BankName, type PcrValues } from '../pcrs.ts';
import type { MessageOf, PcrSelection } from '../protocol/messages.ts';
import { LIMITS } from '../protocol/messages.ts';
import { parseImaList } from '../ima/list.ts';
import { bindImaToQuote, ImaBindError } from '../ima/trusted.ts';
import { checkBootAggregate } from '../ima/replay.ts';
import type { LearnedKey } from '../ima/policy.ts';
import type { ImaEntry, ImaRunningState } from '../ima/types.ts';
import { BootkeyError } from '../errors.ts';
import type { ConsumeResult, MachineRecord, RuntimeRecord } from './store.ts';
import { ServerError } from './errors.ts';
import { ctEqual, sha256 } from './secrets.ts';
import { verifyQuoteOnly } from './attest.ts';
import { checkRuntime, type CompiledRuntimePolicy, type RuntimeFailure } from './runtime-policy.ts';

/** The bank and PCRs a runtime quote covers: the boot (0–9: boot identity, boot_aggregate) and IMA's 10. */
export const RUNTIME_BANK: BankName = 'sha256';
export const BOOT_PCRS: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
export const IMA_PCR = 10;
export const RUNTIME_SELECTION: PcrSelection[] = [{ bank: RUNTIME_BANK, pcrs: [...BOOT_PCRS, IMA_PCR] }];
/** Failing entries kept per machine (the store row and the runtime-result). */
export const MAX_KEPT_FAILURES = LIMITS.runtimeFailures;

function refuse(code: string, message: string): never {
  throw new ServerError(code, message);
}

/** SHA-256 over the quoted sha256 values of PCRs 0–9, in order: which boot a chain belongs to. */
export function bootDigestOf(values: PcrValues): Buffer {
  const b = values.get(RUNTIME_BANK);
  const h = createHash('sha256');
  for (const i of BOOT_PCRS) {
    const v = b?.get(i);
    if (!v) refuse('SELECTION', `the quote does not cover PCR ${i} of bank ${RUNTIME_BANK}`);
    h.update(v);
  }
  return h.digest();
}

/** The entries of one report, held by the connection between chunks (docs/PROTOCOL.md). */
export interface PendingReport {
  machine: string;
  nonceHash: Buffer;
  bank?: BankName;
  /** Index of the report's first entry, and the next expected one. */
  from?: number;
  next?: number;
  entries: ImaEntry[];
  bytes: number;
}

/** Per-connection state the server keeps for a runtime report (set by runtime-begin). */
export interface RuntimeSession {
  pending?: PendingReport;
}

/**
 * Bytes of chunks held by all connections of this process together: over the cap a chunk is
 * refused BUSY (the agent retries later), so that many large first lists at once cannot
 * exhaust the server's memory (parsed entries take a few times their bytes).
 */
export const MAX_HELD_BYTES = 256 * 1024 * 1024;
let heldBytes = 0;

/** Drops a connection's pending chunks (report done, new begin, or connection closed). */
export function releasePending(s: RuntimeSession | undefined): void {
  if (s?.pending) {
    heldBytes -= s.pending.bytes;
    s.pending = undefined;
  }
}

export function heldRuntimeBytes(): number {
  return heldBytes;
}

/** Parses one chunk; entry indices become absolute (from + i). @throws ServerError IMA_LIST */
export function parseChunk(bytes: Buffer, bank: BankName, from: number): ImaEntry[] {
  if (!bytes.length) return [];
  let list;
  try {
    list = parseImaList(bytes, { bank });
  } catch (e) {
    if (e instanceof BootkeyError) refuse('IMA_LIST', `IMA entries from ${from}: ${e.message}`);
    throw e;
  }
  if (list.format !== 'binary') refuse('IMA_LIST', `IMA entries from ${from}: not the binary list`);
  return list.entries.map((e, i) => ({ ...e, index: from + i }));
}

/** Adds a runtime-entries chunk to the connection's pending report. @throws ServerError */
export function addChunk(s: RuntimeSession, msg: MessageOf<'runtime-entries'>): number {
  const p = s.pending;
  if (!p || p.machine !== msg.machine || !ctEqual(sha256(msg.nonce), p.nonceHash)) {
    refuse('IMA_NO_BEGIN', 'runtime-entries: send runtime-begin for this machine on this connection first, and the chunks with its nonce');
  }
  if (p.bank !== undefined && p.bank !== msg.bank) refuse('IMA_LIST', `runtime-entries: bank ${msg.bank} after chunks of bank ${p.bank}`);
  if (p.next !== undefined && msg.from !== p.next) refuse('IMA_FROM', `runtime-entries: chunk starts at entry ${msg.from}, expected ${p.next} (chunks must be contiguous)`);
  if (p.bytes + msg.entries.length > LIMITS.imaReport) refuse('IMA_TOO_LARGE', `runtime report over ${LIMITS.imaReport} bytes`);
  if (heldBytes + msg.entries.length > MAX_HELD_BYTES) refuse('BUSY', 'the server holds too many runtime reports in progress; retry later');
  const entries = parseChunk(msg.entries, msg.bank, msg.from);
  heldBytes += msg.entries.length;
  p.bank = msg.bank;
  p.from ??= msg.from;
  p.next = msg.from + entries.length;
  p.bytes += msg.entries.length;
  for (const e of entries) p.entries.push(e);
  return p.entries.length;
}

export interface RuntimeVerdict {
  /** The record to store (version unchanged: the caller's compare-and-set). */
  record: RuntimeRecord;
  result: MessageOf<'runtime-result'>;
  /** A failure first seen in this report (the caller audits it and notifies). */
  newFailure?: { reason: string; failures: string[] };
  /** Entries verified in this report. */
  verified: number;
}

function pcr10Map(values: PcrValues): Map<BankName, Buffer> {
  const out = new Map<BankName, Buffer>();
  for (const [bank, m] of values) {
    const v = m.get(IMA_PCR);
    if (v) out.set(bank, v);
  }
  return out;
}

function zeroState(banks: Iterable<BankName>): ImaRunningState {
  const pcr10: Partial<Record<BankName, string>> = {};
  for (const b of banks) pcr10[b] = Buffer.alloc(BANK_SIZE[b]).toString('hex');
  return { count: 0, pcr10 };
}

/** One failure as a line: the policy's message already starts `entry N PATH:` (src/ima/policy.ts). */
export function formatFailure(f: RuntimeFailure): string {
  const prefix = `entry ${f.index}`;
  const line = f.message.startsWith(prefix) ? f.message : `${prefix}${f.path !== undefined ? ` ${f.path}` : ''}: ${f.message}`;
  return line.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 1000);
}

/**
 * Steps 2–8 of the module doc for one runtime-report. `rt` is the machine's stored row (with a
 * policy); `pending` the chunks this connection received for the same nonce.
 * @throws ServerError with the failed check's code
 */
export async function verifyRuntimeReport(o: {
  machine: MachineRecord;
  rt: RuntimeRecord;
  /** The machine's runtime policy, compiled (runtime-policy.ts: by the row's policyHash). */
  policy: CompiledRuntimePolicy;
  msg: MessageOf<'runtime-report'>;
  pending?: PendingReport;
  consumeNonce: (nonceHash: Buffer) => Promise<ConsumeResult>;
  now: number;
}): Promise<RuntimeVerdict> {
  const { machine: m, rt, msg, now } = o;
  const pending = o.pending && o.pending.machine === m.id && ctEqual(o.pending.nonceHash, sha256(msg.nonce)) && o.pending.entries.length ? o.pending : undefined;
  const v = await verifyQuoteOnly({
    akPublic: unmarshalPublic2B(m.akPublic, 'enrolled AK'), quote: msg.quote, signature: msg.signature, nonce: msg.nonce, pcrs: msg.pcrs,
    afterNonce: async () => {
      const r = await o.consumeNonce(sha256(msg.nonce));
      if (r === 'used') refuse('NONCE_USED', 'nonce: already used (a replayed runtime report)');
      if (r === 'expired') refuse('NONCE_EXPIRED', 'nonce: expired; start again with runtime-begin');
      if (r !== 'ok') refuse('NONCE', `nonce: not issued by this server for a runtime report of machine ${m.id}`);
    },
    afterDigest: (q) => {
      for (const s of RUNTIME_SELECTION) {
        const got = q.values.get(s.bank);
        const missing = s.pcrs.filter((p) => !got?.has(p));
        if (missing.length) refuse('SELECTION', `the quote does not cover PCR(s) ${missing.join(', ')} of bank ${s.bank}`);
      }
      const [rc, rs] = rt.resetCount !== undefined && rt.restartCount !== undefined ? [rt.resetCount, rt.restartCount] : [m.lastResetCount, m.lastRestartCount];
      if (rc !== undefined && rs !== undefined && (q.resetCount < rc || (q.resetCount === rc && q.restartCount < rs))) {
        refuse('COUNTERS', `TPM counters went backwards: resetCount ${q.resetCount}, restartCount ${q.restartCount}; the stored chain has ${rc}, ${rs}`);
      }
    },
  });
  const bootDigest = bootDigestOf(v.values);
  const quoted = pcr10Map(v.values);
  const sameBoot = rt.count > 0 && rt.resetCount === v.resetCount && rt.bootDigest !== undefined && ctEqual(rt.bootDigest, bootDigest);
  const expected = sameBoot ? rt.count : 0;
  // The chunks and the report's own entries, contiguous.
  if (pending && pending.bank !== msg.bank) refuse('IMA_LIST', `runtime-report: bank ${msg.bank} after chunks of bank ${pending.bank}`);
  if (pending && msg.from !== pending.next) refuse('IMA_FROM', `runtime-report: entries start at ${msg.from}, the chunks ended before ${pending.next}`);
  const from = pending ? pending.from! : msg.from;
  if (from !== expected) {
    refuse('IMA_FROM', sameBoot
      ? `the report starts at entry ${from}, but the server verified ${expected} entries of this boot's IMA list: send the entries from ${expected} on (a report may not take back verified entries)`
      : `the report starts at entry ${from}, but this is a new chain (boot resetCount ${v.resetCount}): send the whole list from entry 0`);
  }
  if ((pending?.bytes ?? 0) + msg.entries.length > LIMITS.imaReport) refuse('IMA_TOO_LARGE', `runtime report over ${LIMITS.imaReport} bytes`);
  const own = parseChunk(msg.entries, msg.bank, msg.from);
  const entries = pending ? [...pending.entries, ...own] : own;

  const start: ImaRunningState = sameBoot ? { count: rt.count, pcr10: JSON.parse(rt.pcr10) as ImaRunningState['pcr10'] } : zeroState(quoted.keys());
  const next: RuntimeRecord = { ...rt, resetCount: v.resetCount, restartCount: v.restartCount, bootDigest, updated: now };
  let binding;
  try {
    binding = bindImaToQuote(entries, msg.bank, start, quoted);
  } catch (e) {
    if (!(e instanceof ImaBindError)) throw e;
    if (sameBoot) {
      // A mismatch of an incremental report: the chain starts again from entry 0 (whole list).
      const record: RuntimeRecord = { ...next, count: 0, pcr10: '{}', learnedKeys: '[]', bootDigest: undefined, resetCount: undefined, restartCount: undefined };
      return { record, verified: 0, result: { t: 'runtime-result', state: 'restart', count: 0, unbound: entries.length, failures: [], message: `the entries from ${from} do not continue the verified chain (${e.message}): send the whole list from entry 0` } };
    }
    const reason = `REPLAY: the IMA list does not replay to the quoted PCR 10: ${e.message}`;
    // Nothing of this list is verified: the next report starts a chain at entry 0.
    return failedVerdict({ ...next, count: 0, pcr10: '{}', learnedKeys: '[]', bootDigest: undefined, resetCount: undefined, restartCount: undefined }, reason, [], now, 0, entries.length);
  }
  // boot_aggregate (entry 0, in a whole list) against the QUOTED boot PCRs, when its bank was quoted.
  let bootAggregates: string[] | undefined;
  const first = binding.trusted.entries[0];
  if (first && first.index === 0) {
    const ba = checkBootAggregate(first, v.values);
    if (ba.expected && ba.bank) bootAggregates = [`${first.digestAlgo ?? 'sha1'}:${ba.expected}`];
  }
  const check = checkRuntime(o.policy, binding.trusted, { bootAggregates, learnedKeys: sameBoot ? (JSON.parse(rt.learnedKeys) as LearnedKey[]) : [] });
  const record: RuntimeRecord = { ...next, count: binding.state.count, pcr10: JSON.stringify(binding.state.pcr10), learnedKeys: JSON.stringify(check.learnedKeys), lastReport: now };
  const verified = binding.state.count - start.count;
  if (check.failures.length) {
    return failedVerdict(record, `POLICY: ${check.failures.length} IMA entr${check.failures.length === 1 ? 'y' : 'ies'} not allowed by the runtime policy`, check.failures.map(formatFailure), now, verified, binding.unbound);
  }
  if (rt.state === 'failed') {
    return { record, verified, result: { t: 'runtime-result', state: 'failed', count: record.count, unbound: binding.unbound, failures: rt.failures.slice(0, MAX_KEPT_FAILURES), message: `machine ${m.id} failed runtime attestation earlier (${rt.reason ?? 'see admin show'}); it stays failed until \`bootkey admin clear ${m.id}\`` } };
  }
  record.state = 'attesting';
  return { record, verified, result: { t: 'runtime-result', state: 'attesting', count: record.count, unbound: binding.unbound, failures: [], message: `${verified} new entr${verified === 1 ? 'y' : 'ies'} verified, ${record.count} in this boot` } };
}

function failedVerdict(next: RuntimeRecord, reason: string, failures: string[], now: number, verified: number, unbound: number): RuntimeVerdict {
  const first = next.state !== 'failed';
  const kept = first ? failures.slice(0, MAX_KEPT_FAILURES) : [...next.failures, ...failures].slice(0, MAX_KEPT_FAILURES);
  const record: RuntimeRecord = { ...next, state: 'failed', reason: first ? reason : next.reason, failedAt: first ? now : next.failedAt, failures: kept };
  return {
    record, verified, newFailure: { reason, failures },
    result: { t: 'runtime-result', state: 'failed', count: record.count, unbound, failures: failures.slice(0, MAX_KEPT_FAILURES), message: reason.slice(0, 4000) },
  };
}

/** What admin list/show and the boot gate see: stale is derived from the last report and the limit. */
export type RuntimeView = 'off' | 'new' | 'attesting' | 'failed' | 'stale';

export function runtimeView(rt: RuntimeRecord | undefined, now: number): RuntimeView {
  if (!rt) return 'off';
  if (rt.state === 'failed') return 'failed';
  if (isStale(rt, now)) return 'stale';
  if (!rt.policyHash) return 'off';
  return rt.state;
}

export function isStale(rt: RuntimeRecord, now: number): boolean {
  return !!rt.staleLimit && rt.lastReport !== undefined && now - rt.lastReport > rt.staleLimit * 1000;
}

/** The runtime part of admin list/show (JSON). */
export function runtimeJson(rt: RuntimeRecord | undefined, now: number, full = false): Record<string, unknown> {
  const view = runtimeView(rt, now);
  const base: Record<string, unknown> = {
    state: view, entries: rt?.count ?? 0, lastReport: rt?.lastReport ?? null, staleLimit: rt?.staleLimit ?? null,
    reason: rt?.reason ?? (view === 'stale' ? `no verified runtime report for ${Math.round((now - rt!.lastReport!) / 1000)} s (limit ${rt!.staleLimit} s)` : view === 'off' ? 'runtime attestation is off for this machine: no runtime policy' : null),
  };
  if (full) {
    Object.assign(base, {
      policySha256: rt?.policyHash ?? null, failedAt: rt?.failedAt ?? null, failures: rt?.failures ?? [],
      approvedUntil: rt?.approvedUntil ?? null, boot: rt?.resetCount !== undefined ? { resetCount: rt.resetCount, restartCount: rt.restartCount, bootDigest: rt.bootDigest?.toString('hex') } : null,
      pcr10: rt ? (JSON.parse(rt.pcr10) as unknown) : {},
    });
  }
  return base;
}

/**
 * The boot-release gate (issue 12 §4): RUNTIME_FAILED until `admin clear`; RUNTIME_STALE unless
 * an unexpired `admin approve` (which the release then consumes: `useApproval`).
 */
export function bootGate(rt: RuntimeRecord | undefined, now: number): { code: string; message: string; failures?: string[] } | { useApproval: boolean } {
  if (!rt) return { useApproval: false };
  if (rt.state === 'failed') {
    return {
      code: 'RUNTIME_FAILED',
      message: `machine ${rt.machine} failed runtime attestation at ${new Date(rt.failedAt ?? rt.updated).toISOString()}: ${rt.reason ?? 'see admin show'}; no key until \`bootkey admin clear ${rt.machine}\``,
      failures: rt.failures.length ? rt.failures.slice(0, MAX_KEPT_FAILURES) : undefined,
    };
  }
  if (isStale(rt, now)) {
    if (rt.approvedUntil !== undefined && rt.approvedUntil > now) return { useApproval: true };
    return { code: 'RUNTIME_STALE', message: `machine ${rt.machine} is stale: no verified runtime report since ${new Date(rt.lastReport!).toISOString()} (limit ${rt.staleLimit} s); no key until \`bootkey admin approve ${rt.machine}\`` };
  }
  return { useApproval: false };
}

export { isBankName };
