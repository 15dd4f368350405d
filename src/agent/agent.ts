/**
 * `bootkey agent`, the runtime attestation agent on the booted system (issue 12 §3; protocol:
 * docs/PROTOCOL.md). Push model: it connects to the servers of the machine's LUKS2 token (TLS
 * 1.3, the token's CA pinned; src/client/connect.ts) and opens no port. One report:
 *
 *  1. runtime-begin{machine, AK name} → runtime-challenge{nonce, PCR selection, from, boot}.
 *     The AK is the enrolled one: the primary from the token's AK template (as the initrd's unlock).
 *  2. Quote the selection (sha256 PCRs 0–10) over the nonce. Its clock info and boot PCRs say
 *     which boot this is: the server's `from` counts only in the boot it names, else entry 0.
 *  3. Read the measurement list AFTER the quote (the kernel appends an entry before it extends
 *     PCR 10, so the list holds at least every quoted entry; later ones go unbound, next time).
 *  4. Send the entries from `from` on, split at entry boundaries into chunks of at most 1 MiB
 *     (runtime-entries …, then runtime-report with the quote and the last chunk).
 *  5. runtime-result: attesting / failed (the server names the entries) / restart (the chain did
 *     not continue: once more from entry 0).
 *
 * Nothing secret is read, sent or logged (the list and the quote are public); the log lines are
 * one line each, fit for journald.
 * @module
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Tpm } from '../tpm/tpm.ts';
import { createAK, flushKey, type KeyHandle } from '../tpm/keys.ts';
import { quotePCRs } from '../tpm/commands/attest.ts';
import { marshalSignature } from '../tpm/structures.ts';
import type { BankName, PcrValues } from '../pcrs.ts';
import { LIMITS, type MessageOf } from '../protocol/index.ts';
import { parseImaList, bankFromFileName } from '../ima/list.ts';
import { BootkeyError } from '../errors.ts';
import { withServer, type ClientOptions, type ServerSession } from '../client/connect.ts';
import { tokenAKTemplate, type BootkeyToken } from '../client/token.ts';
import { toTpmSelection } from '../client/selection.ts';

export const IMA_DIR = '/sys/kernel/security/ima';
export const DEFAULT_INTERVAL_S = 60;
/** Chunk size: the message limit less room for the other fields. */
export const CHUNK_BYTES = LIMITS.imaChunk;

export class AgentError extends BootkeyError {
  readonly layer = 'agent';
}

export type RuntimeReport = MessageOf<'runtime-report'>;
export type RuntimeResult = MessageOf<'runtime-result'>;

/** The bank of a binary list file from its name: `..._sha256` → sha256, else sha1 (the classic file). */
export function bankOfListFile(path: string): BankName {
  return bankFromFileName(path) ?? 'sha1';
}

/** The kernel's list to read: the sha256 per-bank file when the kernel has one, else the classic sha1 file. */
export function defaultImaList(dir = IMA_DIR): { path: string; bank: BankName } {
  const s256 = `${dir}/binary_runtime_measurements_sha256`;
  if (existsSync(s256)) return { path: s256, bank: 'sha256' };
  return { path: `${dir}/binary_runtime_measurements`, bank: 'sha1' };
}

/** SHA-256 over the sha256 values of PCRs 0–9 in order (as the server computes it: runtime.ts). */
export function bootDigest(pcrs: PcrValues): Buffer | undefined {
  const b = pcrs.get('sha256');
  const h = createHash('sha256');
  for (let i = 0; i <= 9; i++) {
    const v = b?.get(i);
    if (!v) return undefined;
    h.update(v);
  }
  return h.digest();
}

/**
 * The raw bytes of the entries from index `from` on, split at entry boundaries into chunks of at
 * most `max` bytes (one entry larger than `max` is an error). @throws AgentError IMA_LIST
 */
export function chunkEntries(list: Buffer, bank: BankName, from: number, max = CHUNK_BYTES): { chunks: { from: number; bytes: Buffer }[]; total: number } {
  let parsed;
  try {
    parsed = parseImaList(list, { bank });
  } catch (e) {
    throw new AgentError('IMA_LIST', `the IMA measurement list does not parse: ${(e as Error).message}`);
  }
  if (parsed.format !== 'binary') throw new AgentError('IMA_LIST', 'the IMA measurement list is not the binary list');
  const es = parsed.entries;
  const total = es.length;
  const chunks: { from: number; bytes: Buffer }[] = [];
  let i = Math.min(from, total);
  while (i < total) {
    const start = es[i].offset;
    let j = i;
    while (j < total && (j + 1 < total ? es[j + 1].offset : list.length) - start <= max) j++;
    if (j === i) throw new AgentError('IMA_LIST', `IMA entry ${i} is larger than ${max} bytes`);
    chunks.push({ from: i, bytes: list.subarray(start, j < total ? es[j].offset : list.length) });
    i = j;
  }
  return { chunks, total };
}

