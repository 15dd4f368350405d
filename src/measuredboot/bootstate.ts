/**
 * Boot state: a typed summary of what a machine booted, extracted from an event log, using
 * only events whose place in the log can be trusted.
 *
 * Trust rules (the checklist, after go-attestation's ParseSecurebootState):
 * - Each of PCR 0–7 has exactly one EV_SEPARATOR (PFP 1.05 §3.3.4.1, "separator"); a second one
 *   is an error, because events after it could be passed off as pre-boot ones.
 * - PCR 0 (firmware, §3.3.4.1) and PCR 2 (option ROMs / drivers) events count only before
 *   their PCR's separator; later ones are ignored with a warning.
 * - PCR 7 Secure Boot variables (EV_EFI_VARIABLE_DRIVER_CONFIG, §3.3.4.8 and UEFI 2.10 §32.4)
 *   must come before PCR 7's separator, once each, with a digest matching their data; else error.
 * - Events of the boot path (PCR 4, 7 authorities, 8, 9, 11, 12, 14) count only up to the
 *   "Exit Boot Services Invocation" EV_EFI_ACTION (§3.3.4.5, PCR 5): after it the OS, not the
 *   firmware or boot loader, writes the log.
 * - Text shown to the operator (kernel command lines) is used only when the event's digest is the
 *   hash of that text, so a forged description cannot hide behind a genuine digest.
 * - EV_NO_ACTION events extend nothing and are skipped.
 *
 * What is NOT checked here: that the log replays to quoted PCR values (replay.ts and the quote
 * verifier do that, first). The result is only as good as the log it came from.
 * @module
 */
import { createHash } from 'node:crypto';
import type { EventLog, TcgEvent, EfiSignatureList } from './types.ts';
import { BANK_HASH, type BankName } from '../pcrs.ts';

// Event types, PFP 1.05 §10.4.1 Table 9.
import {
  EV_NO_ACTION, EV_SEPARATOR, EV_EVENT_TAG, EV_S_CRTM_VERSION, EV_IPL, EV_EFI_VARIABLE_DRIVER_CONFIG,
  EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_BOOT_SERVICES_DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER,
  EV_EFI_ACTION, EV_EFI_VARIABLE_AUTHORITY,
} from './eventtypes.ts';

/** Linux EFI stub tagged events (drivers/firmware/efi/libstub/efistub.h). */
export const LINUX_EFI_INITRD_EVENT_TAG_ID = 0x8f3b22ec;
export const LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID = 0x8f3b22ed;

export const EXIT_BOOT_SERVICES = 'Exit Boot Services Invocation';
export const UEFI_DEBUG_MODE = 'UEFI Debug Mode';
export const DMA_PROTECTION_DISABLED = 'DMA Protection Disabled';

/** bank name → lowercase hex digest. */
export type Digests = Partial<Record<BankName, string>>;

export interface StateIssue {
  code: string;
  /** Event number (TcgEvent.index). */
  event?: number;
  pcr?: number;
  message: string;
}

export interface SignatureEntry {
  /** "x509", "sha256", ... */
  type: string;
  /** For certificates the SHA-256 of the DER; for hash entries the hash itself (hex). */
  hash: string;
  subject?: string;
}

/** PK, KEK, db or dbx as measured in PCR 7. */
export interface SecureBootVariable {
  event: number;
  /** SHA-256 of the variable's data (the EFI_SIGNATURE_LISTs). */
  dataSha256: string;
  entries: SignatureEntry[];
}

export type AppRole = 'shim' | 'bootloader' | 'uki' | 'kernel' | 'application';

export interface BootApp {
  event: number;
  role: AppRole;
  /** The file path node, e.g. "\EFI\BOOT\BOOTX64.EFI", when the device path has one. */
  path?: string;
  devicePath: string;
  /** The event digests: the PE image's Authenticode hash per bank. */
  digests: Digests;
  /** Loaded before PCR 4's separator (a firmware-internal application). */
  beforeSeparator: boolean;
}

export type CmdlineSource = 'grub' | 'systemd' | 'linux-efi-stub';

export interface KernelCmdline {
  event: number;
  pcr: number;
  source: CmdlineSource;
  /**
   * The command line, verified against the digest. The Linux EFI stub logs only a description
   * ("LOADED_IMAGE::LoadOptions"), so its text is known only when another verified command-line
   * event has the same digest (systemd-boot's PCR 12 event, for instance).
   */
  text?: string;
  digests: Digests;
}

/** Any measured item, for display and pinning. */
export interface Measurement {
  event: number;
  pcr: number;
  type: string;
  description: string;
  digests: Digests;
}

