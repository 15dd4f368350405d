/**
 * Boot state: a typed summary of what a machine booted, read from a {@link TrustedLog} — the
 * events of quoted PCRs after replay matched (trusted.ts). There is no way to call this on a
 * raw EventLog: the type makes the trust boundary visible.
 *
 * Checklist (what decides, and what never does):
 * - Each PCR is read as its OWN sequence. Nothing depends on how events of different PCRs
 *   interleave in the log (that order is not bound): ExitBootServices (PCR 5) never cuts PCR 4.
 * - Content decides, not the type label, wherever the digest covers the data (`dataBound`):
 *   a separator is four bytes 00000000/FFFFFFFF that hash to the digest; an action is a text
 *   that hashes to the digest ("Calling EFI Application from Boot Option", "UEFI Debug Mode");
 *   a variable is a UEFI_VARIABLE_DATA that hashes to the digest. Anything else in PCR 4 is a
 *   loaded image, whatever its label, compared by its digest (the Authenticode hash).
 * - Data the digest does not cover (an EFI application's device path, a tagged event's
 *   description, a firmware version string that does not hash to its digest) is display only,
 *   shown as unverified, and never decides anything.
 * - An event whose label is unexpected for its PCR, or whose label says "data = digest" but
 *   the data does not hash to it, is an `issue` of that PCR: a policy that reads that PCR by
 *   structure refuses it (policy.ts), unless the policy pins that PCR's exact value.
 * - PCR 0–7: one separator each; a second one is an issue (events after it could be passed off
 *   as pre-boot ones). PCR 7 Secure Boot variables come before PCR 7's separator, once each.
 * - PCR 4 edges: images before the firmware's "Calling EFI Application from Boot Option" action
 *   (firmware-internal applications) are kept apart from the boot chain (`preBootApps`), never
 *   silently merged into it.
 * - Command lines only from the PCRs that carry them (8, 9, 12), through cmdline.ts, which says
 *   which bytes each format's digest covers; a command line whose text does not hash to its
 *   digest is an issue, not a command line.
 * @module
 */
import { createHash } from 'node:crypto';
import type { EfiSignatureList, DecodedEvent } from './types.ts';
import type { BankName } from '../pcrs.ts';
import { TrustedLog, type TrustedEvent } from './trusted.ts';
import { hashesTo } from './digest.ts';
import { decodeEvent } from './events.ts';
import { recognizeCmdline, type CmdlineSource } from './cmdline.ts';
import {
  EV_SEPARATOR, EV_EVENT_TAG, EV_S_CRTM_VERSION, EV_IPL, EV_EFI_VARIABLE_DRIVER_CONFIG,
  EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER,
  EV_EFI_ACTION, EV_EFI_VARIABLE_AUTHORITY, EV_ACTION, EV_OMIT_BOOT_DEVICE_EVENTS, EV_COMPACT_HASH,
} from './eventtypes.ts';

export type { CmdlineSource } from './cmdline.ts';

/** Linux EFI stub tagged events (drivers/firmware/efi/libstub/efistub.h). */
export const LINUX_EFI_INITRD_EVENT_TAG_ID = 0x8f3b22ec;
export const LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID = 0x8f3b22ed;

export const EXIT_BOOT_SERVICES = 'Exit Boot Services Invocation';
export const EBS_RETURNED = ['Exit Boot Services Returned with Success', 'Exit Boot Services Returned with Failure'];
export const CALLING_EFI_APP = 'Calling EFI Application from Boot Option';
export const RETURNING_EFI_APP = 'Returning from EFI Application from Boot Option';
export const UEFI_DEBUG_MODE = 'UEFI Debug Mode';
export const DMA_PROTECTION_DISABLED = 'DMA Protection Disabled';

/** bank name → lowercase hex digest. */
export type Digests = Partial<Record<BankName, string>>;

export interface StateIssue {
  code: string;
  /** Event number (position in the log, for messages). */
  event?: number;
  pcr?: number;
  message: string;
}

