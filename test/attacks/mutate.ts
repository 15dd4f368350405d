/**
 * The attacker's toolbox: mutations of raw TCG event-log bytes (PFP 1.05 §10.2.1 TCG_PCR_EVENT,
 * §10.2.2 TCG_PCR_EVENT2) that a TPM quote cannot see. Each one keeps the replayed values of the
 * quoted PCRs identical: the library re-replays the mutated log with its own framing and replay
 * (independent of src/measuredboot, so a stricter parser cannot hide a mutation from the check)
 * and rejects the mutation when a quoted value changed.
 *
 * What a quote binds (go-attestation docs/event-log-disclosure.md): the sequence of digests
 * extended into each quoted PCR of each quoted bank. It does not bind event types, event data
 * the digest is not computed over, events of unquoted PCRs or banks, EV_NO_ACTION events, or
 * the order of events across PCRs.
 *
 * Pure: no I/O. Randomness comes from the seeded {@link Rng}.
 * @module
 */
import { createHash } from 'node:crypto';
import { BANK_HASH, BANK_SIZE, type BankName, type PcrValues } from '../../src/pcrs.ts';

// ── framing ────────────────────────────────────────────────────────────────────────────────

export interface RawDigest { algId: number; digest: Buffer }
export interface RawEvent {
  pcr: number;
  type: number;
  digests: RawDigest[];
  data: Buffer;
}
export interface RawLog {
  agile: boolean;
  /** The Spec ID event (agile logs), bytes as they were; empty for legacy logs, whose first event is an ordinary one. */
  header: Buffer;
  /** Algorithms of the Spec ID event (agile) or SHA-1 (legacy). */
  algs: { algId: number; size: number }[];
  events: RawEvent[];
  /** Trailing padding (CCEL), kept as is. */
  trailer: Buffer;
}

export const ALG_BANK: Record<number, BankName> = { 0x0004: 'sha1', 0x000b: 'sha256', 0x000c: 'sha384', 0x000d: 'sha512', 0x0012: 'sm3_256' };
export const BANK_ALG: Record<BankName, number> = { sha1: 0x0004, sha256: 0x000b, sha384: 0x000c, sha512: 0x000d, sm3_256: 0x0012 };

const SPEC_ID_03 = Buffer.from('Spec ID Event03\0', 'latin1');
const EV_NO_ACTION = 0x03;
const EV_EFI_HCRTM_EVENT = 0x80000010;

function isPadding(b: Buffer, pos: number): boolean {
  const v = b[pos];
  if (v !== 0 && v !== 0xff) return false;
  for (let i = pos + 1; i < b.length; i++) if (b[i] !== v) return false;
  return true;
}

/** Splits a log into events. @throws Error on a log this framer cannot read (only well-formed corpus logs are mutated). */
export function splitLog(bytes: Uint8Array): RawLog {
  const b = Buffer.from(bytes);
  const need = (pos: number, n: number) => { if (pos + n > b.length) throw new Error(`splitLog: truncated at byte ${pos}`); };
  need(0, 32);
  const hsize = b.readUInt32LE(28);
  need(32, hsize);
  const hdata = b.subarray(32, 32 + hsize);
  const agile = b.readUInt32LE(4) === EV_NO_ACTION && hdata.length >= 28 && hdata.subarray(0, 16).equals(SPEC_ID_03);
  const header = agile ? b.subarray(0, 32 + hsize) : b.subarray(0, 0);
  const algs: RawLog['algs'] = [];
  if (agile) {
    const n = hdata.readUInt32LE(24);
    for (let i = 0; i < n; i++) algs.push({ algId: hdata.readUInt16LE(28 + 4 * i), size: hdata.readUInt16LE(30 + 4 * i) });
  } else algs.push({ algId: 0x0004, size: 20 });
  const events: RawEvent[] = [];
  let pos = header.length;
  while (pos < b.length && !isPadding(b, pos)) {
    need(pos, 8);
    const pcr = b.readUInt32LE(pos);
    const type = b.readUInt32LE(pos + 4);
    pos += 8;
    const digests: RawDigest[] = [];
    if (agile) {
      need(pos, 4);
      const count = b.readUInt32LE(pos);
      pos += 4;
      for (let i = 0; i < count; i++) {
        need(pos, 2);
        const algId = b.readUInt16LE(pos);
        const alg = algs.find((a) => a.algId === algId);
        if (!alg) throw new Error(`splitLog: undeclared algorithm 0x${algId.toString(16)} at byte ${pos}`);
        need(pos + 2, alg.size);
        digests.push({ algId, digest: Buffer.from(b.subarray(pos + 2, pos + 2 + alg.size)) });
        pos += 2 + alg.size;
      }
    } else {
      need(pos, 20);
      digests.push({ algId: 0x0004, digest: Buffer.from(b.subarray(pos, pos + 20)) });
      pos += 20;
    }
    need(pos, 4);
    const size = b.readUInt32LE(pos);
    need(pos + 4, size);
    events.push({ pcr, type, digests, data: Buffer.from(b.subarray(pos + 4, pos + 4 + size)) });
    pos += 4 + size;
  }
  return { agile, header: Buffer.from(header), algs, events, trailer: Buffer.from(b.subarray(pos)) };
}

