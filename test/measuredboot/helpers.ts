/**
 * Test helpers for policy tests: read the corpus, serialise an EventLog back to bytes (TCG PC
 * Client PFP 1.05 §10.2.1 TCG_PCR_EVENT and §10.2.2 TCG_PCR_EVENT2) and build variant logs by
 * changing one event and recomputing its digests.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseEventLog } from '../../src/measuredboot/eventlog.ts';
import type { EventLog, TcgEvent } from '../../src/measuredboot/types.ts';
import { TPM_ALG } from '../../src/measuredboot/eventtypes.ts';
import { BANK_HASH } from '../../src/pcrs.ts';

export const EVENTLOGS = new URL('../data/eventlogs/', import.meta.url);
export const QEMU = new URL('../data/qemu/', import.meta.url);

export function logBytes(name: string, dir: URL = EVENTLOGS): Buffer {
  return readFileSync(new URL(name, dir));
}

export function readLog(name: string, dir: URL = EVENTLOGS): EventLog {
  return parseEventLog(logBytes(name, dir));
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

/** Serialises a log: the first event (and every event of a legacy log) as TCG_PCR_EVENT, the rest as TCG_PCR_EVENT2. */
export function serialiseEventLog(log: EventLog): Buffer {
  const parts: Buffer[] = [];
  for (const [i, e] of log.events.entries()) {
    if (log.format === 'sha1-legacy' || i === 0) {
      const d = e.digests.get('sha1') ?? Buffer.alloc(20);
      parts.push(u32(e.pcr), u32(e.type), d, u32(e.data.length), e.data);
      continue;
    }
    const ds: Buffer[] = [];
    for (const [bank, d] of e.digests) ds.push(u16(TPM_ALG[bank]), d);
    for (const o of e.otherDigests ?? []) ds.push(u16(o.algId), o.digest);
    parts.push(u32(e.pcr), u32(e.type), u32(e.digests.size + (e.otherDigests?.length ?? 0)), ...ds, u32(e.data.length), e.data);
  }
  return Buffer.concat(parts);
}

/** Digests of `measured` in every bank the event carries. */
export function digestsFor(ev: TcgEvent, measured: Buffer): TcgEvent['digests'] {
  const m: TcgEvent['digests'] = new Map();
  for (const bank of ev.digests.keys()) m.set(bank, createHash(BANK_HASH[bank]).update(measured).digest());
  return m;
}

/** A copy of the log (re-parsed from bytes) with event `index` given new data and/or digests. */
export function withEvent(log: EventLog, index: number, change: (ev: TcgEvent) => { data?: Buffer; digests?: TcgEvent['digests'] }): EventLog {
  const events = log.events.map((e) => {
    if (e.index !== index) return e;
    const c = change(e);
    return { ...e, data: c.data ?? e.data, digests: c.digests ?? e.digests };
  });
  return parseEventLog(serialiseEventLog({ ...log, events }));
}

export function findEvent(log: EventLog, pred: (e: TcgEvent) => boolean, what: string): TcgEvent {
  const e = log.events.find(pred);
  if (!e) throw new Error(`test log has no ${what}`);
  return e;
}

/** The SecureBoot variable set to `value` (its last data byte), digests recomputed over UEFI_VARIABLE_DATA. */
export function setSecureBoot(log: EventLog, value: 0 | 1): EventLog {
  const ev = findEvent(log, (e) => e.pcr === 7 && e.decoded.kind === 'efi-variable' && e.decoded.name === 'SecureBoot', 'SecureBoot event');
  return withEvent(log, ev.index, (e) => {
    const data = Buffer.from(e.data);
    data[data.length - 1] = value;
    return { data, digests: digestsFor(e, data) };
  });
}

/** grub's "kernel_cmdline: " and "grub_cmd: linux" events rewritten to `cmdline` (the digest is of the measured string). */
export function setGrubCmdline(log: EventLog, cmdline: string): EventLog {
  let out = log;
  for (const e of log.events) {
    if (e.pcr !== 8 || e.decoded.kind !== 'ipl') continue;
    const t = e.decoded.text.replace(/\0+$/, '');
    const nul = e.data[e.data.length - 1] === 0 ? '\0' : '';
    if (t.startsWith('kernel_cmdline: ')) {
      out = withEvent(out, e.index, (ev) => ({ data: Buffer.from(`kernel_cmdline: ${cmdline}${nul}`), digests: digestsFor(ev, Buffer.from(cmdline)) }));
    } else if (t.startsWith('grub_cmd: linux')) {
      const cmd = `linux ${cmdline}`;
      out = withEvent(out, e.index, (ev) => ({ data: Buffer.from(`grub_cmd: ${cmd}${nul}`), digests: digestsFor(ev, Buffer.from(cmd)) }));
    }
  }
  return out;
}

/** Event `index` with digests of some other content (e.g. a different EFI application). */
export function setDigests(log: EventLog, index: number, content: string): EventLog {
  return withEvent(log, index, (e) => ({ digests: digestsFor(e, Buffer.from(content)) }));
}