export interface SignatureEntry {
  type: string;
  hash: string;
  subject?: string;
}

export interface SecureBootVariable {
  event: number;
  dataSha256: string;
  entries: SignatureEntry[];
}

export type AppRole = 'shim' | 'bootloader' | 'uki' | 'kernel' | 'application';

export interface BootApp {
  event: number;
  /** A label for messages, guessed from the (unverified) path: never used to decide a check. */
  role: AppRole;
  /** The file path node of the device path: NOT covered by the digest (display only). */
  path?: string;
  devicePath: string;
  /** The event digests: the PE image's Authenticode hash per quoted bank. */
  digests: Digests;
  /** Loaded before PCR 4's separator. */
  beforeSeparator: boolean;
  /** The event's type label, when it is not EV_EFI_BOOT_SERVICES_APPLICATION. */
  label?: string;
}

export interface KernelCmdline {
  event: number;
  pcr: number;
  source: CmdlineSource;
  /** The format that matched (cmdline.ts). */
  form?: string;
  /** The command line, verified against the digest; undefined for the Linux EFI stub's load options (digest only). */
  text?: string;
  digests: Digests;
}

export interface Measurement {
  event: number;
  pcr: number;
  type: string;
  description: string;
  digests: Digests;
  /** The description is bound by the digest (it is the measured data); false: display only. */
  verified?: boolean;
}

export interface BootState {
  /** Bound to a quote (false: the log was taken on the operator's word). */
  verified: boolean;
  banks: BankName[];
  /** PCRs the state was read from (covered by the quote in the first bank). */
  pcrs: number[];
  secureBoot: { enabled: boolean; event?: number; value?: string };
  setupMode?: { enabled: boolean; event: number };
  otherVariables: Record<string, { event: number; data: string }>;
  PK?: SecureBootVariable;
  KEK?: SecureBootVariable;
  db?: SecureBootVariable;
  dbx?: SecureBootVariable;
  authorities: { event: number; variable: string; sha256: string; subject?: string; beforeSeparator: boolean }[];
  mok: { MokList?: Measurement; MokListX?: Measurement; MokListTrusted?: Measurement; MokListTrustedPcr7?: Measurement; SbatLevel?: { event: number; text: string } };
  /** EFI applications of the boot chain, in PCR 4's order (after the boot-option action when there is one). */
  apps: BootApp[];
  /** Images in PCR 4 before the firmware's "Calling EFI Application from Boot Option" action. */
  preBootApps: BootApp[];
  /** Whether PCR 4 has the "Calling EFI Application from Boot Option" action. */
  bootOptionAction: boolean;
  cmdlines: KernelCmdline[];
  initrds: Measurement[];
  grubFiles: Measurement[];
  stubSections: Measurement[];
  pcr12: Measurement[];
  /** PCR 0: every event (digest sequence); versions with `verified` when their text is the measured data. */
  firmware: { crtmVersions: { event: number; text: string; verified: boolean }[]; events: Measurement[] };
  drivers: Measurement[];
  debugMode: number[];
  dmaProtectionDisabled: number[];
  separators: Record<number, number>;
  /** Event number of PCR 5's ExitBootServices action, when PCR 5 is covered and has it. */
  exitBootServices?: number;
  /** Problems per PCR that make a structural reading of that PCR untrustworthy. */
  issues: StateIssue[];
  warnings: StateIssue[];
  /** Structural errors (a subset of issues kept for compatibility: those that refuse even a known-good boot). */
  errors: StateIssue[];
}

const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Drops trailing NULs (a loop: the regex /\0+$/ was a hot spot on long command lines). */
const stripNul = (s: string) => {
  let e = s.length;
  while (e > 0 && s.charCodeAt(e - 1) === 0) e--;
  return e === s.length ? s : s.slice(0, e);
};

export function digestsOf(ev: TrustedEvent): Digests {
  const d: Digests = {};
  for (const [bank, v] of ev.digests) d[bank] = v.toString('hex');
  return d;
}

