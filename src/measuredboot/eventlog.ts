/**
 * TCG event-log parser — TCG PC Client Platform Firmware Profile (PFP) 1.05 §10.
 *
 * Reads both formats:
 * - crypto-agile (§10.2.1 TCG_PCR_EVENT header carrying TCG_EfiSpecIdEvent "Spec ID Event03",
 *   then §10.2.2 TCG_PCR_EVENT2 events with one digest per algorithm the header declares),
 * - legacy SHA-1 (TCG 1.2 style: TCG_PCR_EVENT throughout, with or without a Spec ID Event00
 *   or StartupLocality EV_NO_ACTION first).
 *
 * Checklist (what is and is not checked):
 * - every length is bounded by the bytes left and by MAX_EVENT_SIZE before anything is read;
 * - PCR indices are 0-23 or 0xFFFFFFFF (Windows' AIK event), the digest count is at most the
 *   number of algorithms the Spec ID event declares, and each digest's algorithm is declared;
 * - every event but EV_NO_ACTION carries a digest for EVERY bank the Spec ID event declares
 *   (MISSING_DIGEST): an event without one extends nothing in that bank, so replay cannot bind it,
 *   yet a reader of the log would see it (a `SecureBoot = 01` the TPM never saw);
 * - a Spec ID Event03 must say specVersion 2.0 (BAD_SPEC_VERSION; PFP §10.4.5.1);
 * - trailing 0x00/0xFF padding (CCEL logs) ends the log;
 * - event data is decoded where the PFP defines it; a decode failure becomes `{kind:'raw'}`
 *   and a warning, never an error; digests are compared with the data where the PFP ties them;
 * - NOTHING here is trusted: the events mean something only once replay() matches quoted PCRs.
 *
 * Pure: no I/O.
 * @module
 */
import { EventLogError } from './errors.ts';
import { Reader } from './reader.ts';
import { decodeEvent, decodeSpecId03 } from './events.ts';
import { checkDigest } from './digest.ts';
import { eventTypeName, EV_NO_ACTION, EV_SEPARATOR } from './eventtypes.ts';
import type { BankName } from '../pcrs.ts';
import type { DecodedEvent, EventLog, EventLogWarning, SpecIdInfo, TcgEvent } from './types.ts';

/** Largest event data accepted (16 MiB): no real event comes near it. */
export const MAX_EVENT_SIZE = 16 * 1024 * 1024;
/** PCR index of events that extend nothing (Windows' trailing AIK event). */
export const NO_PCR = 0xffffffff;

const SPEC_ID_03 = Buffer.from('Spec ID Event03\0', 'latin1');

interface RawEvent {
  offset: number;
  pcr: number;
  type: number;
  digests: Map<BankName, Buffer>;
  otherDigests?: { algId: number; digest: Buffer }[];
  data: Buffer;
  dataOffset: number;
}

/** True if every byte from `pos` on is 0x00, or every byte is 0xFF. */
function isPadding(buf: Buffer, pos: number): boolean {
  const v = buf[pos];
  if (v !== 0x00 && v !== 0xff) return false;
  for (let i = pos + 1; i < buf.length; i++) if (buf[i] !== v) return false;
  return true;
}

function checkPcr(r: Reader, pcr: number, at: number): void {
  if (pcr > 23 && pcr !== NO_PCR) r.fail('BAD_PCR', `PCR index ${pcr} (0x${pcr.toString(16)}) is neither 0-23 nor 0xFFFFFFFF`, at);
}

function readData(r: Reader): { data: Buffer; dataOffset: number } {
  const at = r.pos;
  const size = r.u32('event size');
  if (size > MAX_EVENT_SIZE) r.fail('TOO_LARGE', `event size ${size} exceeds the 16 MiB limit`, at);
  if (size > r.remaining) r.fail('TRUNCATED', `event size ${size} runs past the end of the log (${r.remaining} bytes left)`, at);
  const dataOffset = r.offset;
  return { data: r.bytes(size, 'event data'), dataOffset };
}

