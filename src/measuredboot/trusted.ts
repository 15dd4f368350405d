/**
 * The trust boundary of the measured-boot layer: the ONE place where an event log becomes
 * something a verdict may read.
 *
 *   parseEventLog (untrusted bytes → EventLog)  ──▶  bindLogToQuote (this file)  ──▶  TrustedLog
 *                                                                                     │
 *                         analyseBoot (bootstate.ts), checkPolicy (policy.ts) ◀───────┘
 *
 * The rule (go-attestation's docs/event-log-disclosure.md, and the TCG's answer to it): of an
 * event log, only the DIGESTS of events in QUOTED PCRs are trustworthy, once the log's replay
 * equals the quoted values. Everything else is text the machine's owner chose: event types,
 * event data not covered by the digest, events in PCRs the quote does not cover, digests of
 * banks the quote does not cover, EV_NO_ACTION events, and the order of events ACROSS PCRs
 * (replay binds each PCR's own sequence, never how sequences interleave).
 *
 * So a TrustedLog holds, per quoted PCR, the sequence of that PCR's events in order, each with
 * - `digests`: only the quoted banks' digests (bound);
 * - `data` + `dataBound`: the data, and whether it hashes to the digest in EVERY quoted bank
 *   (then the data is bound too, whatever the type label says; otherwise the data is display
 *   text and must never decide anything);
 * - `type`: the label, kept for display and for rules where a wrong label can only cause a
 *   refusal (an unexpected type in a PCR a policy depends on is a refusal).
 * There is no accessor for the log's global order and no event of an unquoted PCR.
 *
 * TrustedLog is a class with a private constructor field: only this module makes one, through
 * bindLogToQuote (after replay matched) or unverifiedLog (no quote: everything marked
 * unverified, for `policy generate` on an operator-supplied known-good log and offline checks
 * without --pcrs, which say so).
 * Pure.
 * @module
 */
import { BANK_SIZE, type BankName, type PcrValues } from '../pcrs.ts';
import { replay } from './replay.ts';
import { hashesTo, shimAuthorityPrefixes } from './digest.ts';
import { EV_NO_ACTION, EV_EFI_VARIABLE_AUTHORITY } from './eventtypes.ts';
import type { DecodedEvent, EventLog, TcgEvent } from './types.ts';
import { BootkeyError } from '../errors.ts';

/** A log that does not replay to the quoted values (code REPLAY), or lacks a quoted bank. */
export class BindError extends BootkeyError {
  readonly layer = 'eventlog';
  constructor(message: string) {
    super('REPLAY', message);
  }
}

/** One event of a quoted PCR, after replay matched. */
export interface TrustedEvent {
  /** Position in the log: for messages only (the order across PCRs is not bound). */
  readonly index: number;
  readonly offset: number;
  readonly pcr: number;
  /** Position in its PCR's own sequence (bound by replay). */
  readonly seq: number;
  /** The type label: NOT bound. */
  readonly type: number;
  readonly typeName: string;
  /** Digests of the quoted banks only (bound). */
  readonly digests: ReadonlyMap<BankName, Buffer>;
  /** The event data: bound only when `dataBound`. */
  readonly data: Buffer;
  /** The parser's reading of the data under its (unbound) type label: display only unless dataBound. */
  readonly decoded: DecodedEvent;
  /** The data (or, for shim's oversized authority events, its UEFI_VARIABLE_DATA prefix) hashes to the digest in every quoted bank. */
  readonly dataBound: boolean;
}

const ctor = Symbol('TrustedLog');

/** PCR initial value (PC Client PFP §3.3.3): all ones for 17–22, zeros otherwise. */
export function initialPcrValue(bank: BankName, pcr: number): Buffer {
  return Buffer.alloc(BANK_SIZE[bank], pcr >= 17 && pcr <= 22 ? 0xff : 0);
}

export class TrustedLog {
  /** Nominal typing: a structurally equal object is not a TrustedLog. */
  readonly #brand = true;
  /** Banks the quote covered (each with the PCRs it covered). */
  readonly banks: readonly BankName[];
  /** True when bound to a quote; false for unverifiedLog (an operator's claim, not a proof). */
  readonly verified: boolean;
  /** Banks of the log's Spec ID event (for messages). */
  readonly logBanks: readonly BankName[];
  readonly #values: PcrValues;
  readonly #events: ReadonlyMap<number, readonly TrustedEvent[]>;

  constructor(key: typeof ctor, values: PcrValues, events: Map<number, TrustedEvent[]>, verified: boolean, logBanks: BankName[]) {
    if (key !== ctor) throw new TypeError('TrustedLog: use bindLogToQuote()');
    this.#values = values;
    this.#events = events;
    this.verified = verified;
    this.banks = [...values.keys()];
    this.logBanks = logBanks;
  }

  /** Whether PCR `pcr` of `bank` is covered (by the quote; for an unverified log: by the log). */
  covers(pcr: number, bank: BankName): boolean {
    return this.#values.get(bank)?.has(pcr) ?? false;
  }