/** The bound text of an event: its data as ASCII (NULs trimmed) when the data hashes to the digest. */
function boundText(ev: TrustedEvent): string | undefined {
  if (!ev.dataBound) {
    // A NUL-terminated string whose digest covers the text without the NUL.
    let end = ev.data.length;
    while (end > 0 && ev.data[end - 1] === 0) end--;
    if (end === ev.data.length || !hashesTo(ev.digests, ev.data.subarray(0, end))) return undefined;
    return asciiText(ev.data.subarray(0, end));
  }
  return asciiText(ev.data);
}
function asciiText(b: Buffer): string | undefined {
  const s = stripNul(b.toString('latin1'));
  return /^[\x20-\x7e]*$/.test(s) ? s : undefined;
}

function isBoundSeparator(ev: TrustedEvent): boolean {
  if (!ev.dataBound || ev.data.length !== 4) return false;
  const v = ev.data.readUInt32LE(0);
  return v === 0 || v === 0xffffffff || ev.data.toString('latin1') === 'WBCL';
}

/** A UEFI_VARIABLE_DATA reading of bound data (whatever the label), or undefined. */
function boundVariable(ev: TrustedEvent): Extract<DecodedEvent, { kind: 'efi-variable' }> | undefined {
  if (!ev.dataBound) return undefined;
  if (ev.decoded.kind === 'efi-variable') return ev.decoded;
  try {
    const d = decodeEvent(ev.type === EV_EFI_VARIABLE_AUTHORITY ? EV_EFI_VARIABLE_AUTHORITY : EV_EFI_VARIABLE_DRIVER_CONFIG, ev.data, ev.offset);
    return d.kind === 'efi-variable' ? d : undefined;
  } catch {
    return undefined;
  }
}

function signatureEntries(lists: EfiSignatureList[] | undefined): SignatureEntry[] {
  const out: SignatureEntry[] = [];
  for (const l of lists ?? []) {
    const type = l.typeName ?? l.type;
    for (const s of l.signatures) {
      const e: SignatureEntry = { type, hash: type === 'x509' ? sha256hex(s.data) : s.data.toString('hex') };
      if (s.subject) e.subject = s.subject;
      out.push(e);
    }
  }
  return out;
}

function decodeUcs2(b: Buffer): string {
  return stripNul(b.subarray(0, b.length & ~1).toString('utf16le'));
}