function u32(n: number): Buffer { const x = Buffer.alloc(4); x.writeUInt32LE(n >>> 0); return x; }
function u16(n: number): Buffer { const x = Buffer.alloc(2); x.writeUInt16LE(n); return x; }
function u64(n: number | bigint): Buffer { const x = Buffer.alloc(8); x.writeBigUInt64LE(BigInt(n)); return x; }

export function joinLog(raw: RawLog): Buffer {
  const parts: Buffer[] = [raw.header];
  for (const e of raw.events) {
    parts.push(u32(e.pcr), u32(e.type));
    if (raw.agile) {
      parts.push(u32(e.digests.length));
      for (const d of e.digests) parts.push(u16(d.algId), d.digest);
    } else parts.push(e.digests[0]?.digest ?? Buffer.alloc(20));
    parts.push(u32(e.data.length), e.data);
  }
  parts.push(raw.trailer);
  return Buffer.concat(parts);
}

function cloneLog(raw: RawLog): RawLog {
  return { ...raw, header: Buffer.from(raw.header), events: raw.events.map((e) => ({ ...e, digests: e.digests.map((d) => ({ ...d })) })) };
}

// ── independent replay (PFP 1.05 §3.3.3, §10.4.5.3) ───────────────────────────────────────

function startupLocality(raw: RawLog): number | undefined {
  for (const e of raw.events) {
    if (e.type === EV_NO_ACTION && e.data.length >= 17 && e.data.subarray(0, 16).toString('latin1') === 'StartupLocality\0') return e.data[e.data.length - 1];
    if (e.pcr === 0 && e.type !== EV_NO_ACTION) return e.type === EV_EFI_HCRTM_EVENT ? 4 : undefined;
  }
  return undefined;
}

/** The value the log gives PCR `pcr` of `bank` (the initial value when no event extends it). */
export function rawReplay(raw: RawLog, bank: BankName, pcr: number): Buffer {
  const alg = BANK_ALG[bank];
  let v = Buffer.alloc(BANK_SIZE[bank], pcr >= 17 && pcr <= 22 ? 0xff : 0);
  if (pcr === 0) {
    const loc = startupLocality(raw);
    if (loc !== undefined) v[v.length - 1] = loc;
  }
  for (const e of raw.events) {
    if (e.pcr !== pcr || e.type === EV_NO_ACTION) continue;
    const d = e.digests.find((x) => x.algId === alg);
    if (!d) continue;
    v = createHash(BANK_HASH[bank]).update(v).update(d.digest).digest();
  }
  return v;
}

/** The first quoted PCR whose value the log does not reproduce, or undefined. */
export function quotedMismatch(raw: RawLog, quoted: PcrValues): string | undefined {
  for (const [bank, pcrs] of quoted) {
    for (const [pcr, want] of pcrs) {
      const got = rawReplay(raw, bank, pcr);
      if (!got.equals(want)) return `${bank}:${pcr}`;
    }
  }
  return undefined;
}

/** The honest TPM: the log's own replay of exactly the selected PCRs. */
export function quoteOf(bytes: Uint8Array, selection: { bank: BankName; pcrs: number[] }[]): PcrValues {
  const raw = splitLog(bytes);
  const out: PcrValues = new Map();
  for (const s of selection) out.set(s.bank, new Map(s.pcrs.map((p) => [p, rawReplay(raw, s.bank, p)])));
  return out;
}

// ── building events ───────────────────────────────────────────────────────────────────────