/** TCG_PCR_EVENT — PFP §10.2.1 (SHA-1 digest). */
function readLegacy(r: Reader): RawEvent {
  const offset = r.offset;
  const pcr = r.u32('PCRIndex');
  checkPcr(r, pcr, offset - r.base);
  const type = r.u32('EventType');
  const digest = r.bytes(20, 'SHA-1 digest');
  return { offset, pcr, type, digests: new Map([['sha1', digest]]), ...readData(r) };
}

/** TCG_PCR_EVENT2 — PFP §10.2.2 (TPML_DIGEST_VALUES). */
function readAgile(r: Reader, spec: SpecIdInfo, lenient?: EventLogWarning[]): RawEvent {
  const offset = r.offset;
  const pcr = r.u32('PCRIndex');
  checkPcr(r, pcr, offset - r.base);
  const type = r.u32('EventType');
  const countAt = r.pos;
  const count = r.u32('digest count');
  if (count > spec.algorithms.length) r.fail('BAD_DIGEST_COUNT', `digest count ${count} exceeds the ${spec.algorithms.length} algorithm(s) of the Spec ID event`, countAt);
  const digests = new Map<BankName, Buffer>();
  let otherDigests: { algId: number; digest: Buffer }[] | undefined;
  const seen = new Set<number>();
  for (let i = 0; i < count; i++) {
    const at = r.pos;
    const algId = r.u16('hashAlg');
    const alg = spec.algorithms.find((a) => a.algId === algId);
    if (!alg) r.fail('UNKNOWN_ALG', `digest algorithm 0x${algId.toString(16).padStart(4, '0')} is not declared by the Spec ID event`, at);
    if (seen.has(algId)) r.fail('BAD_DIGEST_COUNT', `two digests for algorithm 0x${algId.toString(16).padStart(4, '0')}`, at);
    seen.add(algId);
    const digest = r.bytes(alg.digestSize, `${alg.name ?? 'digest'} digest`);
    if (alg.name) digests.set(alg.name, digest);
    else (otherDigests ??= []).push({ algId, digest });
  }
  if (type !== EV_NO_ACTION && count !== spec.algorithms.length) {
    const missing = spec.algorithms.filter((a) => !seen.has(a.algId)).map((a) => a.name ?? `0x${a.algId.toString(16).padStart(4, '0')}`);
    const msg = `${eventTypeName(type)} in PCR ${pcr} has ${count === 0 ? 'no digest at all' : `no ${missing.join(', ')} digest`}`;
    if (lenient) lenient.push({ code: 'MISSING_DIGEST', index: r.eventIndex ?? -1, offset: countAt, message: `event ${r.eventIndex} at byte ${countAt}: ${msg} (tolerated for display only: a verdict refuses this log)` });
    else r.fail('MISSING_DIGEST', `${eventTypeName(type)} in PCR ${pcr} has ${count === 0 ? 'no digest at all' : `no ${missing.join(', ')} digest`}; the Spec ID event declares ${spec.algorithms.map((a) => a.name ?? `0x${a.algId.toString(16)}`).join(', ')} and every measured event must carry each (an event without a digest extends nothing, so the quote cannot vouch for it)`, countAt);
  }
  const ev: RawEvent = { offset, pcr, type, digests, ...readData(r) };
  if (otherDigests) ev.otherDigests = otherDigests;
  return ev;
}

function finish(raw: RawEvent, index: number, decodedIn: DecodedEvent | undefined, warnings: EventLogWarning[], legacy: boolean): TcgEvent {
  let decoded: DecodedEvent;
  let decodeError: string | undefined;
  if (decodedIn) decoded = decodedIn;
  else {
    try {
      decoded = decodeEvent(raw.type, raw.data, raw.dataOffset);
    } catch (e) {
      decoded = { kind: 'raw' };
      decodeError = e instanceof Error ? e.message : String(e);
      warnings.push({ code: 'DECODE', index, offset: raw.offset, message: `event ${index} (${eventTypeName(raw.type)}): data not decoded: ${decodeError}` });
    }
  }
  const ev: TcgEvent = {
    index,
    offset: raw.offset,
    pcr: raw.pcr,
    type: raw.type,
    typeName: eventTypeName(raw.type),
    digests: raw.digests,
    data: raw.data,
    decoded,
    digestCheck: checkDigest(raw.type, raw.pcr, raw.data, decoded, raw.digests, legacy),
  };
  if (raw.otherDigests) ev.otherDigests = raw.otherDigests;
  if (decodeError !== undefined) ev.decodeError = decodeError;
  return ev;
}