export interface BootState {
  banks: BankName[];
  secureBoot: { enabled: boolean; event?: number; value?: string };
  setupMode?: { enabled: boolean; event: number };
  /** Other PCR 7 variables (AuditMode, DeployedMode, ...): name → hex data. */
  otherVariables: Record<string, { event: number; data: string }>;
  PK?: SecureBootVariable;
  KEK?: SecureBootVariable;
  db?: SecureBootVariable;
  dbx?: SecureBootVariable;
  /** EV_EFI_VARIABLE_AUTHORITY: keys that verified something (PCR 7). */
  authorities: { event: number; variable: string; sha256: string; subject?: string; beforeSeparator: boolean }[];
  /** shim's MOK measurements: MokList/MokListX/MokListTrusted (PCR 14), SbatLevel and MokListTrusted (PCR 7). */
  mok: { MokList?: Measurement; MokListX?: Measurement; MokListTrusted?: Measurement; MokListTrustedPcr7?: Measurement; SbatLevel?: { event: number; text: string } };
  /** EFI applications in load order (PCR 4, up to ExitBootServices). */
  apps: BootApp[];
  cmdlines: KernelCmdline[];
  initrds: Measurement[];
  /** grub's file measurements in PCR 9 (kernel, initrd, config files). */
  grubFiles: Measurement[];
  /** systemd-stub's PE section measurements (PCR 11). */
  stubSections: Measurement[];
  pcr12: Measurement[];
  firmware: { crtmVersions: { event: number; text: string }[]; events: Measurement[] };
  /** Drivers and option ROMs loaded before PCR 2's separator. */
  drivers: Measurement[];
  debugMode: number[];
  dmaProtectionDisabled: number[];
  /** PCR → event number of its (first) separator. */
  separators: Record<number, number>;
  exitBootServices?: number;
  warnings: StateIssue[];
  errors: StateIssue[];
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

export function digestsOf(ev: TcgEvent): Digests {
  const d: Digests = {};
  for (const [bank, v] of ev.digests) d[bank] = hex(v);
  return d;
}

/** True when every bank's digest that node:crypto can compute is the hash of `bytes`. */
export function digestIsHashOf(ev: TcgEvent, bytes: Buffer): boolean {
  let checked = 0;
  for (const [bank, v] of ev.digests) {
    let h: Buffer;
    try {
      h = createHash(BANK_HASH[bank]).update(bytes).digest();
    } catch {
      continue; // e.g. sm3 not built into this node
    }
    if (!h.equals(v)) return false;
    checked++;
  }
  return checked > 0;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function stripNul(s: string): string {
  return s.replace(/\0+$/, '');
}

function signatureEntries(lists: EfiSignatureList[] | undefined): SignatureEntry[] {
  const out: SignatureEntry[] = [];
  for (const l of lists ?? []) {
    const type = l.typeName ?? l.type;
    for (const s of l.signatures) {
      const e: SignatureEntry = { type, hash: type === 'x509' ? sha256(s.data) : hex(s.data) };
      if (s.subject) e.subject = s.subject;
      out.push(e);
    }
  }
  return out;
}

function describe(ev: TcgEvent): string {
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

function measurement(ev: TcgEvent): Measurement {
  return { event: ev.index, pcr: ev.pcr, type: ev.typeName, description: describe(ev), digests: digestsOf(ev) };
}

/** The text of an event, when it has one (EV_IPL, EV_EFI_ACTION, ...). */
function textOf(ev: TcgEvent): string | undefined {
  const d = ev.decoded;
  if (d.kind === 'string' || d.kind === 'ipl') return stripNul(d.text);
  return undefined;
}

/**
 * grub (grub-core/commands/tpm.c): the event data is "<prefix><string>" and the digest is of
 * <string> alone, so the shown text is trusted only when the digest matches it.
 */
function grubCmdline(ev: TcgEvent, text: string): { text: string; verified: boolean } | undefined {
  for (const prefix of ['kernel_cmdline: ', 'grub_cmd: linux ', 'grub_cmd: linuxefi ']) {
    if (!text.startsWith(prefix)) continue;
    const measured = text.slice(prefix.startsWith('kernel') ? prefix.length : 'grub_cmd: '.length);
    const verified = digestIsHashOf(ev, Buffer.from(measured)) || digestIsHashOf(ev, Buffer.from(text));
    return { text: text.slice(prefix.length).trim(), verified };
  }
  return undefined;
}

function decodeUcs2(b: Buffer): string {
  return stripNul(b.subarray(0, b.length & ~1).toString('utf16le'));
}

/**
 * EV_S_CRTM_VERSION data (PFP §10.4.1): usually a UCS-2 string, sometimes ASCII, sometimes a
 * GUID (16 bytes) or other binary; rendered as text, "GUID {...}" or hex.
 */
export function crtmVersionText(data: Buffer): string {
  if (data.every((b) => b === 0)) return ''; // OVMF: an empty UCS-2 string
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

function classify(apps: BootApp[], hasShimEvents: boolean): void {
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
}

/**
 * Extracts the boot state from a log (pure). Structural problems that make the state
 * untrustworthy are returned in `errors`, oddities in `warnings`; both name the event.
 */
export function extractBootState(log: EventLog): BootState {
  const st: BootState = {
    banks: [...log.banks],
    secureBoot: { enabled: false },
    otherVariables: {},
    authorities: [],
    mok: {},
    apps: [],
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
    warnings: [],
    errors: [],
  };
  const warn = (ev: TcgEvent | undefined, code: string, message: string) =>
    st.warnings.push({ code, ...(ev ? { event: ev.index, pcr: ev.pcr } : {}), message: ev ? `PCR ${ev.pcr} event ${ev.index}: ${message}` : message });
  const error = (ev: TcgEvent | undefined, code: string, message: string) =>
    st.errors.push({ code, ...(ev ? { event: ev.index, pcr: ev.pcr } : {}), message: ev ? `PCR ${ev.pcr} event ${ev.index}: ${message}` : message });

  const ebs = log.events.find((e) => e.type === EV_EFI_ACTION && textOf(e) === EXIT_BOOT_SERVICES);
  st.exitBootServices = ebs?.index;
  if (!ebs) warn(undefined, 'NO_EXIT_BOOT_SERVICES', `no "${EXIT_BOOT_SERVICES}" event: boot-path events are taken up to the end of the log`);
  const late = (ev: TcgEvent) => ebs !== undefined && ev.index > ebs.index;
  const seenVars = new Set<string>();
  let grubKernelCmdline = false;
  const oddSeparators: number[] = [];
  let sbEvent: TcgEvent | undefined;

  for (const ev of log.events) {
    if (ev.type === EV_NO_ACTION || ev.decoded.kind === 'spec-id') continue;
    const sepSeen = st.separators[ev.pcr] !== undefined;
    const text = textOf(ev);

    if (ev.type === EV_SEPARATOR) {
      if (!sepSeen) st.separators[ev.pcr] = ev.index;
      else if (ev.pcr <= 7) error(ev, 'DUPLICATE_SEPARATOR', `second separator (the first is event ${st.separators[ev.pcr]})`);
      else warn(ev, 'DUPLICATE_SEPARATOR', `second separator (the first is event ${st.separators[ev.pcr]})`);
      if (ev.decoded.kind === 'separator' && ev.decoded.value !== 'zero' && ev.pcr <= 7) oddSeparators.push(ev.index);
      continue;
    }
    // Bad-news actions count wherever they are: they can only make things worse (PFP §3.3.4.8).
    if (ev.type === EV_EFI_ACTION && text === UEFI_DEBUG_MODE) { st.debugMode.push(ev.index); continue; }
    if (ev.type === EV_EFI_ACTION && text === DMA_PROTECTION_DISABLED) { st.dmaProtectionDisabled.push(ev.index); continue; }

    switch (ev.pcr) {
      case 0: {
        if (sepSeen) { warn(ev, 'AFTER_SEPARATOR', `${ev.typeName} after PCR 0's separator is ignored`); break; }
        st.firmware.events.push(measurement(ev));
        if (ev.type === EV_S_CRTM_VERSION) {
          st.firmware.crtmVersions.push({ event: ev.index, text: crtmVersionText(ev.data) });
        }
        break;
      }
      case 2:
        if (ev.type === EV_EFI_BOOT_SERVICES_DRIVER || ev.type === EV_EFI_RUNTIME_SERVICES_DRIVER) {
          if (sepSeen) warn(ev, 'AFTER_SEPARATOR', `driver load after PCR 2's separator is ignored`);
          else st.drivers.push(measurement(ev));
        }
        break;
      case 4:
        if (ev.type !== EV_EFI_BOOT_SERVICES_APPLICATION) break;
        if (late(ev)) { warn(ev, 'AFTER_EXIT_BOOT_SERVICES', 'EFI application after ExitBootServices is ignored'); break; }
        st.apps.push({
          event: ev.index,
          role: 'application',
          ...(ev.decoded.kind === 'efi-image' && ev.decoded.filePath ? { path: ev.decoded.filePath } : {}),
          devicePath: ev.decoded.kind === 'efi-image' ? ev.decoded.devicePath : '',
          digests: digestsOf(ev),
          beforeSeparator: !sepSeen,
        });
        break;
      case 7:
        pcr7(ev, sepSeen);
        break;
      case 8:
      case 9:
      case 12:
        if (late(ev)) { warn(ev, 'AFTER_EXIT_BOOT_SERVICES', `${ev.typeName} after ExitBootServices is ignored`); break; }
        bootPath(ev, text);
        if (ev.pcr === 12) st.pcr12.push(measurement(ev));
        break;
      case 11:
        if (late(ev)) warn(ev, 'AFTER_EXIT_BOOT_SERVICES', `${ev.typeName} after ExitBootServices is ignored`);
        else st.stubSections.push(measurement(ev));
        break;
      case 14:
        if (late(ev)) { warn(ev, 'AFTER_EXIT_BOOT_SERVICES', `${ev.typeName} after ExitBootServices is ignored`); break; }
        if (text === 'MokList' || text === 'MokListX' || text === 'MokListTrusted') st.mok[text] = measurement(ev);
        break;
    }
  }

  function pcr7(ev: TcgEvent, sepSeen: boolean): void {
    const d = ev.decoded;
    if (ev.type === EV_EFI_VARIABLE_DRIVER_CONFIG) {
      if (d.kind !== 'efi-variable') { error(ev, 'BAD_VARIABLE', 'Secure Boot variable event could not be decoded'); return; }
      if (sepSeen) { error(ev, 'VARIABLE_AFTER_SEPARATOR', `variable ${d.name} measured after PCR 7's separator`); return; }
      if (seenVars.has(d.name)) { error(ev, 'DUPLICATE_VARIABLE', `variable ${d.name} measured twice`); return; }
      seenVars.add(d.name);
      if (ev.digestCheck === 'mismatch') { error(ev, 'DIGEST_MISMATCH', `variable ${d.name}: digest is not the hash of the event data`); return; }
      switch (d.name) {
        case 'SecureBoot':
          sbEvent = ev;
          st.secureBoot = { enabled: d.data.length === 1 && d.data[0] === 1, event: ev.index, value: hex(d.data) };
          if (d.data.length === 0) warn(ev, 'SECUREBOOT_EMPTY', 'SecureBoot variable has no data (absent): Secure Boot is off');
          else if (d.data.length !== 1 || d.data[0] > 1) error(ev, 'BAD_SECUREBOOT', `SecureBoot variable is ${hex(d.data)}, expected 00 or 01`);
          break;
        case 'PK':
        case 'KEK':
        case 'db':
        case 'dbx':
          st[d.name] = { event: ev.index, dataSha256: sha256(d.data), entries: signatureEntries(d.signatureLists) };
          break;
        case 'SetupMode':
          st.setupMode = { enabled: d.data.length === 1 && d.data[0] === 1, event: ev.index };
          break;
        default:
          st.otherVariables[d.name] = { event: ev.index, data: hex(d.data) };
      }
      return;
    }
    if (ev.type === EV_EFI_VARIABLE_AUTHORITY) {
      if (late(ev)) { warn(ev, 'AFTER_EXIT_BOOT_SERVICES', 'authority after ExitBootServices is ignored'); return; }
      if (d.kind !== 'efi-variable') { error(ev, 'BAD_VARIABLE', 'authority event could not be decoded'); return; }
      // shim before 15.3 appended one stray byte to the event (go-attestation issue 157).
      if (ev.digestCheck === 'mismatch' && !digestIsHashOf(ev, ev.data.subarray(0, ev.data.length - 1))) {
        error(ev, 'DIGEST_MISMATCH', `authority ${d.name}: digest is not the hash of the event data`);
        return;
      }
      if (d.name === 'SbatLevel') { st.mok.SbatLevel = { event: ev.index, text: stripNul(d.data.toString('latin1')).trim() }; return; }
      if (d.name === 'MokListTrusted') { st.mok.MokListTrustedPcr7 = measurement(ev); return; }
      const a = d.authority;
      st.authorities.push({
        event: ev.index,
        variable: d.name,
        sha256: sha256(a ? a.data : d.data),
        ...(a?.subject ? { subject: a.subject } : {}),
        beforeSeparator: !sepSeen,
      });
      return;
    }
    if (ev.type === EV_EFI_ACTION) warn(ev, 'UNEXPECTED_EVENT', `unexpected EFI action "${textOf(ev)}" in PCR 7`);
    else warn(ev, 'UNEXPECTED_EVENT', `unexpected ${ev.typeName} in PCR 7`);
  }

  function bootPath(ev: TcgEvent, text: string | undefined): void {
    const d = ev.decoded;
    if (ev.type === EV_IPL && d.kind === 'ipl' && d.encoding === 'ascii' && text !== undefined && ev.pcr === 8) {
      const g = grubCmdline(ev, text);
      if (!g) return;
      if (!g.verified) { error(ev, 'TEXT_MISMATCH', `grub command line "${g.text}" does not match the event digest`); return; }
      st.cmdlines.push({ event: ev.index, pcr: ev.pcr, source: 'grub', text: g.text, digests: digestsOf(ev) });
      if (text.startsWith('kernel_cmdline: ')) grubKernelCmdline = true;
      return;
    }
    if (ev.type === EV_IPL && d.kind === 'ipl' && d.encoding === 'utf16le' && text !== undefined) {
      // systemd-boot / systemd-stub: the kernel command line as UCS-2 (PCR 12; PCR 8 or 9 before systemd 251).
      if (!digestIsHashOf(ev, ev.data)) { error(ev, 'TEXT_MISMATCH', `command line "${text}" does not match the event digest`); return; }
      st.cmdlines.push({ event: ev.index, pcr: ev.pcr, source: 'systemd', text: text.trim(), digests: digestsOf(ev) });
      return;
    }
    if (ev.type === EV_EVENT_TAG && d.kind === 'event-tag' && ev.pcr === 9) {
      if (d.tagId === LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID) {
        // The digest is of the load options; the data is only a description (efi_measure_tagged_event).
        st.cmdlines.push({ event: ev.index, pcr: ev.pcr, source: 'linux-efi-stub', digests: digestsOf(ev) });
      } else if (d.tagId === LINUX_EFI_INITRD_EVENT_TAG_ID) {
        st.initrds.push({ ...measurement(ev), description: 'initrd (Linux EFI stub)' });
      }
      return;
    }
    if (ev.type === EV_IPL && ev.pcr === 9 && text !== undefined) {
      const m = measurement(ev);
      st.grubFiles.push(m);
      if (/initrd|initramfs/i.test(text)) st.initrds.push(m);
    }
  }

  if (oddSeparators.length) warn(undefined, 'SEPARATOR_VALUE', `separators that are not zero (events ${oddSeparators.join(', ')})`);
  // grub logs "grub_cmd: linux ..." and then "kernel_cmdline: ..." for the same line: keep the latter.
  if (grubKernelCmdline) st.cmdlines = st.cmdlines.filter((c) => c.source !== 'grub' || !/^grub_cmd/.test(textOf(log.events.find((e) => e.index === c.event)!) ?? ''));
  // The EFI stub's load options are known when another verified command line has the same digest.
  for (const c of st.cmdlines) {
    if (c.text !== undefined) continue;
    const twin = st.cmdlines.find((o) => o.text !== undefined && Object.entries(c.digests).every(([b, d]) => o.digests[b as BankName] === d));
    if (twin) c.text = twin.text;
  }
  const hasShimEvents = st.mok.MokList !== undefined || st.mok.SbatLevel !== undefined || st.authorities.some((a) => a.variable === 'Shim' || a.variable === 'MokList');
  classify(st.apps, hasShimEvents);
  // systemd-stub measures its PE sections to PCR 11 before loading the kernel: the app before them is a UKI.
  for (const [i, a] of st.apps.entries()) {
    const next = st.apps[i + 1]?.event ?? Infinity;
    if (a.role !== 'shim' && st.stubSections.some((m) => m.event > a.event && m.event < next && /^\.(linux|cmdline|osrel|uname)$/.test(m.description))) a.role = 'uki';
  }

  if (st.secureBoot.enabled) {
    if (!st.authorities.length) warn(sbEvent, 'SB_NO_AUTHORITY', 'Secure Boot is on but no EV_EFI_VARIABLE_AUTHORITY event says which key verified the boot');
    if (!st.PK) warn(sbEvent, 'SB_NO_PK', 'Secure Boot is on but PK was not measured');
    if (!st.KEK) warn(sbEvent, 'SB_NO_KEK', 'Secure Boot is on but KEK was not measured');
    if (!st.db) error(sbEvent, 'SB_NO_DB', 'Secure Boot is on but db was not measured');
  }
  for (let p = 0; p <= 7; p++) {
    if (st.separators[p] === undefined && log.events.some((e) => e.pcr === p && e.type !== EV_NO_ACTION)) warn(undefined, 'NO_SEPARATOR', `PCR ${p} has no separator`);
  }
  return st;
}