/** Digests of `measured` for every algorithm of the log (random bytes for algorithms node cannot compute). */
export function digestsOf(raw: RawLog, measured: Buffer, rng?: Rng): RawDigest[] {
  return raw.algs.map((a) => {
    const bank = ALG_BANK[a.algId];
    try {
      if (bank) return { algId: a.algId, digest: createHash(BANK_HASH[bank]).update(measured).digest() };
    } catch { /* sm3 missing */ }
    return { algId: a.algId, digest: rng ? rng.bytes(a.size) : Buffer.alloc(a.size, 0xab) };
  });
}

export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';

function guidBytes(g: string): Buffer {
  const h = g.replace(/-/g, '');
  const le = (s: string) => Buffer.from(s, 'hex').reverse();
  return Buffer.concat([le(h.slice(0, 8)), le(h.slice(8, 12)), le(h.slice(12, 16)), Buffer.from(h.slice(16), 'hex')]);
}

/** UEFI_VARIABLE_DATA — PFP §10.2.6. */
export function variableData(name: string, value: Buffer, guid = EFI_GLOBAL_VARIABLE): Buffer {
  return Buffer.concat([guidBytes(guid), u64(name.length), u64(value.length), Buffer.from(name, 'utf16le'), value]);
}

/** A device path ending in one FilePath node (UEFI 2.10 §10.3.5.4), then End. */
export function filePathDevicePath(path: string): Buffer {
  const p = Buffer.from(path + '\0', 'utf16le');
  const node = Buffer.concat([Buffer.from([0x04, 0x04]), u16(4 + p.length), p]);
  return Buffer.concat([node, Buffer.from([0x7f, 0xff, 0x04, 0x00])]);
}

/** UEFI_IMAGE_LOAD_EVENT — PFP §10.2.3. */
export function imageLoadData(devicePath: Buffer, location = 0x7e000000n, length = 0x100000n): Buffer {
  return Buffer.concat([u64(location), u64(length), u64(0n), u64(devicePath.length), devicePath]);
}

/** TCG_PCClientTaggedEvent — PFP §10.4.2. */
export function taggedData(tagId: number, data: Buffer): Buffer {
  return Buffer.concat([u32(tagId), u32(data.length), data]);
}

export const EVT = {
  EV_POST_CODE: 0x01, EV_NO_ACTION: 0x03, EV_SEPARATOR: 0x04, EV_ACTION: 0x05, EV_EVENT_TAG: 0x06, EV_S_CRTM_VERSION: 0x08, EV_IPL: 0x0d,
  EV_EFI_VARIABLE_DRIVER_CONFIG: 0x80000001, EV_EFI_VARIABLE_BOOT: 0x80000002, EV_EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EV_EFI_BOOT_SERVICES_DRIVER: 0x80000004, EV_EFI_RUNTIME_SERVICES_DRIVER: 0x80000005, EV_EFI_GPT_EVENT: 0x80000006, EV_EFI_ACTION: 0x80000007,
  EV_EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008, EV_EFI_HANDOFF_TABLES: 0x80000009, EV_EFI_VARIABLE_AUTHORITY: 0x800000e0, EV_EFI_HCRTM_EVENT: 0x80000010,
} as const;

/** Every type the PFP defines (Table 9) and a few it does not. */
export const TYPE_POOL: readonly number[] = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13,
  0x80000000, 0x80000001, 0x80000002, 0x80000003, 0x80000004, 0x80000005, 0x80000006, 0x80000007, 0x80000008, 0x80000009,
  0x8000000a, 0x8000000b, 0x8000000c, 0x8000000d, 0x80000010, 0x800000e0, 0x800000e1, 0x800000e2, 0x800000e3, 0x800000e4,
  0x14, 0xff, 0x800000ff, 0x7fffffff, 0xfffffffe,
];

export const GRUB_PREFIXES = ['grub_cmd: linux ', 'grub_cmd: linuxefi ', 'kernel_cmdline: ', 'grub_kernel_cmdline '] as const;
export const LINUX_EFI_LOADOPTIONS_TAG = 0x8f3b22ed;
export const LINUX_EFI_INITRD_TAG = 0x8f3b22ec;
export const EXIT_BOOT_SERVICES = 'Exit Boot Services Invocation';

