/**
 * A simulated machine's runtime attestation (issue 12 §3, docs/PROTOCOL.md "runtime"): what
 * `bootkey agent` does every interval, for real over TLS, with a software quote:
 *
 *   runtime-begin → runtime-challenge{nonce, selection, from, resetCount, bootDigest}
 *   → [runtime-entries → runtime-more]* (chunks of ≤ 1 MiB at entry boundaries)
 *   → runtime-report{quote over nonce with PCR 10 = the list's running value} → runtime-result
 *
 * The list is sent from the server's `from` when the challenge names this boot (resetCount and
 * bootDigest = SHA-256 of the sha256 PCRs 0–9), else from entry 0.
 * @module
 */
import { createHash } from 'node:crypto';
import type { MessageOf, PcrSelection } from '../../src/protocol/messages.ts';
import { LIMITS } from '../../src/protocol/messages.ts';
import { marshalSignature } from '../../src/tpm/structures.ts';
import type { BankName, PcrValues } from '../../src/pcrs.ts';
import { request, type SimConfig, type SimMachine, type FlowStats } from './machine.ts';
import { softQuote } from './quote.ts';
import { SimImaList, bootAggregate, filePool } from './ima.ts';

/** SHA-256 over the sha256 values of PCRs 0–9 of the machine's boot (= its boot_aggregate). */
export function bootDigest(m: SimMachine): Buffer {
  const sel: PcrSelection[] = [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }];
  const v = m.image.pcrs(sel).get('sha256')!;
  return bootAggregate((p) => v.get(p)!);
}

/** A machine's list for its current boot: boot_aggregate, then `initial` pool entries. */
export function newList(m: SimMachine, pool: ReturnType<typeof filePool>, initial: number, start = 0): SimImaList {
  const l = new SimImaList(pool, bootDigest(m), start);
  l.grow(initial);
  return l;
}

export interface RuntimeOutcome {
  result: MessageOf<'runtime-result'>;
  server: number;
  /** Index of the first entry sent, entries sent, chunks (runtime-entries messages) used. */
  from: number;
  sent: number;
  chunks: number;
}

function quotePcrs(m: SimMachine, list: SimImaList, sel: PcrSelection[]): PcrValues {
  const boot = m.image.pcrs(sel.map((s) => ({ bank: s.bank, pcrs: s.pcrs.filter((p) => p !== 10) })));
  const out: PcrValues = new Map();
  for (const s of sel) {
    const b = s.bank as BankName;
    const v = new Map(boot.get(b) ?? []);
    if (s.pcrs.includes(10)) v.set(10, list.pcr(b));
    out.set(b, v);
  }
  return out;
}

/** One runtime report of `list` (its current end) on one connection, with the sim's failover. */
/**
 * `start`: the server index to try first (default the machine's own index); the bench passes
 * index + report number, so a machine's reports alternate between replicas and each continues
 * the chain another replica stored.
 */
export async function runtimeReport(m: SimMachine, list: SimImaList, cfg: SimConfig, stats?: FlowStats, chunkBytes: number = LIMITS.imaChunk, start?: number): Promise<RuntimeOutcome> {
  const timeout = cfg.timeoutMs ?? 30_000;
  const boot = bootDigest(m);
  return m.withServer(cfg, async (c, server) => {
    const ch = await request(c, { t: 'runtime-begin', machine: m.id, akName: m.akName }, ['runtime-challenge'], timeout);
    const sameBoot = ch.resetCount === m.resetCount && ch.bootDigest !== undefined && Buffer.compare(ch.bootDigest, boot) === 0;
    const from = sameBoot ? Math.min(ch.from, list.count) : 0;
    const to = list.count;
    let i = from;
    let chunks = 0;
    // chunks at entry boundaries, each ≤ chunkBytes; the last goes with the quote
    for (;;) {
      let j = i;
      let size = 0;
      while (j < to && size + list.entries[j].length <= chunkBytes) size += list.entries[j++].length;
      if (j >= to) break;
      if (j === i) throw new Error(`entry ${i} is larger than a chunk`);
      const more = await request(c, { t: 'runtime-entries', machine: m.id, nonce: ch.nonce, bank: 'sha1', from: i, entries: list.slice(i, j) }, ['runtime-more'], timeout);
      if (more.received !== j - from && more.received !== j) throw new Error(`runtime-more: received ${more.received}, sent up to ${j}`);
      chunks++;
      i = j;
    }
    const pcrs = quotePcrs(m, list, ch.pcrSelection);
    m.clock += 7n;
    const q = softQuote({ akPrivate: m.akKey.privateKey, akName: m.akName, nonce: ch.nonce, pcrs, selection: ch.pcrSelection, clock: m.clock, resetCount: m.resetCount, restartCount: m.restartCount });
    const result = await request(c, {
      t: 'runtime-report', machine: m.id, akName: m.akName, nonce: ch.nonce, quote: q.quote, signature: marshalSignature(q.signature), pcrs,
      bank: 'sha1', from: i, entries: list.slice(i, to),
    }, ['runtime-result'], timeout);
    return { result, server, from, sent: to - from, chunks };
  }, stats, start);
}

/** SHA-256 hex, for logs. */
export const short = (b: Buffer): string => createHash('sha256').update(b).digest('hex').slice(0, 12);