  /** The PCRs covered in `bank`, ascending. */
  pcrs(bank: BankName): number[] {
    return [...(this.#values.get(bank)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** The quoted value of a PCR (undefined when not covered). */
  value(bank: BankName, pcr: number): Buffer | undefined {
    return this.#values.get(bank)?.get(pcr);
  }

  /** The events of one covered PCR, in that PCR's order; [] for a PCR not covered or not extended. */
  events(pcr: number): readonly TrustedEvent[] {
    return this.#events.get(pcr) ?? [];
  }

  /** Every covered PCR that has events, ascending. */
  extendedPcrs(): number[] {
    return [...this.#events.keys()].sort((a, b) => a - b);
  }
}

export function isTrustedLog(x: unknown): x is TrustedLog {
  return x instanceof TrustedLog;
}

function isDataBound(ev: TcgEvent, digests: ReadonlyMap<BankName, Buffer>): boolean {
  if (hashesTo(digests, ev.data)) return true;
  // The stray bytes of shim's authority events are beyond the structure; the type label does
  // not matter: what is bound is that these bytes, read as UEFI_VARIABLE_DATA, are measured.
  if (ev.type === EV_EFI_VARIABLE_AUTHORITY) return shimAuthorityPrefixes(ev.data).some((p) => hashesTo(digests, p));
  return false;
}

function collect(log: EventLog, covered: (pcr: number) => BankName[]): Map<number, TrustedEvent[]> {
  const out = new Map<number, TrustedEvent[]>();
  for (const ev of log.events) {
    if (ev.type === EV_NO_ACTION || ev.pcr > 23 || ev.decoded.kind === 'spec-id') continue;
    const banks = covered(ev.pcr);
    if (!banks.length) continue;
    const digests = new Map<BankName, Buffer>();
    for (const b of banks) {
      const d = ev.digests.get(b);
      if (d) digests.set(b, d);
    }
    if (!digests.size) continue;
    let list = out.get(ev.pcr);
    if (!list) out.set(ev.pcr, (list = []));
    list.push(Object.freeze({
      index: ev.index, offset: ev.offset, pcr: ev.pcr, seq: list.length, type: ev.type, typeName: ev.typeName,
      digests, data: ev.data, decoded: ev.decoded, dataBound: isDataBound(ev, digests),
    }));
  }
  return out;
}

/**
 * Binds a parsed log to the PCR values a verified quote covered: for every quoted PCR of every
 * quoted bank (but `skipPcr`, the released PCR), the log's replay must equal the quoted value
 * (a PCR the log does not extend must hold its initial value). Returns only what that binds.
 * @throws BindError (code REPLAY) naming the first PCR that differs.
 */
export function bindLogToQuote(log: EventLog, quoted: PcrValues, opts: { skipPcr?: number } = {}): TrustedLog {
  // only the quoted banks and PCRs: nothing else is compared (a bank the log lacks stays absent)
  const replayed = replay(log, quoted);
  const values: PcrValues = new Map();
  for (const [bank, pcrs] of quoted) {
    const r = replayed.get(bank);
    if (!r) throw new BindError(`the event log has no ${bank} bank (it has ${log.banks.join(', ') || 'none'}), the quote covers ${bank}`);
    const v = new Map<number, Buffer>();
    for (const idx of [...pcrs.keys()].sort((a, b) => a - b)) {
      const want = pcrs.get(idx)!;
      if (idx === opts.skipPcr) { v.set(idx, want); continue; }
      const got = r.get(idx);
      if (!got) {
        if (!want.equals(initialPcrValue(bank, idx))) throw new BindError(`PCR ${bank}:${idx}: the log does not extend it, but the quoted value ${want.toString('hex')} is not its initial value`);
      } else if (!got.equals(want)) {
        throw new BindError(`PCR ${bank}:${idx}: the log replays to ${got.toString('hex')}, the quote says ${want.toString('hex')}`);
      }
      v.set(idx, want);
    }
    values.set(bank, v);
  }
  const covered = (pcr: number) => pcr === opts.skipPcr ? [] : [...values].filter(([, m]) => m.has(pcr)).map(([b]) => b);
  return new TrustedLog(ctor, values, collect(log, covered), true, log.banks);
}

/**
 * A log taken on the operator's word, with no quote: every PCR it extends counts as covered,
 * in every bank, at its replayed value. `verified` is false, and every consumer says so.
 * For `policy generate` / `add-boot` from a file and `policy check` without --pcrs.
 */
export function unverifiedLog(log: EventLog): TrustedLog {
  const values = replay(log);
  for (const [bank, m] of values) for (let p = 0; p <= 23; p++) if (!m.has(p)) m.set(p, initialPcrValue(bank, p));
  const covered = (pcr: number) => [...values].filter(([, m]) => m.has(pcr)).map(([b]) => b);
  return new TrustedLog(ctor, values, collect(log, covered), false, log.banks);
}