/**
 * Parses a TCG event log (the bytes of /sys/kernel/security/tpm0/binary_bios_measurements).
 * @throws EventLogError (with the byte offset) when the bytes are not a well-formed log
 */
export interface ParseOptions {
  /**
   * Display only (`eventlog show|replay`): an event missing a declared bank's digest becomes a
   * MISSING_DIGEST warning instead of an error. Never used on the way to a verdict.
   */
  allowMissingDigests?: boolean;
}

export function parseEventLog(input: Uint8Array, opts: ParseOptions = {}): EventLog {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length === 0) throw new EventLogError('EMPTY', 'the event log is empty', 0);
  if (isPadding(buf, 0)) throw new EventLogError('EMPTY', `the event log holds only padding (${buf.length} bytes of 0x${buf[0].toString(16).padStart(2, '0')})`, 0);
  const r = new Reader(buf);
  const warnings: EventLogWarning[] = [];
  const events: TcgEvent[] = [];

  r.eventIndex = 0;
  if (buf.length < 32) r.fail('BAD_HEADER', `not a TCG event log: ${buf.length} bytes is shorter than one event header (32 bytes)`, 0);
  const first = readLegacy(r);
  if (eventTypeName(first.type).startsWith('EV_UNKNOWN')) r.fail('BAD_HEADER', `not a TCG event log: first event has unknown type 0x${first.type.toString(16)}`, 4);

  const agile = first.type === EV_NO_ACTION && first.data.length >= 16 && first.data.subarray(0, 16).equals(SPEC_ID_03);
  let specId: SpecIdInfo | undefined;
  let banks: BankName[];
  if (agile) {
    try {
      specId = decodeSpecId03(first.data, first.dataOffset);
    } catch (e) {
      if (!(e instanceof EventLogError)) throw e;
      throw new EventLogError('BAD_HEADER', `Spec ID event: ${e.message.replace(/^at byte \d+: /, '')}`, e.offset, 0);
    }
    if (!/^2\.0\./.test(specId.specVersion)) {
      throw new EventLogError('BAD_SPEC_VERSION', `Spec ID Event03 says specVersion ${specId.specVersion.split('.').slice(0, 2).join('.')}, the crypto-agile format is 2.0 (PFP §10.4.5.1)`, first.dataOffset + 20, 0);
    }
    banks = specId.algorithms.flatMap((a) => (a.name ? [a.name] : []));
    events.push(finish(first, 0, { kind: 'spec-id', specId }, warnings, false));
  } else {
    banks = ['sha1'];
    events.push(finish(first, 0, undefined, warnings, true));
  }

  const separators = new Set<number>();
  while (r.remaining > 0 && !isPadding(buf, r.pos)) {
    const index = events.length;
    r.eventIndex = index;
    const raw = specId ? readAgile(r, specId, opts.allowMissingDigests ? warnings : undefined) : readLegacy(r);
    const ev = finish(raw, index, undefined, warnings, !specId);
    if (ev.type === EV_SEPARATOR && ev.pcr <= 7) {
      if (separators.has(ev.pcr)) warnings.push({ code: 'DUPLICATE_SEPARATOR', index, offset: ev.offset, message: `event ${index} at byte ${ev.offset}: second EV_SEPARATOR in PCR ${ev.pcr}` });
      separators.add(ev.pcr);
    }
    events.push(ev);
  }

  const log: EventLog = { format: agile ? 'crypto-agile' : 'sha1-legacy', banks, events, length: r.pos };
  if (specId) log.specId = specId;
  if (warnings.length) log.warnings = warnings;
  return log;
}
