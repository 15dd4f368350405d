/**
 * Replay of an IMA measurement list into PCR 10, in every bank, and the boot_aggregate check.
 *
 * - The template hash of an entry in bank B is H_B(template data) (kernels >= 5.8 compute one
 *   digest per TPM bank over the same data); the `ima` template hashes digest || name zero-padded
 *   to 256 bytes (ima_calc_field_array_hash_tfm). The list carries only its own bank's hashes.
 * - A violation (all-zero recorded hash) extends all 0xFF in every bank.
 * - boot_aggregate (entry 0) = H_B(PCR0 || ... || PCR7 [|| PCR8 || PCR9]) over bank B, the
 *   algorithm its digest field names; PCRs 8-9 are included unless B is sha1 (ima_crypto.c,
 *   ima_calc_boot_aggregate_tfm, kernels >= 5.8; older kernels only made sha1 aggregates).
 *
 * Pure functions, no I/O. Replaying says what a list CLAIMS; trusted.ts binds it to a quote.
 * @module
 */
import { createHash } from 'node:crypto';
import { BootkeyError } from '../errors.ts';
import { BANK_HASH, BANK_SIZE, type BankName, type PcrValues } from '../pcrs.ts';
import type { ImaEntry, ImaRunningState } from './types.ts';

/** The PCR IMA extends by default (CONFIG_IMA_MEASURE_PCR_IDX). */
export const IMA_PCR = 10;
/** IMA_EVENT_NAME_LEN_MAX + 1: the `ima` template's padded name. */
const IMA_NAME_PADDED = 256;

/** A list that cannot be replayed in a bank (code NO_DATA), or a bad starting state (BAD_START). */
export class ImaReplayError extends BootkeyError {
  readonly layer = 'ima';
  constructor(code: 'NO_DATA' | 'BAD_START', message: string) {
    super(code, message);
  }
}

/**
 * H_bank over the entry's template data as the kernel hashes it, or undefined for an ASCII line
 * of an unknown template (its data cannot be rebuilt).
 */
export function templateHashOf(e: ImaEntry, bank: BankName): Buffer | undefined {
  if (e.opaque) return undefined;
  const h = createHash(BANK_HASH[bank]);
  if (e.templateName === 'ima') {
    // templateData is the binary list's layout: digest(20) | u32 length | name.
    const padded = Buffer.alloc(IMA_NAME_PADDED);
    e.templateData.copy(padded, 0, 24);
    h.update(e.templateData.subarray(0, 20));
    h.update(padded);
  } else {
    h.update(e.templateData);
  }
  return h.digest();
}

export type TemplateHashCheck = 'ok' | 'mismatch' | 'violation' | 'opaque';

/** Does the recorded hash (list's bank) equal the hash of the template data? */
export function checkTemplateHash(e: ImaEntry, listBank: BankName): TemplateHashCheck {
  if (e.violation) return 'violation';
  const h = templateHashOf(e, listBank);
  if (!h) return 'opaque';
  return h.equals(e.templateHash) ? 'ok' : 'mismatch';
}

/** What an entry extends into `bank`: the recorded hash for the list's own bank, else recomputed. */
export function extendValue(e: ImaEntry, bank: BankName, listBank: BankName): Buffer {
  if (e.violation) return Buffer.alloc(BANK_SIZE[bank], 0xff);
  if (bank === listBank) return e.templateHash;
  const h = templateHashOf(e, bank);
  if (!h) throw new ImaReplayError('NO_DATA', `entry ${e.index} (template ${e.templateName}, line ${e.offset}): an ASCII line of an unknown template cannot be replayed in ${bank} (only its ${listBank} hash is recorded)`);
  return h;
}

export function extend(bank: BankName, pcr: Buffer, value: Buffer): Buffer {
  return createHash(BANK_HASH[bank]).update(pcr).update(value).digest();
}

/** The running value `start` gives a bank: its stored value, or zeros at entry 0. */
export function startValue(start: ImaRunningState, bank: BankName): Buffer {
  const hex = start.pcr10[bank];
  if (hex === undefined) {
    if (start.count === 0) return Buffer.alloc(BANK_SIZE[bank]);
    throw new ImaReplayError('BAD_START', `the starting state (entry ${start.count}) has no ${bank} PCR 10 value`);
  }
  if (!new RegExp(`^[0-9a-fA-F]{${BANK_SIZE[bank] * 2}}$`).test(hex)) throw new ImaReplayError('BAD_START', `the starting state's ${bank} PCR 10 is not ${BANK_SIZE[bank]} bytes of hex`);
  return Buffer.from(hex, 'hex');
}

