/**
 * PCR replay: recompute the PCR values a log claims — TCG PC Client Platform Firmware
 * Profile (PFP) 1.05 §3.3.3 (PCR initial values) and §10.4.5.3 (StartupLocality).
 *
 * - EV_NO_ACTION events never extend (§10.4.1).
 * - A StartupLocality EV_NO_ACTION event sets PCR0's initial value to its locality (last byte).
 * - If the first PCR0 event is EV_EFI_HCRTM_EVENT, PCR0 starts at locality 4 (H-CRTM, §3.3.3.3).
 * - PCRs 17-22 start all-ones (dynamic-launch PCRs before a launch), all others zero.
 * - Events with PCR index 0xFFFFFFFF (or any index above 23) extend nothing.
 * - Every bank in the log; events missing a bank's digest leave that bank's PCR alone.
 *
 * The result is only what the log claims: compare it with quoted PCRs before trusting it.
 * Pure.
 * @module
 */
import { hash } from 'node:crypto';
import { BANK_HASH, BANK_SIZE, type BankName, type PcrValues } from '../pcrs.ts';
import { EV_EFI_HCRTM_EVENT, EV_NO_ACTION } from './eventtypes.ts';
import type { EventLog } from './types.ts';

function initial(bank: BankName, pcr: number, locality: number | undefined): Buffer {
  const v = Buffer.alloc(BANK_SIZE[bank], pcr >= 17 && pcr <= 22 ? 0xff : 0);
  if (pcr === 0 && locality !== undefined) v[v.length - 1] = locality;
  return v;
}

/** The PCR0 starting locality the log implies, if not 0. */
export function startupLocality(log: EventLog): number | undefined {
  for (const ev of log.events) {
    if (ev.decoded.kind === 'startup-locality') return ev.decoded.locality;
    if (ev.pcr === 0 && ev.type !== EV_NO_ACTION) return ev.type === EV_EFI_HCRTM_EVENT ? 4 : undefined;
  }
  return undefined;
}

/**
 * Replays every bank of the log; returns every PCR the log extends or initialises. `only`
 * restricts the work to some banks and PCRs (the quoted ones: bindLogToQuote compares nothing
 * else); the others are then absent from the result.
 */
export function replay(log: EventLog, only?: ReadonlyMap<BankName, ReadonlyMap<number, unknown>>): PcrValues {
  const locality = startupLocality(log);
  const out: PcrValues = new Map();
  for (const bank of log.banks) {
    const want = only?.get(bank);
    if (only && !want) continue;
    const pcrs = new Map<number, Buffer>();
    if (locality !== undefined && (!want || want.has(0))) pcrs.set(0, initial(bank, 0, locality));
    const alg = BANK_HASH[bank];
    for (const ev of log.events) {
      if (ev.type === EV_NO_ACTION || ev.pcr > 23) continue;
      if (want && !want.has(ev.pcr)) continue;
      const d = ev.digests.get(bank);
      if (!d) continue;
      const cur = pcrs.get(ev.pcr) ?? initial(bank, ev.pcr, undefined);
      pcrs.set(ev.pcr, hash(alg, Buffer.concat([cur, d]), 'buffer')); // one-shot: no Hash object per extend
    }
    out.set(bank, pcrs);
  }
  return out;
}