export type FakeKind = 'secureboot-on' | 'secureboot-off' | 'setupmode-off' | 'cmdline-utf16' | 'cmdline-ascii' | 'loadoptions-tag' | 'exit-boot-services' | 'application' | 'separator';
export const FAKE_KINDS: readonly FakeKind[] = ['secureboot-on', 'secureboot-off', 'setupmode-off', 'cmdline-utf16', 'cmdline-ascii', 'loadoptions-tag', 'exit-boot-services', 'application', 'separator'];
/** The PCR where firmware or boot loader would measure such an event. */
export const NATURAL_PCR: Record<FakeKind, number[]> = {
  'secureboot-on': [7], 'secureboot-off': [7], 'setupmode-off': [7], 'cmdline-utf16': [12, 8, 9], 'cmdline-ascii': [8], 'loadoptions-tag': [9],
  'exit-boot-services': [5], application: [4], separator: [0, 1, 2, 3, 4, 5, 6, 7],
};

/**
 * A fake event whose digests are what a measuring component would have extended for it
 * (so a digest-versus-data check passes); `text` is the command line for command-line kinds.
 */
export function fakeEvent(raw: RawLog, kind: FakeKind, pcr: number, rng: Rng, text = 'console=ttyS0'): { event: RawEvent; what: string } {
  const ev = (type: number, data: Buffer, measured: Buffer, what: string) => ({ event: { pcr, type, data, digests: digestsOf(raw, measured, rng) }, what });
  switch (kind) {
    case 'secureboot-on':
    case 'secureboot-off':
    case 'setupmode-off': {
      const d = variableData(kind === 'setupmode-off' ? 'SetupMode' : 'SecureBoot', Buffer.from([kind === 'secureboot-on' ? 1 : 0]));
      return ev(EVT.EV_EFI_VARIABLE_DRIVER_CONFIG, d, d, `${kind === 'setupmode-off' ? 'SetupMode = 00' : `SecureBoot = ${kind === 'secureboot-on' ? '01' : '00'}`} variable`);
    }
    case 'cmdline-utf16': {
      const d = Buffer.from(text + '\0', 'utf16le');
      return ev(EVT.EV_IPL, d, d, `UTF-16 command line ${JSON.stringify(text)}`);
    }
    case 'cmdline-ascii': {
      const prefix = rng.pick(GRUB_PREFIXES);
      const nul = rng.bool() ? '\0' : '';
      const measured = prefix.startsWith('grub_cmd: ') ? prefix.slice('grub_cmd: '.length) + text : text;
      return ev(EVT.EV_IPL, Buffer.from(prefix + text + nul, 'latin1'), Buffer.from(measured, 'latin1'), `ASCII command line ${JSON.stringify(prefix + text)}`);
    }
    case 'loadoptions-tag': {
      const measured = Buffer.from(text + '\0', 'utf16le');
      return ev(EVT.EV_EVENT_TAG, taggedData(LINUX_EFI_LOADOPTIONS_TAG, Buffer.from('LOADED_IMAGE::LoadOptions\0', 'latin1')), measured, `Linux EFI stub load options ${JSON.stringify(text)}`);
    }
    case 'exit-boot-services': {
      const d = Buffer.from(EXIT_BOOT_SERVICES, 'latin1');
      return ev(EVT.EV_EFI_ACTION, d, d, `"${EXIT_BOOT_SERVICES}" action`);
    }
    case 'application': {
      const path = rng.pick(['\\EFI\\BOOT\\BOOTX64.EFI', '\\EFI\\Linux\\evil.efi', '\\EFI\\evil\\grubx64.efi', '\\vmlinuz-evil', '\\EFI\\systemd\\systemd-bootx64.efi']);
      return ev(EVT.EV_EFI_BOOT_SERVICES_APPLICATION, imageLoadData(filePathDevicePath(path)), Buffer.from(`evil application ${rng.int(1e9)}`), `EFI application ${path}`);
    }
    case 'separator': {
      const d = Buffer.alloc(4);
      return ev(EVT.EV_SEPARATOR, d, d, 'separator');
    }
  }
}

// ── randomness ────────────────────────────────────────────────────────────────────────────

/** mulberry32: small, seeded, reproducible. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) { this.s = seed >>> 0; }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** 0 ≤ n < max */
  int(max: number): number { return Math.floor(this.next() * max); }
  bool(): boolean { return this.next() < 0.5; }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  bytes(n: number): Buffer { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = this.int(256); return b; }
}

// ── mutations ─────────────────────────────────────────────────────────────────────────────

export type MutationKind =
  | 'relabel' | 'uncovered-data' | 'any-data' | 'unquoted-add' | 'unquoted-remove' | 'unquoted-alter' | 'no-action'
  | 'digest-count-0' | 'missing-bank' | 'interleave' | 'spec-version' | 'duplicate-spec-id';