/** EV_S_CRTM_VERSION data: UCS-2, ASCII, a GUID, or hex. */
export function crtmVersionText(data: Buffer): string {
  if (data.every((b) => b === 0)) return '';
  const printable = (s: string) => s.length > 0 && /^[\x20-\x7e\xa0-\xff]+$/.test(s);
  const u = decodeUcs2(data);
  if (data.length % 2 === 0 && printable(u)) return u.trim();
  const a = stripNul(data.toString('latin1'));
  if (printable(a.replace(/\0/g, ''))) return a.replace(/\0/g, '').trim();
  if (data.length === 16) {
    const h = data.toString('hex');
    const le = (s: string) => s.match(/../g)!.reverse().join('');
    return `GUID ${le(h.slice(0, 8))}-${le(h.slice(8, 12))}-${le(h.slice(12, 16))}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  return `hex ${data.toString('hex')}`;
}

function describe(ev: TrustedEvent): string {
  const d = ev.decoded;
  switch (d.kind) {
    case 'string':
      return ev.type === EV_S_CRTM_VERSION ? crtmVersionText(ev.data) : stripNul(d.text);
    case 'ipl':
    case 'sp800-155':
      return stripNul(d.text);
    case 'efi-variable':
      return d.name;
    case 'efi-image':
      return d.filePath ?? d.devicePath;
    case 'firmware-blob':
      return `${d.description ? d.description + ' ' : ''}blob 0x${d.base.toString(16)}+0x${d.length.toString(16)}`;
    case 'event-tag':
      return `tag 0x${d.tagId.toString(16)}${d.tagName ? ' ' + d.tagName : ''}`;
    default:
      return ev.type === EV_S_CRTM_VERSION ? crtmVersionText(ev.data) : d.kind;
  }
}

function measurement(ev: TrustedEvent, verified?: boolean): Measurement {
  const m: Measurement = { event: ev.index, pcr: ev.pcr, type: ev.typeName, description: describe(ev), digests: digestsOf(ev) };
  if (verified !== undefined) m.verified = verified;
  return m;
}

function classify(apps: BootApp[], hasShimEvents: boolean, hasStubSections: boolean): void {
  for (let i = 0; i < apps.length; i++) {
    const a = apps[i];
    const p = (a.path ?? '').toLowerCase();
    const prev = i > 0 ? apps[i - 1].role : undefined;
    if (/shim/.test(p)) a.role = 'shim';
    else if (/grub|systemd-boot|sd-boot|\\loader\\/.test(p)) a.role = 'bootloader';
    else if (/\\efi\\linux\\.*\.efi$/.test(p)) a.role = 'uki';
    else if (/vmlinu[xz]|\\linux|kernel|bzimage/.test(p)) a.role = 'kernel';
    else if (!a.path && (prev === 'bootloader' || prev === 'uki' || prev === 'shim')) a.role = 'kernel';
    else if (/\\efi\\boot\\boot(x64|aa64|ia32|arm|riscv64)\.efi$/.test(p) && !a.beforeSeparator) {
      if (hasShimEvents && !apps.some((x) => x !== a && /shim/i.test(x.path ?? ''))) a.role = 'shim';
      else a.role = apps.length > i + 1 ? 'bootloader' : 'application';
    } else a.role = 'application';
  }
  // systemd-stub measured sections to PCR 11: the image right before a path-less kernel is a UKI.
  if (hasStubSections) {
    for (let i = 1; i < apps.length; i++) if (apps[i].role === 'kernel' && !apps[i].path && apps[i - 1].role !== 'shim') apps[i - 1].role = 'uki';
    if (apps.length && !apps.some((a) => a.role === 'uki' || a.role === 'kernel')) {
      const last = apps[apps.length - 1];
      if (last.role !== 'shim') last.role = 'uki';
    }
  }
}

/** Secure Boot configuration variables firmware measures in PCR 7 (UEFI 2.10 §32.4.8, PFP §3.3.4.8). */
const SB_CONFIG_VARS = new Set(['SecureBoot', 'PK', 'KEK', 'db', 'dbx', 'dbt', 'dbr', 'SetupMode', 'AuditMode', 'DeployedMode', 'VendorKeys']);

/** Event types that belong in each PCR a rule reads (PFP 1.05 §3.3.4, §10.4.1); others are issues there. */
const EXPECTED: Record<number, Set<number>> = {
  4: new Set([EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_ACTION, EV_SEPARATOR, EV_OMIT_BOOT_DEVICE_EVENTS, EV_COMPACT_HASH, EV_IPL, EV_ACTION]),
  5: new Set([EV_EFI_ACTION, EV_SEPARATOR, 0x80000006 /* GPT */, 0x8000000d /* GPT2 */, 0x80000002 /* VARIABLE_BOOT */, 0x8000000c, EV_IPL, 0x0000000e /* IPL_PARTITION_DATA */, EV_ACTION, EV_EVENT_TAG]),
  7: new Set([EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_AUTHORITY, EV_SEPARATOR, EV_EFI_ACTION]),
  8: new Set([EV_IPL, EV_EVENT_TAG, EV_SEPARATOR, EV_EFI_ACTION]),
  9: new Set([EV_IPL, EV_EVENT_TAG, EV_SEPARATOR, EV_EFI_ACTION]),
  12: new Set([EV_IPL, EV_EVENT_TAG, EV_SEPARATOR, EV_EFI_ACTION]),
};

/**
 * Reads the boot state from a trusted log (pure). Per-PCR problems go to `issues` (policy.ts
 * refuses them in PCRs it reads by structure), oddities to `warnings`.
 */
export function analyseBoot(tl: TrustedLog): BootState {
  const bank0 = tl.banks[0];
  const st: BootState = {
    verified: tl.verified,
    banks: [...tl.banks],
    pcrs: bank0 ? tl.pcrs(bank0) : [],
    secureBoot: { enabled: false },
    otherVariables: {},
    authorities: [],
    mok: {},
    apps: [],
    preBootApps: [],
    bootOptionAction: false,
    cmdlines: [],
    initrds: [],
    grubFiles: [],
    stubSections: [],
    pcr12: [],
    firmware: { crtmVersions: [], events: [] },
    drivers: [],
    debugMode: [],
    dmaProtectionDisabled: [],
    separators: {},
    issues: [],
    warnings: [],
    errors: [],
  };
  const at = (ev: TrustedEvent | undefined, message: string) => (ev ? `PCR ${ev.pcr} event ${ev.index}: ${message}` : message);
  const warn = (ev: TrustedEvent | undefined, code: string, message: string) =>
    st.warnings.push({ code, ...(ev ? { event: ev.index, pcr: ev.pcr } : {}), message: at(ev, message) });
  const issue = (ev: TrustedEvent, code: string, message: string) => st.issues.push({ code, event: ev.index, pcr: ev.pcr, message: at(ev, message) });
  const error = (ev: TrustedEvent, code: string, message: string) => {
    issue(ev, code, message);
    st.errors.push({ code, event: ev.index, pcr: ev.pcr, message: at(ev, message) });
  };

  // Separators and the type check, PCR by PCR.
  for (const pcr of tl.extendedPcrs()) {
    for (const ev of tl.events(pcr)) {
      if (isBoundSeparator(ev)) {
        if (st.separators[pcr] === undefined) st.separators[pcr] = ev.index;
        else if (pcr <= 7) error(ev, 'DUPLICATE_SEPARATOR', `second separator (the first is event ${st.separators[pcr]})`);
        else warn(ev, 'DUPLICATE_SEPARATOR', `second separator (the first is event ${st.separators[pcr]})`);
        if (ev.data.readUInt32LE(0) !== 0 && pcr <= 7) warn(ev, 'SEPARATOR_VALUE', 'separator that is not zero');
        continue;
      }
      if (ev.type === EV_SEPARATOR) issue(ev, 'UNBOUND_SEPARATOR', `EV_SEPARATOR whose data (${ev.data.toString('hex').slice(0, 16)}) does not hash to its digest`);
      const exp = EXPECTED[pcr];
      if (exp && !exp.has(ev.type)) issue(ev, 'UNEXPECTED_EVENT', `${ev.typeName} is not a type that belongs in PCR ${pcr} (the type label is not bound by the quote, so it cannot be trusted to say what this digest is)`);
    }
  }
  const sepSeq = (pcr: number) => tl.events(pcr).find(isBoundSeparator)?.seq ?? Infinity;

  // Bad-news actions, by content, in any covered PCR (PFP §3.3.4.8).
  for (const pcr of tl.extendedPcrs()) {
    for (const ev of tl.events(pcr)) {
      const t = boundText(ev);
      if (t === UEFI_DEBUG_MODE) st.debugMode.push(ev.index);
      else if (t === DMA_PROTECTION_DISABLED) st.dmaProtectionDisabled.push(ev.index);
    }
  }

  // PCR 0: firmware. The rule compares the whole digest sequence; version strings are display.
  for (const ev of tl.events(0)) {
    if (isBoundSeparator(ev)) continue;
    st.firmware.events.push(measurement(ev));
    if (ev.type === EV_S_CRTM_VERSION) {
      st.firmware.crtmVersions.push({ event: ev.index, text: crtmVersionText(ev.data), verified: ev.dataBound });
      if (!ev.dataBound) warn(ev, 'UNVERIFIED_TEXT', `firmware version ${JSON.stringify(crtmVersionText(ev.data))} does not hash to the event digest: unverified text`);
    }
  }

  // PCR 2: drivers and option ROMs before the separator (display).
  for (const ev of tl.events(2)) {
    if (ev.type !== EV_EFI_BOOT_SERVICES_DRIVER && ev.type !== EV_EFI_RUNTIME_SERVICES_DRIVER) continue;
    if (ev.seq > sepSeq(2)) warn(ev, 'AFTER_SEPARATOR', 'driver load after PCR 2\'s separator');
    st.drivers.push(measurement(ev));
  }

  // PCR 4: the boot chain, by content.
  {
    const evs = tl.events(4);
    const calling = evs.find((e) => boundText(e) === CALLING_EFI_APP);
    st.bootOptionAction = calling !== undefined;
    const sep = sepSeq(4);
    for (const ev of evs) {
      if (isBoundSeparator(ev)) continue;
      const t = boundText(ev);
      if (t !== undefined && (t === CALLING_EFI_APP || t === RETURNING_EFI_APP || t === 'BOOT ATTEMPTS OMITTED' || /^Booting /.test(t))) continue;
      // Anything else is an image: its digest is what counts, whatever the label says.
      const img = ev.decoded.kind === 'efi-image' ? ev.decoded : undefined;
      const app: BootApp = {
        event: ev.index, role: 'application', ...(img?.filePath ? { path: img.filePath } : {}), devicePath: img?.devicePath ?? '',
        digests: digestsOf(ev), beforeSeparator: ev.seq < sep,
        ...(ev.type !== EV_EFI_BOOT_SERVICES_APPLICATION ? { label: ev.typeName } : {}),
      };
      if (ev.type !== EV_EFI_BOOT_SERVICES_APPLICATION && ev.type !== EV_COMPACT_HASH && ev.type !== EV_IPL) {
        issue(ev, 'UNEXPECTED_EVENT', `${ev.typeName} in PCR 4 is neither a bound separator or action nor an EFI application: counted as a loaded image by its digest`);
      }
      if (calling && ev.seq < calling.seq) {
        st.preBootApps.push(app);
        warn(ev, 'APP_BEFORE_BOOT_OPTION', `EFI application ${app.path ?? (app.devicePath || '(no path)')} loaded before "${CALLING_EFI_APP}": not part of the boot chain (a firmware-internal application), compared on its own`);
      } else st.apps.push(app);
    }
    if (evs.length && !calling) warn(undefined, 'NO_BOOT_OPTION_ACTION', `PCR 4 has no "${CALLING_EFI_APP}" action: every PCR 4 image is taken as the boot chain`);
  }

  // PCR 5: ExitBootServices, in PCR 5's own order.
  if (tl.banks.some((b) => tl.covers(5, b))) {
    let ebsSeq: number | undefined;
    for (const ev of tl.events(5)) {
      const t = boundText(ev);
      if (ebsSeq === undefined) {
        if (t === EXIT_BOOT_SERVICES) { ebsSeq = ev.seq; st.exitBootServices = ev.index; }
      } else if (t === undefined || !EBS_RETURNED.includes(t)) {
        warn(ev, 'AFTER_EXIT_BOOT_SERVICES', `${ev.typeName} in PCR 5 after ExitBootServices (measured by the OS, not the firmware)`);
      }
    }
    if (ebsSeq === undefined) warn(undefined, 'NO_EXIT_BOOT_SERVICES', `PCR 5 has no "${EXIT_BOOT_SERVICES}" event (older kernels do not append the final events): the hand-off is not placed; no event of another PCR is cut by it anyway`);
  }

  // PCR 7: Secure Boot configuration and authorities.
  {
    const sep = sepSeq(7);
    const seen = new Set<string>();
    let sbEvent: TrustedEvent | undefined;
    for (const ev of tl.events(7)) {
      if (isBoundSeparator(ev)) continue;
      const t = boundText(ev);
      if (t === UEFI_DEBUG_MODE || t === DMA_PROTECTION_DISABLED) continue;
      const v = boundVariable(ev);
      if (!v) {
        if (ev.type === EV_EFI_VARIABLE_DRIVER_CONFIG || ev.type === EV_EFI_VARIABLE_AUTHORITY) {
          issue(ev, 'DIGEST_MISMATCH', `${ev.typeName}: the data does not hash to the digest, so the variable it names is unverified`);
        } else if (ev.type === EV_EFI_ACTION) issue(ev, 'UNEXPECTED_EVENT', `EFI action ${JSON.stringify(stripNul(ev.data.toString('latin1')).slice(0, 60))} in PCR 7 is neither bound nor known`);
        else if (!EXPECTED[7].has(ev.type)) { /* already an issue */ } else issue(ev, 'UNEXPECTED_EVENT', `${ev.typeName} in PCR 7 is not a bound variable measurement`);
        continue;
      }
      if (ev.type !== EV_EFI_VARIABLE_DRIVER_CONFIG && ev.type !== EV_EFI_VARIABLE_AUTHORITY) {
        // A variable measurement under another label: the label is unbound; reading it either way could mislead.
        issue(ev, 'UNEXPECTED_EVENT', `variable ${v.name} measured under the label ${ev.typeName} (expected EV_EFI_VARIABLE_DRIVER_CONFIG or EV_EFI_VARIABLE_AUTHORITY)`);
        continue;
      }
      if (ev.type === EV_EFI_VARIABLE_DRIVER_CONFIG) {
        if (ev.seq > sep) { error(ev, 'VARIABLE_AFTER_SEPARATOR', `variable ${v.name} measured after PCR 7's separator`); continue; }
        if (seen.has(v.name)) { error(ev, 'DUPLICATE_VARIABLE', `variable ${v.name} measured twice`); continue; }
        seen.add(v.name);
        switch (v.name) {
          case 'SecureBoot':
            sbEvent = ev;
            st.secureBoot = { enabled: v.data.length === 1 && v.data[0] === 1, event: ev.index, value: v.data.toString('hex') };
            if (v.data.length === 0) warn(ev, 'SECUREBOOT_EMPTY', 'SecureBoot variable has no data (absent): Secure Boot is off');
            else if (v.data.length !== 1 || v.data[0] > 1) error(ev, 'BAD_SECUREBOOT', `SecureBoot variable is ${v.data.toString('hex')}, expected 00 or 01`);
            break;
          case 'PK':
          case 'KEK':
          case 'db':
          case 'dbx':
            st[v.name] = { event: ev.index, dataSha256: sha256hex(v.data), entries: signatureEntries(v.signatureLists) };
            break;
          case 'SetupMode':
            st.setupMode = { enabled: v.data.length === 1 && v.data[0] === 1, event: ev.index };
            break;
          default:
            // Only UEFI's Secure Boot configuration variables belong here (UEFI 2.10 §32.4.8;
            // PFP §3.3.4.8). Any other name is no rule's input: a relabelled authority event
            // (an unlisted signer) would otherwise hide here unread.
            if (!SB_CONFIG_VARS.has(v.name)) issue(ev, 'UNEXPECTED_VARIABLE', `variable ${v.name} {${v.guid}} as Secure Boot configuration: not one UEFI defines (its label may have been changed from EV_EFI_VARIABLE_AUTHORITY)`);
            if (!Object.hasOwn(st.otherVariables, v.name)) st.otherVariables[v.name] = { event: ev.index, data: v.data.toString('hex') };
        }
        continue;
      }
      // EV_EFI_VARIABLE_AUTHORITY
      if (v.name === 'SbatLevel') { st.mok.SbatLevel = { event: ev.index, text: stripNul(v.data.toString('latin1')).trim() }; continue; }
      if (v.name === 'MokListTrusted') { st.mok.MokListTrustedPcr7 = measurement(ev, true); continue; }
      const a = v.authority;
      st.authorities.push({ event: ev.index, variable: v.name, sha256: sha256hex(a ? a.data : v.data), ...(a?.subject ? { subject: a.subject } : {}), beforeSeparator: ev.seq < sep });
    }
    if (st.secureBoot.enabled) {
      if (!st.authorities.length) warn(sbEvent, 'SB_NO_AUTHORITY', 'Secure Boot is on but no EV_EFI_VARIABLE_AUTHORITY event says which key verified the boot');
      if (!st.PK) warn(sbEvent, 'SB_NO_PK', 'Secure Boot is on but PK was not measured');
      if (!st.KEK) warn(sbEvent, 'SB_NO_KEK', 'Secure Boot is on but KEK was not measured');
      if (!st.db && sbEvent) error(sbEvent, 'SB_NO_DB', 'Secure Boot is on but db was not measured');
    }
  }

  // Command lines (PCR 8, 9, 12), initrds, grub files.
  for (const pcr of [8, 9, 12]) {
    for (const ev of tl.events(pcr)) {
      if (isBoundSeparator(ev)) continue;
      // Content decides, not the label: in PCR 8 and 12 every event is read as the text it would be
      // (a command line relabelled EV_EVENT_TAG or anything else is still found); in PCR 9 the EFI
      // stub's tagged event is digest-only and a text source is required next to it (policy.ts).
      const m = recognizeCmdline({ pcr: ev.pcr, type: pcr === 9 && ev.type === EV_EVENT_TAG ? EV_EVENT_TAG : EV_IPL, data: ev.data, digests: ev.digests as Map<BankName, Buffer> });
      if (m) {
        if (m.source === 'linux-efi-stub') st.cmdlines.push({ event: ev.index, pcr, source: m.source, form: m.form, digests: digestsOf(ev) });
        else if (!m.verified) issue(ev, 'TEXT_MISMATCH', `${m.source} command line ${JSON.stringify(m.text ?? '')} does not match the event digest`);
        else st.cmdlines.push({ event: ev.index, pcr, source: m.source, form: m.form, ...(m.text !== undefined ? { text: m.text } : {}), digests: digestsOf(ev) });
      } else if (pcr === 9 && ev.type === EV_EVENT_TAG && ev.decoded.kind === 'event-tag' && ev.decoded.tagId === LINUX_EFI_INITRD_EVENT_TAG_ID) {
        st.initrds.push({ ...measurement(ev), description: 'initrd (Linux EFI stub)' });
      } else if (pcr === 9 && ev.type === EV_IPL) {
        const m2 = measurement(ev, false);
        st.grubFiles.push(m2);
        if (/initrd|initramfs/i.test(m2.description)) st.initrds.push(m2);
      }
      if (pcr === 12) st.pcr12.push(measurement(ev, ev.dataBound));
    }
  }
  // The EFI stub's load options are known when another verified command line has the same digest.
  for (const c of st.cmdlines) {
    if (c.text !== undefined) continue;
    const twin = st.cmdlines.find((o) => o.text !== undefined && Object.entries(c.digests).every(([b, d]) => o.digests[b as BankName] === d));
    if (twin) c.text = twin.text;
  }

  // PCR 11: systemd-stub sections (display; names are bound when the name event hashes to its text).
  for (const ev of tl.events(11)) st.stubSections.push(measurement(ev, ev.dataBound));
  // PCR 14: shim's MOK lists (display).
  for (const ev of tl.events(14)) {
    const t = ev.decoded.kind === 'ipl' || ev.decoded.kind === 'string' ? stripNul(ev.decoded.text) : undefined;
    if (t === 'MokList' || t === 'MokListX' || t === 'MokListTrusted') st.mok[t] = measurement(ev);
  }

  const hasShimEvents = st.mok.MokList !== undefined || st.mok.SbatLevel !== undefined || st.authorities.some((a) => a.variable === 'Shim' || a.variable === 'MokList');
  classify(st.apps, hasShimEvents, st.stubSections.some((m) => /^\.(linux|cmdline|osrel|uname)$/.test(m.description)));
  for (let p = 0; p <= 7; p++) {
    if (st.separators[p] === undefined && tl.events(p).length) warn(undefined, 'NO_SEPARATOR', `PCR ${p} has no separator`);
  }
  if (!tl.verified) warn(undefined, 'UNVERIFIED', 'the log is not bound to a quote: everything here is what the log claims');
  return st;
}
