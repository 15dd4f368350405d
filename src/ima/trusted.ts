/**
 * The trust boundary of the IMA room (issue 12): the ONE place where a measurement list becomes
 * something a runtime verdict may read. SKELETON written by the lead as the contract between
 * helpers; the implementation (wt-ima-list) fills `bindImaToQuote`.
 *
 *   parseImaList (untrusted) ──▶ bindImaToQuote (here) ──▶ TrustedImaEntries ──▶ checkRuntimePolicy
 *
 * Rules the implementation must keep:
 * - Replay starts at `start` (a state the verifier stored after an earlier verified report, or
 *   {count: 0, pcr10: zeros}); the entries given are those from index `start.count` on (an
 *   incremental report) or the whole list (entries below start.count are skipped, not re-read).
 * - The quote may be older than the list (the kernel appends after the quote): binding consumes
 *   entries until the running value of EVERY quoted bank equals the quoted PCR 10; entries after
 *   that point are not bound (they come in the next report). If no prefix matches: REPLAY error
 *   naming the first entry where the list's own bank could not match, when that can be told.
 * - For every quoted bank, the template hash is recomputed from the template data (the list's own
 *   bank included, except a violation, which extends 0xFF..FF and binds nothing of its fields;
 *   the `ima` template hashes digest || name padded to 256 bytes), so path/digest/sig/buf are bound.
 * @module
 */
import type { BankName } from '../pcrs.ts';
import { BootkeyError } from '../errors.ts';
import type { ImaEntry, ImaRunningState } from './types.ts';

/** A list that does not replay to the quoted PCR 10 (code REPLAY), or is otherwise unusable. */
export class ImaBindError extends BootkeyError {
  readonly layer = 'ima';
  constructor(code: 'REPLAY' | 'NO_BANK' | 'BAD_START', message: string) {
    super(code, message);
  }
}

const ctor = Symbol('TrustedImaEntries');

/** Entries whose fields are bound to a quoted PCR 10 (or, when !verified, an operator's file). */
export class TrustedImaEntries {
  readonly #brand = true;
  readonly verified: boolean;
  readonly entries: readonly ImaEntry[];
  constructor(key: typeof ctor, entries: readonly ImaEntry[], verified: boolean) {
    if (key !== ctor) throw new TypeError('TrustedImaEntries: use bindImaToQuote()');
    this.entries = entries;
    this.verified = verified;
  }
}

export interface ImaBinding {
  readonly trusted: TrustedImaEntries;
  /** The state after the last bound entry: what the verifier stores. */
  readonly state: ImaRunningState;
  /** Entries given but not bound (appended after the quote). */
  readonly unbound: number;
}

/** Bind entries to a quoted PCR 10 (per quoted bank). @throws ImaBindError */
export function bindImaToQuote(
  entries: readonly ImaEntry[],
  listBank: BankName,
  start: ImaRunningState,
  quotedPcr10: ReadonlyMap<BankName, Buffer>,
): ImaBinding {
  void entries; void listBank; void start; void quotedPcr10;
  throw new ImaBindError('REPLAY', 'bindImaToQuote: not implemented yet');
}

/** An operator's file with no quote: `ima check` without --pcrs; always marked unverified. */
export function unverifiedImaEntries(entries: readonly ImaEntry[]): TrustedImaEntries {
  return new TrustedImaEntries(ctor, entries, false);
}

/** @internal for the implementation in this module only. */
export const _ctor = ctor;