export const MUTATION_KINDS: readonly MutationKind[] = [
  'relabel', 'uncovered-data', 'any-data', 'unquoted-add', 'unquoted-remove', 'unquoted-alter', 'no-action',
  'digest-count-0', 'missing-bank', 'interleave', 'spec-version', 'duplicate-spec-id',
];

export interface Mutation {
  bytes: Buffer;
  description: string;
  /**
   * 'same': the quote cannot tell the mutated log from the original (a label-only change): the
   * verdict may refuse it, but may not turn a refusal into a release.
   * 'eventlog': the log has an event that extends nothing in a declared bank (digest count 0 or
   * a missing bank): it must be refused with EVENTLOG.
   */
  expect: 'same' | 'eventlog';
}

export interface MutationContext {
  rng: Rng;
  /** The quoted PCR values (bank → PCR → value): what the mutation must leave identical. */
  quoted: PcrValues;
  /** Command lines to impersonate (e.g. the known-good ones); an `init=/bin/sh` variant is added. */
  cmdlines?: string[];
  /** Counts why mutations were not produced. */
  stats?: { rejected: number; notApplicable: number };
}

function isQuoted(quoted: PcrValues, pcr: number): boolean {
  for (const pcrs of quoted.values()) if (pcrs.has(pcr)) return true;
  return false;
}

function unquotedPcrs(quoted: PcrValues): number[] {
  const out: number[] = [];
  for (let p = 0; p <= 23; p++) if (!isQuoted(quoted, p)) out.push(p);
  return out;
}

function typeName(t: number): string {
  const hit = Object.entries(EVT).find(([, v]) => v === t);
  return hit ? hit[0] : `0x${t.toString(16)}`;
}

function textFor(ctx: MutationContext): string {
  const c = ctx.cmdlines?.length ? ctx.rng.pick(ctx.cmdlines) : 'console=ttyS0';
  return ctx.rng.int(3) === 0 ? `${c} init=/bin/sh` : c;
}

/** The event's number in the parsed log (src/measuredboot counts the Spec ID event as 0). */
function no(raw: RawLog, i: number): number {
  return i + (raw.header.length ? 1 : 0);
}

const INTERESTING = new Set<number>([EVT.EV_EFI_BOOT_SERVICES_APPLICATION, EVT.EV_EFI_VARIABLE_DRIVER_CONFIG, EVT.EV_EFI_VARIABLE_AUTHORITY, EVT.EV_IPL, EVT.EV_EVENT_TAG, EVT.EV_EFI_ACTION, EVT.EV_SEPARATOR, EVT.EV_S_CRTM_VERSION]);

/** An event index, half the time among the events the analysis reads (applications, variables, command lines, actions). */
function pickEvent(raw: RawLog, rng: Rng): number {
  if (rng.bool()) {
    const hits = raw.events.flatMap((e, i) => (INTERESTING.has(e.type) ? [i] : []));
    if (hits.length) return rng.pick(hits);
  }
  return rng.int(raw.events.length);
}

/** Where to insert an event: a position 0..events.length. */
function anyPos(raw: RawLog, rng: Rng): number {
  return rng.int(raw.events.length + 1);
}

type Step = { raw: RawLog; description: string; expect?: Mutation['expect'] } | undefined;