export interface AgentOptions {
  tpm: Tpm;
  token: BootkeyToken;
  /** The binary measurement list and its bank (default: defaultImaList()). */
  imaList?: { path: string; bank: BankName };
  /** Test hook: the list's bytes (read after the quote, as the file would be). */
  readList?: () => Buffer;
  deadlineMs?: number;
  client?: Partial<ClientOptions>;
  log?: (line: string) => void;
  /** Tests: rewrite the report before it is sent. */
  tamper?: (m: RuntimeReport) => RuntimeReport | Promise<RuntimeReport>;
  chunkBytes?: number;
}

export interface AgentOutcome {
  server: string;
  result: RuntimeResult;
  /** Where this report started and how many entries it sent. */
  from: number;
  sent: number;
  /** Entries in the list read. */
  listEntries: number;
  ms: number;
}

async function reportOnce(s: ServerSession, o: AgentOptions, ak: KeyHandle, list: { path: string; bank: BankName }): Promise<Omit<AgentOutcome, 'server' | 'ms'>> {
  const machine = o.token.machine;
  const ch = await s.request({ t: 'runtime-begin', machine, akName: ak.name }, ['runtime-challenge']);
  const q = await quotePCRs(o.tpm, ak, { selection: toTpmSelection(ch.pcrSelection), nonce: ch.nonce });
  const mine = bootDigest(q.pcrs);
  const sameBoot = ch.resetCount !== undefined && ch.bootDigest !== undefined && mine !== undefined
    && ch.resetCount === q.attest.clockInfo.resetCount && mine.equals(ch.bootDigest);
  const from = sameBoot ? ch.from : 0;
  let bytes: Buffer;
  try {
    bytes = o.readList ? o.readList() : readFileSync(list.path);
  } catch (e) {
    throw new AgentError('IMA_LIST', `cannot read the IMA measurement list ${list.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (is IMA enabled? securityfs mounted? run as root)`);
  }
  const { chunks, total } = chunkEntries(bytes, list.bank, from, o.chunkBytes);
  const last = chunks.pop() ?? { from: Math.min(from, total), bytes: Buffer.alloc(0) };
  for (const c of chunks) await s.request({ t: 'runtime-entries', machine, nonce: ch.nonce, bank: list.bank, from: c.from, entries: c.bytes }, ['runtime-more']);
  let report: RuntimeReport = {
    t: 'runtime-report', machine, akName: ak.name, nonce: ch.nonce, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs,
    bank: list.bank, from: last.from, entries: last.bytes,
  };
  if (o.tamper) report = await o.tamper(report);
  const result = await s.request(report, ['runtime-result']);
  return { result, from, sent: Math.max(0, total - from), listEntries: total };
}

/**
 * One runtime report (and, when the server answers `restart`, one more from entry 0).
 * @throws ClientError (REFUSED with the server's code: RUNTIME_OFF, NONCE, IMA_FROM, ...; UNREACHABLE), AgentError, TpmError
 */
export async function attestRuntime(o: AgentOptions): Promise<AgentOutcome> {
  const t0 = process.hrtime.bigint();
  const list = o.imaList ?? defaultImaList();
  let ak: KeyHandle | undefined = await createAK(o.tpm, o.token.ak_alg, tokenAKTemplate(o.token));
  let server = '';
  try {
    const r = await withServer({ servers: o.token.servers, ca: o.token.ca, deadlineMs: o.deadlineMs ?? 60_000, maxAttempts: 6, log: o.log, ...o.client }, async (s) => {
      server = s.server;
      let out = await reportOnce(s, o, ak!, list);
      if (out.result.state === 'restart') {
        o.log?.(`server ${s.server}: ${out.result.message}`);
        out = await reportOnce(s, o, ak!, list);
      }
      return out;
    });
    return { server, ...r, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  } finally {
    await flushKey(o.tpm, ak).catch(() => undefined);
    ak = undefined;
  }
}

/** The next wait: the interval with ±10 % jitter (so that a fleet rebooted together spreads out). */
export function nextDelayMs(intervalS: number, rnd = Math.random): number {
  return Math.round(intervalS * 1000 * (0.9 + 0.2 * rnd()));
}
