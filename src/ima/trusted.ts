/**
 * The trust boundary of the IMA room (issue 12): the ONE place where a measurement list becomes
 * something a runtime verdict may read. Its shapes and rules were written first, as the contract
 * between helpers; wt-ima-list implemented `bindImaToQuote`.
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
import { BANK_SIZE, type BankName } from '../pcrs.ts';
import { BootkeyError } from '../errors.ts';
import { extend, IMA_PCR, ImaReplayError, startValue, templateHashOf } from './replay.ts';
import type { ImaEntry, ImaRunningState } from './types.ts';

/** A list that does not replay to the quoted PCR 10 (code REPLAY), or is otherwise unusable. */
export class ImaBindError extends BootkeyError {
  readonly layer = 'ima';
  /** The entry at fault, when one can be named (an altered entry). */
  readonly entryIndex?: number;
  constructor(code: 'REPLAY' | 'NO_BANK' | 'BAD_START', message: string, entryIndex?: number) {
    super(code, message);
    if (entryIndex !== undefined) this.entryIndex = entryIndex;
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
  /** Workarounds the binding needed (empty when the strict replay matched). */
  readonly quirks: readonly string[];
}

/** Quirks tried, in order, only after the strict replay failed (reported in ImaBinding.quirks). */
type Quirk = 'strict' | 'pre-5.8-padded-sha1';

/**
 * Bind entries to a quoted PCR 10 (per quoted bank). @throws ImaBindError
 *
 * Checklist: (1) the start state has a value for every quoted bank (zeros at entry 0); (2) the
 * entries continue it (first index = start.count, contiguous); (3) every entry's template hash is
 * recomputed from its template data in every quoted bank, and in the list's own bank it must equal
 * the recorded hash (else REPLAY names that entry: its fields were altered); (4) the first prefix
 * at which EVERY quoted bank equals the quote is bound, the rest is not. Entries for other PCRs
 * (a `pcr=` rule) extend nothing here and are not bound. Kernels before 5.8 extended the SHA-1
 * template hash zero-padded into the other banks: tried only after the strict replay failed, for
 * SHA-1 lists (the fields stay bound: the SHA-1 hash is recomputed from them).
 */
export function bindImaToQuote(
  entries: readonly ImaEntry[],
  listBank: BankName,
  start: ImaRunningState,
  quotedPcr10: ReadonlyMap<BankName, Buffer>,
): ImaBinding {
  const banks = [...quotedPcr10.keys()];
  if (!banks.length) throw new ImaBindError('NO_BANK', 'no quoted PCR 10 value: nothing to bind the IMA list to');
  for (const b of banks) {
    if (quotedPcr10.get(b)!.length !== BANK_SIZE[b]) throw new ImaBindError('NO_BANK', `the quoted ${b} PCR 10 has ${quotedPcr10.get(b)!.length} bytes, expected ${BANK_SIZE[b]}`);
  }
  if (!Number.isSafeInteger(start.count) || start.count < 0) throw new ImaBindError('BAD_START', `starting entry count ${start.count} is not a count`);
  const startValues = new Map<BankName, Buffer>();
  for (const b of banks) {
    try {
      startValues.set(b, startValue(start, b));
    } catch (e) {
      if (e instanceof ImaReplayError) throw new ImaBindError('BAD_START', e.message);
      throw e;
    }
  }
  const list = entries.filter((e) => e.index >= start.count);
  if (list.length && list[0].index !== start.count) {
    throw new ImaBindError('BAD_START', `the entries given start at index ${list[0].index}, but the verified state ends before entry ${start.count}: entries ${start.count}-${list[0].index - 1} are missing`);
  }
  for (let k = 1; k < list.length; k++) {
    if (list[k].index !== list[k - 1].index + 1) throw new ImaBindError('REPLAY', `entry indices jump from ${list[k - 1].index} to ${list[k].index}`);
  }
  // (3) The list's own bank: recorded hash = H(template data), checked once per entry.
  let altered: ImaEntry | undefined;
  const own = new Map<ImaEntry, Buffer>(); // H_listBank(template data), reused by the replay
  for (const e of list) {
    if (e.violation) continue;
    const h = templateHashOf(e, listBank);
    if (!h) continue; // opaque: nothing to compare
    if (!h.equals(e.templateHash)) { altered = e; break; }
    own.set(e, h);
  }
  const quirks: Quirk[] = ['strict'];
  if (listBank === 'sha1' && banks.some((b) => b !== 'sha1')) quirks.push('pre-5.8-padded-sha1');
  let last: { bank: BankName; value: Buffer; at: number } | undefined;
  let noBank: ImaBindError | undefined;
  for (const quirk of quirks) {
    const running = new Map(startValues);
    const matches = () => banks.every((b) => running.get(b)!.equals(quotedPcr10.get(b)!));
    if (matches()) return bound(list, 0, running, start, quirk);
    try {
      for (let k = 0; k < list.length; k++) {
        const e = list[k];
        if (e.pcr !== IMA_PCR) continue;
        if (altered && e.index >= altered.index) break; // an altered entry and what follows bind nothing
        for (const b of banks) running.set(b, extend(b, running.get(b)!, (b === listBank && !e.violation && own.get(e)) || bindValue(e, b, listBank, quirk)));
        if (matches()) return bound(list, k + 1, running, start, quirk);
      }
    } catch (err) {
      if (!(err instanceof ImaBindError)) throw err;
      noBank ??= err; // a bank this pass cannot replay: the next pass may
      continue;
    }
    if (quirk === 'strict') last = { bank: banks[0], value: running.get(banks[0])!, at: list.length ? list[list.length - 1].index : start.count - 1 };
  }
  if (noBank && !altered) throw noBank;
  if (altered) {
    const h = templateHashOf(altered, listBank)!;
    throw new ImaBindError('REPLAY', `entry ${altered.index} ${JSON.stringify(altered.path ?? altered.templateName)} (${where(altered)}): its recorded ${listBank} template hash ${altered.templateHash.toString('hex')} is not the hash of its template data (${h.toString('hex')}): the entry was altered, it and the entries after it are not bound to PCR 10`, altered.index);
  }
  throw new ImaBindError('REPLAY', `the ${list.length} entries from index ${start.count} do not replay to the quoted PCR 10 at any point (${last!.bank}: ${last!.value.toString('hex')} after entry ${last!.at}, quoted ${quotedPcr10.get(last!.bank)!.toString('hex')}); the list is not this machine's, or its starting state is wrong`);
}

/** "byte N" or "line N", for messages. */
export function where(e: ImaEntry): string {
  return `${e.format === 'ascii' ? 'line' : 'byte'} ${e.offset}`;
}

function bindValue(e: ImaEntry, bank: BankName, listBank: BankName, quirk: Quirk): Buffer {
  if (e.violation) return Buffer.alloc(BANK_SIZE[bank], 0xff);
  if (quirk === 'pre-5.8-padded-sha1' && bank !== 'sha1') {
    const v = Buffer.alloc(BANK_SIZE[bank]);
    (templateHashOf(e, 'sha1') ?? e.templateHash).copy(v); // (an opaque entry: its recorded sha1)
    return v;
  }
  const h = templateHashOf(e, bank);
  if (h) return h;
  // An ASCII line of an unknown template: its own bank's recorded hash is all there is; its
  // fields are not decoded, so nothing of it is trusted beyond its place in the chain.
  if (bank === listBank) return e.templateHash;
  throw new ImaBindError('NO_BANK', `entry ${e.index} (template ${e.templateName}, line ${e.offset}): an ASCII line of an unknown template cannot be replayed in ${bank}; send the binary list`);
}

function bound(list: readonly ImaEntry[], n: number, running: Map<BankName, Buffer>, start: ImaRunningState, quirk: Quirk): ImaBinding {
  const taken = list.slice(0, n);
  const pcr10: Partial<Record<BankName, string>> = {};
  for (const [b, v] of running) pcr10[b] = v.toString('hex');
  return {
    trusted: new TrustedImaEntries(ctor, taken.filter((e) => e.pcr === IMA_PCR), true),
    state: { count: n ? taken[n - 1].index + 1 : start.count, pcr10 },
    unbound: list.length - n,
    quirks: quirk === 'strict' ? [] : [quirk],
  };
}

/** An operator's file with no quote: `ima check` without --pcrs; always marked unverified. */
export function unverifiedImaEntries(entries: readonly ImaEntry[]): TrustedImaEntries {
  return new TrustedImaEntries(ctor, entries, false);
}