const MUTATORS: Record<MutationKind, (raw: RawLog, ctx: MutationContext) => Step> = {
  /** Any event, any type (incl. undefined ones). */
  relabel(raw, ctx) {
    if (!raw.events.length) return undefined;
    const i = pickEvent(raw, ctx.rng);
    const t = ctx.rng.int(8) === 0 ? ctx.rng.int(0x100000000) : ctx.rng.pick(TYPE_POOL);
    const e = raw.events[i];
    if (t === e.type) return undefined;
    const from = e.type;
    e.type = t;
    return { raw, description: `event ${no(raw, i)} (PCR ${e.pcr}) relabelled ${typeName(from)} → ${typeName(t)}` };
  },
  /** Data the digest is not computed over: device paths, tagged-event ids and descriptions, PCR 11 section names, blob addresses. */
  'uncovered-data'(raw, ctx) {
    const { rng } = ctx;
    const cands = raw.events.map((e, i) => ({ e, i })).filter(({ e }) =>
      e.type === EVT.EV_EFI_BOOT_SERVICES_APPLICATION || e.type === EVT.EV_EFI_BOOT_SERVICES_DRIVER || e.type === EVT.EV_EFI_RUNTIME_SERVICES_DRIVER ||
      e.type === EVT.EV_EVENT_TAG || e.type === EVT.EV_EFI_PLATFORM_FIRMWARE_BLOB || e.type === EVT.EV_EFI_HANDOFF_TABLES || (e.type === EVT.EV_IPL && e.pcr !== 8 && e.pcr !== 12) || e.type === EVT.EV_POST_CODE);
    if (!cands.length) return undefined;
    const { e, i } = rng.pick(cands);
    let what: string;
    if (e.type === EVT.EV_EFI_BOOT_SERVICES_APPLICATION || e.type === EVT.EV_EFI_BOOT_SERVICES_DRIVER || e.type === EVT.EV_EFI_RUNTIME_SERVICES_DRIVER) {
      const path = rng.pick(['\\EFI\\BOOT\\BOOTX64.EFI', '\\EFI\\ubuntu\\shimx64.efi', '\\EFI\\ubuntu\\grubx64.efi', '\\EFI\\Linux\\linux.efi', '\\EFI\\systemd\\systemd-bootx64.efi', '\\vmlinuz', '\\EFI\\tools\\shell.efi', '']);
      e.data = rng.int(4) === 0 ? rng.bytes(rng.int(48)) : imageLoadData(path ? filePathDevicePath(path) : Buffer.from([0x7f, 0xff, 0x04, 0x00]));
      what = `device path → ${JSON.stringify(path)}`;
    } else if (e.type === EVT.EV_EVENT_TAG) {
      const tag = rng.pick([LINUX_EFI_LOADOPTIONS_TAG, LINUX_EFI_INITRD_TAG, 0x8f3b22ee, rng.int(0x100000000)]);
      const desc = rng.pick(['LOADED_IMAGE::LoadOptions\0', 'Linux initrd\0', 'harmless\0', '']);
      e.data = taggedData(tag, Buffer.from(desc, rng.bool() ? 'latin1' : 'utf16le'));
      what = `tagged event → id 0x${tag.toString(16)} ${JSON.stringify(desc)}`;
    } else if (e.type === EVT.EV_IPL) {
      const name = rng.pick(['.linux', '.cmdline', '.initrd', '.osrel', '.uname', 'init=/bin/sh', '']);
      e.data = Buffer.from(name + '\0', rng.bool() ? 'utf16le' : 'latin1');
      what = `text → ${JSON.stringify(name)}`;
    } else {
      e.data = rng.bytes(rng.int(64));
      what = `data → ${e.data.length} random bytes`;
    }
    return { raw, description: `event ${no(raw, i)} (PCR ${e.pcr} ${typeName(e.type)}) ${what}` };
  },
  /** Any event's data replaced (where the digest covers it, a checker must notice or not care). */
  'any-data'(raw, ctx) {
    if (!raw.events.length) return undefined;
    const i = ctx.rng.int(raw.events.length);
    const e = raw.events[i];
    const other = ctx.rng.pick(raw.events);
    e.data = ctx.rng.bool() ? Buffer.from(other.data) : ctx.rng.bytes(ctx.rng.int(40));
    return { raw, description: `event ${no(raw, i)} (PCR ${e.pcr} ${typeName(e.type)}) data replaced (${e.data.length} bytes)` };
  },
  /** A fake event in an unquoted PCR (the fake's natural PCR when it is unquoted). */
  'unquoted-add'(raw, ctx) {
    const free = unquotedPcrs(ctx.quoted);
    if (!free.length) return undefined;
    const kind = ctx.rng.pick(FAKE_KINDS);
    const natural = NATURAL_PCR[kind].filter((p) => free.includes(p));
    const pcr = natural.length && ctx.rng.int(4) !== 0 ? ctx.rng.pick(natural) : ctx.rng.pick(free);
    const { event, what } = fakeEvent(raw, kind, pcr, ctx.rng, textFor(ctx));
    const at = anyPos(raw, ctx.rng);
    raw.events.splice(at, 0, event);
    return { raw, description: `fake ${what} in unquoted PCR ${pcr} inserted as event ${no(raw, at)}` };
  },
  'unquoted-remove'(raw, ctx) {
    const cands = raw.events.map((e, i) => ({ e, i })).filter(({ e }) => !isQuoted(ctx.quoted, e.pcr) || e.type === EV_NO_ACTION);
    if (!cands.length) return undefined;
    const { e, i } = ctx.rng.pick(cands);
    raw.events.splice(i, 1);
    return { raw, description: `event ${no(raw, i)} (PCR ${e.pcr} ${typeName(e.type)}) removed` };
  },
  /** An unquoted PCR's event: new digests, type or data. */
  'unquoted-alter'(raw, ctx) {
    const cands = raw.events.map((e, i) => ({ e, i })).filter(({ e }) => !isQuoted(ctx.quoted, e.pcr));
    if (!cands.length) return undefined;
    const { e, i } = ctx.rng.pick(cands);
    const what: string[] = [];
    if (ctx.rng.bool()) { e.digests = e.digests.map((d) => ({ algId: d.algId, digest: ctx.rng.bytes(d.digest.length) })); what.push('digests'); }
    if (ctx.rng.bool()) { e.type = ctx.rng.pick(TYPE_POOL); what.push(`type ${typeName(e.type)}`); }
    if (!what.length || ctx.rng.bool()) { e.data = ctx.rng.bytes(ctx.rng.int(40)); what.push('data'); }
    return { raw, description: `event ${no(raw, i)} (unquoted PCR ${e.pcr}) altered: ${what.join(', ')}` };
  },
  /** EV_NO_ACTION anywhere, in any PCR, carrying the data of a meaningful event. */
  'no-action'(raw, ctx) {
    const kind = ctx.rng.pick(FAKE_KINDS);
    const pcr = ctx.rng.int(5) === 0 ? ctx.rng.int(24) : ctx.rng.pick(NATURAL_PCR[kind]);
    const { event, what } = fakeEvent(raw, kind, pcr, ctx.rng, textFor(ctx));
    event.type = EV_NO_ACTION;
    if (ctx.rng.bool()) event.digests = event.digests.map((d) => ({ algId: d.algId, digest: Buffer.alloc(d.digest.length) }));
    const at = anyPos(raw, ctx.rng);
    raw.events.splice(at, 0, event);
    return { raw, description: `EV_NO_ACTION in PCR ${pcr} carrying a ${what} inserted as event ${no(raw, at)}` };
  },
  /** An event with no digest at all (TPML_DIGEST_VALUES.count = 0): extends nothing, yet says something. */
  'digest-count-0'(raw, ctx) {
    if (!raw.agile) return undefined;
    const kind = ctx.rng.pick(FAKE_KINDS);
    const pcr = ctx.rng.int(5) === 0 ? ctx.rng.int(24) : ctx.rng.pick(NATURAL_PCR[kind]);
    const { event, what } = fakeEvent(raw, kind, pcr, ctx.rng, textFor(ctx));
    event.digests = [];
    const at = anyPos(raw, ctx.rng);
    raw.events.splice(at, 0, event);
    return { raw, description: `${what} with digest count 0 in PCR ${pcr} inserted as event ${no(raw, at)}`, expect: 'eventlog' };
  },
  /** An event without the digest of one declared bank (a quoted one when the PCR is quoted). */
  'missing-bank'(raw, ctx) {
    if (!raw.agile || raw.algs.length < 2) return undefined;
    const kind = ctx.rng.pick(FAKE_KINDS);
    const pcr = ctx.rng.int(5) === 0 ? ctx.rng.int(24) : ctx.rng.pick(NATURAL_PCR[kind]);
    const { event, what } = fakeEvent(raw, kind, pcr, ctx.rng, textFor(ctx));
    const quotedBanks = [...ctx.quoted].filter(([, p]) => p.has(pcr)).map(([b]) => BANK_ALG[b]);
    const drop = quotedBanks.length ? ctx.rng.pick(quotedBanks) : ctx.rng.pick(raw.algs).algId;
    event.digests = event.digests.filter((d) => d.algId !== drop);
    const at = anyPos(raw, ctx.rng);
    raw.events.splice(at, 0, event);
    return { raw, description: `${what} without its ${ALG_BANK[drop] ?? `0x${drop.toString(16)}`} digest in PCR ${pcr} inserted as event ${no(raw, at)}`, expect: 'eventlog' };
  },
  /** One event moved to another place in the log, never past an event of its own PCR. */
  interleave(raw, ctx) {
    if (raw.events.length < 2) return undefined;
    const i = pickEvent(raw, ctx.rng);
    const e = raw.events[i];
    let lo = i, hi = i;
    while (lo > 0 && raw.events[lo - 1].pcr !== e.pcr) lo--;
    while (hi < raw.events.length - 1 && raw.events[hi + 1].pcr !== e.pcr) hi++;
    if (lo === hi) return undefined;
    // favour the far ends: that is where moving matters (e.g. ExitBootServices ahead of PCR 4's applications)
    const to = ctx.rng.int(3) === 0 ? (ctx.rng.bool() ? lo : hi) : lo + ctx.rng.int(hi - lo + 1);
    if (to === i) return undefined;
    raw.events.splice(i, 1);
    raw.events.splice(to, 0, e);
    return { raw, description: `event ${no(raw, i)} (PCR ${e.pcr} ${typeName(e.type)}) moved to position ${no(raw, to)}` };
  },
  /** The Spec ID event's specVersion (and uintnSize) changed. */
  'spec-version'(raw, ctx) {
    if (!raw.agile) return undefined;
    const before = Buffer.from(raw.header);
    const [maj, min, err] = ctx.rng.pick([[2, 0, 0], [2, 0, 2], [2, 0, 3], [1, 2, 0], [1, 21, 0], [0, 0, 0], [255, 255, 255]] as const);
    raw.header[32 + 20] = min;
    raw.header[32 + 21] = maj;
    raw.header[32 + 22] = err;
    if (ctx.rng.int(4) === 0) raw.header[32 + 23] = ctx.rng.pick([1, 2, 4, 8]);
    if (raw.header.equals(before)) return undefined;
    return { raw, description: `Spec ID specVersion → ${maj}.${min}.${err}, uintnSize ${raw.header[32 + 23]}` };
  },
  /** A second Spec ID Event03 later in the log (its specVersion changed). */
  'duplicate-spec-id'(raw, ctx) {
    if (!raw.agile) return undefined;
    const data = Buffer.from(raw.header.subarray(32));
    data[20] = ctx.rng.int(3);
    data[21] = ctx.rng.pick([1, 2, 3]);
    const at = anyPos(raw, ctx.rng);
    raw.events.splice(at, 0, { pcr: 0, type: EV_NO_ACTION, data, digests: raw.algs.map((a) => ({ algId: a.algId, digest: Buffer.alloc(a.size) })) });
    return { raw, description: `second Spec ID event (specVersion ${data[21]}.${data[20]}) inserted as event ${no(raw, at)}` };
  },
};