export interface ImaReplay {
  /** Entries replayed (all PCRs). */
  readonly entries: number;
  /** PCR 10 per bank after the last entry. */
  readonly pcr10: Map<BankName, Buffer>;
  /** Banks that could not be replayed (ASCII lines of unknown templates), with the reason. */
  readonly skipped: Map<BankName, string>;
}

/**
 * Replays the entries (from `start`, default entry 0 and zeros) into PCR 10 of each bank: the
 * recorded hashes for the list's bank, hashes recomputed from the template data for the others.
 * Entries for another PCR (a `pcr=` policy rule) do not extend PCR 10.
 */
export function replayIma(entries: readonly ImaEntry[], listBank: BankName, banks: readonly BankName[], start: ImaRunningState = { count: 0, pcr10: {} }): ImaReplay {
  const pcr10 = new Map<BankName, Buffer>();
  const skipped = new Map<BankName, string>();
  for (const bank of banks) {
    let v = startValue(start, bank);
    try {
      for (const e of entries) if (e.pcr === IMA_PCR && e.index >= start.count) v = extend(bank, v, extendValue(e, bank, listBank));
      pcr10.set(bank, v);
    } catch (err) {
      if (!(err instanceof ImaReplayError)) throw err;
      skipped.set(bank, err.message);
    }
  }
  return { entries: entries.filter((e) => e.index >= start.count).length, pcr10, skipped };
}

// ---------------------------------------------------------------------------------------------
// boot_aggregate

/** d-ng algorithm names → TPM bank. */
export function algoToBank(algo: string): BankName | undefined {
  return ({ sha1: 'sha1', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512', sm3: 'sm3_256', 'sm3-256': 'sm3_256' } as Record<string, BankName>)[algo];
}

export interface BootAggregateCheck {
  readonly ok: boolean;
  /** The bank the aggregate is computed over (from the entry's digest algorithm). */
  readonly bank?: BankName;
  /** The PCRs it covers: 0-7, plus 8-9 for banks other than sha1. */
  readonly pcrs: readonly number[];
  readonly recorded?: string;
  readonly expected?: string;
  readonly reason: string;
}

/** Checks the list's first entry (boot_aggregate) against the boot's PCR values. */
export function checkBootAggregate(entry: ImaEntry | undefined, pcrs: PcrValues): BootAggregateCheck {
  if (!entry || entry.index !== 0 || entry.path !== 'boot_aggregate') {
    return { ok: false, pcrs: [], reason: entry ? `entry ${entry.index} is ${JSON.stringify(entry.path ?? entry.templateName)}, not boot_aggregate (the list does not start at entry 0?)` : 'the list has no entry' };
  }
  const algo = entry.digestAlgo ?? 'sha1';
  const bank = algoToBank(algo);
  const recorded = entry.digest?.toString('hex');
  if (!bank || !entry.digest) return { ok: false, pcrs: [], recorded, reason: `boot_aggregate digest algorithm ${algo} is not a TPM bank` };
  const list = bank === 'sha1' ? [0, 1, 2, 3, 4, 5, 6, 7] : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  if (entry.digest.every((b) => b === 0)) return { ok: false, bank, pcrs: list, recorded, reason: 'boot_aggregate is all zeros: the kernel found no TPM (TPM bypass)' };
  const values = pcrs.get(bank);
  const missing = list.filter((i) => !values?.has(i));
  if (missing.length) return { ok: false, bank, pcrs: list, recorded, reason: `the PCR values lack ${bank} PCR ${missing.join(', ')} (boot_aggregate is ${bank} over PCRs ${list[0]}-${list[list.length - 1]})` };
  const h = createHash(BANK_HASH[bank]);
  for (const i of list) h.update(values!.get(i)!);
  const expected = h.digest().toString('hex');
  const ok = expected === recorded;
  return { ok, bank, pcrs: list, recorded, expected, reason: ok ? `boot_aggregate matches ${bank} PCRs 0-${list[list.length - 1]}` : `boot_aggregate ${algo}:${recorded} is not ${bank} PCRs 0-${list[list.length - 1]} of this boot (${expected})` };
}