/**
 * Applies one mutation of `kind` to `bytes`. Returns undefined when the kind does not apply to
 * this log or when the result would change a quoted PCR's replayed value (then it is rejected:
 * counted in ctx.stats).
 */
export function applyMutation(bytes: Uint8Array, kind: MutationKind, ctx: MutationContext): Mutation | undefined {
  const raw = cloneLog(splitLog(bytes));
  const step = MUTATORS[kind](raw, ctx);
  // a legacy log needs one event (an empty input is not a log)
  if (!step || (!step.raw.agile && step.raw.events.length === 0)) {
    if (ctx.stats) ctx.stats.notApplicable++;
    return undefined;
  }
  const out = joinLog(step.raw);
  if (out.equals(Buffer.from(bytes))) {
    if (ctx.stats) ctx.stats.notApplicable++;
    return undefined;
  }
  // The library's own guarantee: re-frame the bytes, replay, compare with the quote.
  const again = splitLog(out);
  const bad = quotedMismatch(again, ctx.quoted);
  if (bad) {
    if (ctx.stats) ctx.stats.rejected++;
    return undefined;
  }
  return { bytes: out, description: `${kind}: ${step.description}`, expect: step.expect ?? 'same' };
}

/** 1–`max` random mutations stacked (the stack ends with the first 'eventlog' one). */
export function randomMutation(bytes: Uint8Array, ctx: MutationContext, max = 3, kinds: readonly MutationKind[] = MUTATION_KINDS): Mutation | undefined {
  const n = 1 + ctx.rng.int(max);
  let cur: Mutation | undefined;
  for (let k = 0; k < n; k++) {
    const m = applyMutation(cur?.bytes ?? bytes, ctx.rng.pick(kinds), ctx);
    if (!m) continue;
    cur = cur ? { bytes: m.bytes, description: `${cur.description}; ${m.description}`, expect: m.expect } : m;
    // stop after an extends-nothing event, so that no later step removes or relabels it
    if (m.expect === 'eventlog') break;
  }
  return cur;
}
