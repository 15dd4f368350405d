/**
 * Staging the next boot (issue 11 §2): the event log the next boot will make, predicted from the
 * current boot's log and the measurements of the files an update installs, and the policy change
 * that allows it.
 *
 *   current EventLog + PartMeasurements ──applyMeasurements──▶ PredictedBoot (plain JSON)
 *   PredictedBoot ──predictedLogBytes──▶ a TCG event log ──parseEventLog──▶ unverifiedLog
 *   Policy + PredictedBoot ──stageBoot──▶ Policy (addBoot of that log: one more alternative)
 *
 * Trust: a PredictedBoot is a CLAIM, like an operator's log file for `policy add-boot`: it is
 * never bound to a quote (there is no quote of a boot that has not happened). Staging it widens
 * the policy by exactly what addBoot would add for that log, with addBoot's refusals (Secure Boot
 * downgrade, dbx rollback, debug boot, no command line). At boot, the real log is bound to the
 * quote and checked as always: a wrong prediction only makes that boot fail. Who may stage what
 * is decided above this module: an operator (`bootkey policy stage`), or the server for a machine,
 * where a stage's `signedBy` rule requires each new PCR 4 digest to be covered by an Authenticode
 * signature chaining to a listed certificate (src/efi/signed-by.ts, `checkStagedSignature`),
 * checked at staging time: the quote at boot carries digests only, never signatures.
 *
 * This module computes no file digest: src/efi/predict.ts turns files into PartMeasurements
 * (Authenticode digests, UKI sections); a server can take the same measurements from a request.
 * Pure.
 *
 * What is replaced (the current log's other events are kept, in their order):
 * - PCR 4: the image event of each given stage (shim, boot loader, UKI, kernel), located by the
 *   role analyseBoot gives it; for a UKI also the embedded kernel's event (VenMedia) that follows
 *   it when the current boot has one. The image length in the event data is updated; the load
 *   address (not covered by the digest) is kept.
 * - PCR 11 (UKI): every systemd-stub section EV_IPL pair, replaced by the new UKI's.
 * - PCR 9: the Linux EFI stub's LoadOptions tag (the command line as the loader passes it, in the
 *   encoding that matched the current boot) and its initrd tag (the initrd's bytes); GRUB's file
 *   events of the kernel and initrd paths.
 * - PCR 12: systemd-stub's / systemd-boot's command line event; PCR 8: GRUB's `linux` command and
 *   `kernel_cmdline` events (kernel path and command line).
 * Not predictable from files (listed in `notes` when they apply): GRUB's grub.cfg and other
 * commands (PCR 8/9 values; the policy reads only the command line there), a shim's SbatLevel
 * and vendor-certificate authority events (PCR 7), firmware (PCR 0/2), dbx updates (PCR 7).
 * @module
 */
import { createHash } from 'node:crypto';
import { BANK_HASH, BANK_SIZE, isBankName, type BankName } from '../pcrs.ts';
import { BootkeyError } from '../errors.ts';
import { parseEventLog } from './eventlog.ts';
import { replay } from './replay.ts';
import { unverifiedLog } from './trusted.ts';
import { analyseBoot, LINUX_EFI_INITRD_EVENT_TAG_ID, type AppRole, type BootApp, type Digests } from './bootstate.ts';
import { recognizeCmdline, expectedMeasuredBytes, matchExpectedCmdline } from './cmdline.ts';
import { eventTypeName, EV_EFI_BOOT_SERVICES_APPLICATION, EV_EVENT_TAG, EV_IPL, EV_NO_ACTION } from './eventtypes.ts';
import { addBoot, policyPcrs, type AddBootOptions, type Policy, type StagedBoot } from './policy.ts';
import type { EventLog, TcgEvent } from './types.ts';

export type StageErrorCode =
  | 'NO_STAGE' // the current boot has no event for a part (e.g. --uki on a grub boot)
  | 'UNSUPPORTED' // a legacy (SHA-1 only) log, a bank node:crypto cannot compute
  | 'UNPREDICTABLE' // an event the policy reads cannot be predicted (an unknown LoadOptions encoding)
  | 'BAD_PARTS' // measurements lacking a bank, inconsistent parts
  | 'BAD_PREDICTION'; // a PredictedBoot (JSON from a file or a request) that is malformed

/** The error of this module (`layer: 'stage'`). */
export class StageError extends BootkeyError {
  readonly layer = 'stage';
  constructor(code: StageErrorCode, message: string) {
    super(code, message);
  }
}

/** Digests of one PE image (its Authenticode hash per bank), hex. */
export interface ImageMeasurement {
  digests: Digests;
  /** File size: firmware logs it as the image length (display only). */
  size?: number;
  /** Authenticode PKCS#7 SignedData blobs of the file (hex), for signed-by staging. */
  pkcs7?: string[];
}

/** One EV_IPL event systemd-stub logs in PCR 11. */
export interface SectionEvent {
  section: string;
  kind: 'name' | 'data';
  digests: Digests;
}

/** What the files of an update measure to, per part (src/efi/predict.ts measureParts). All optional. */
export interface PartMeasurements {
  shim?: ImageMeasurement;
  bootloader?: ImageMeasurement;
  uki?: ImageMeasurement & {
    /** The embedded `.linux` kernel's Authenticode digests (PCR 4, VenMedia). */
    kernel: ImageMeasurement;
    /** PCR 11 events, in order. */
    pcr11: SectionEvent[];
    /** The `.cmdline` section's text, when present. */
    cmdline?: string;
    /** Digests of the `.initrd` section's bytes (what the kernel measures in PCR 9), when present. */
    initrd?: Digests;
  };
  /** A kernel loaded from a file (GRUB, systemd-boot type #1): `file` = plain hash of its bytes (GRUB's PCR 9). */
  kernel?: ImageMeasurement & { file: Digests; path?: string };
  /** An initrd loaded from a file: the hash of its bytes. */
  initrd?: { file: Digests };
  /** The command line exactly as the loader passes it (systemd-boot: with its `initrd=` prefix; GRUB: the arguments after the kernel path). */
  cmdline?: string;
}

/** What changed an event of the prediction. */
export type ChangedBy = 'shim' | 'bootloader' | 'uki' | 'kernel' | 'initrd' | 'cmdline';

/** One event of a predicted boot (plain JSON). */
export interface PredictedEvent {
  pcr: number;
  type: number;
  typeName: string;
  /** One digest per bank of the log, lowercase hex. */
  digests: Digests;
  /** The event data, hex. */
  data: string;
  description: string;
  /** The part this event was recomputed from (its digest may be the same); absent: the current boot's event, kept. */
  changed?: ChangedBy;
}

/** The predicted next boot: plain JSON, so that it can be printed, stored and sent. */
export interface PredictedBoot {
  format: 'bootkey-predicted-boot';
  version: 1;
  banks: BankName[];
  /** The Spec ID event data of the current log (hex), kept for the log's header. */
  specId: string;
  events: PredictedEvent[];
  /** The replayed PCR values, bank → PCR (decimal string) → hex, for PCRs 0–23. */
  pcrs: Partial<Record<BankName, Record<string, string>>>;
  /** PCRs whose value differs from the current boot's. */
  changedPcrs: number[];
  /** The new PCR 4 images, in boot order, with their roles (what signed-by rules check). */
  images: { role: AppRole; digests: Digests; pkcs7?: string[] }[];
  /** What could not be predicted, or was predicted under an assumption. */
  notes: string[];
}

interface Work {
  pcr: number;
  type: number;
  digests: Map<BankName, Buffer>;
  data: Buffer;
  src?: TcgEvent;
  changed?: ChangedBy;
}

const hex = (b: Buffer) => b.toString('hex');

function hashAll(banks: readonly BankName[], bytes: Buffer): Map<BankName, Buffer> {
  return new Map(banks.map((b) => [b, createHash(BANK_HASH[b]).update(bytes).digest()]));
}

function fromHex(banks: readonly BankName[], d: Digests, what: string): Map<BankName, Buffer> {
  const out = new Map<BankName, Buffer>();
  for (const b of banks) {
    const h = Object.hasOwn(d, b) ? d[b] : undefined;
    if (typeof h !== 'string' || !/^[0-9a-f]*$/.test(h) || h.length !== BANK_SIZE[b] * 2) throw new StageError('BAD_PARTS', `${what}: no ${b} digest (the current log has banks ${banks.join(', ')})`);
    out.set(b, Buffer.from(h, 'hex'));
  }
  return out;
}

function asciiz(b: Buffer): string | undefined {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  const s = b.toString('latin1', 0, end);
  return /^[\x20-\x7e]*$/.test(s) ? s : undefined;
}

function describe(w: Work): string {
  try {
    if (w.type === EV_IPL) {
      if (w.data.length >= 2 && w.data[1] === 0) return w.data.toString('utf16le').replace(/\0[\s\S]*$/, '');
      return asciiz(w.data) ?? `${w.data.length} bytes`;
    }
    if (w.type === EV_EVENT_TAG && w.data.length >= 8) {
      return `tag 0x${w.data.readUInt32LE(0).toString(16)} ${asciiz(w.data.subarray(8)) ?? ''}`.trim();
    }
    if (w.type === EV_EFI_BOOT_SERVICES_APPLICATION && w.src?.decoded.kind === 'efi-image') return w.src.decoded.filePath ?? w.src.decoded.devicePath;
    if (w.src) {
      const d = w.src.decoded;
      if (d.kind === 'string' || d.kind === 'ipl') return d.text.replace(/\0+$/, '');
      if (d.kind === 'efi-variable') return d.name;
      if (d.kind === 'separator') return `separator (${d.value})`;
    }
    return w.data.length ? `${w.data.length} bytes` : '';
  } catch {
    return '';
  }
}

/** UEFI_IMAGE_LOAD_EVENT with ImageLengthInMemory set to `size` (bytes 8–15). */
function withImageLength(data: Buffer, size: number | undefined): Buffer {
  if (size === undefined || data.length < 32) return data;
  const out = Buffer.from(data);
  out.writeBigUInt64LE(BigInt(size), 8);
  return out;
}

/**
 * The predicted next boot: the current log with the events of the given parts replaced.
 * @throws StageError NO_STAGE (a part with no place in the current boot), UNSUPPORTED,
 *   UNPREDICTABLE (a command line encoding not recognised), BAD_PARTS
 */
export function applyMeasurements(current: EventLog, m: PartMeasurements): PredictedBoot {
  if (current.format !== 'crypto-agile' || !current.specId) throw new StageError('UNSUPPORTED', 'the current event log is in the SHA-1-only legacy format: predicting needs a crypto-agile log');
  const banks = current.banks;
  for (const b of banks) if (b === 'sm3_256') throw new StageError('UNSUPPORTED', 'the current log has an sm3_256 bank, which bootkey cannot compute digests in');
  if (m.uki && m.kernel) throw new StageError('BAD_PARTS', 'give either a UKI or a kernel, not both (a UKI carries its kernel)');
  const header = current.events[0];
  const notes: string[] = [];
  const work: Work[] = current.events.filter((e) => e.decoded.kind !== 'spec-id').map((e) => ({ pcr: e.pcr, type: e.type, digests: e.digests, data: e.data, src: e }));
  const st = analyseBoot(unverifiedLog(current));
  const at = (index: number) => work.findIndex((w) => w.src?.index === index);
  const images: PredictedBoot['images'] = [];

  const replaceImage = (app: BootApp, img: ImageMeasurement, by: ChangedBy, role: AppRole, what: string) => {
    const i = at(app.event);
    work[i] = { ...work[i], digests: fromHex(banks, img.digests, what), data: withImageLength(work[i].data, img.size), changed: by };
    images.push({ role, digests: img.digests, ...(img.pkcs7?.length ? { pkcs7: img.pkcs7 } : {}) });
  };
  const roleApp = (role: AppRole, what: string): BootApp => {
    const a = st.apps.find((x) => x.role === role);
    if (!a) {
      throw new StageError('NO_STAGE', `the current boot loaded no ${what} (PCR 4 has ${st.apps.map((x) => `${x.role} ${x.path ?? x.devicePath}`).join(', ') || 'no EFI application'}): a change of the boot's structure cannot be predicted; stage it with \`bootkey policy add-boot\` after a supervised reboot`);
    }
    return a;
  };

  if (m.shim) {
    replaceImage(roleApp('shim', 'shim'), m.shim, 'shim', 'shim', 'shim');
    notes.push('shim: its Authenticode digest (PCR 4) is predicted; a new shim that changes SbatLevel or its vendor certificate changes PCR 7 events that are not predicted (then: add-boot after a supervised reboot)');
  }
  if (m.bootloader) replaceImage(roleApp('bootloader', 'boot loader'), m.bootloader, 'bootloader', 'bootloader', 'boot loader');

  // The command line the kernel will receive, and where the current boot logged it.
  const cmdEvents = work.map((w, i) => ({ w, i, c: w.src && (w.pcr === 8 || w.pcr === 12) ? recognizeCmdline(w.src) : undefined })).filter((x) => x.c && x.c.verified && x.c.text !== undefined);
  const pcr12 = cmdEvents.filter((x) => x.c!.form === 'systemd-stub-pcr12');
  const grubCmds = cmdEvents.filter((x) => x.c!.source === 'grub');
  const loadOptionsIdx = work.findIndex((w) => w.pcr === 9 && w.type === EV_EVENT_TAG && w.src && recognizeCmdline(w.src)?.form === 'linux-efi-stub-loadoptions');
  const initrdTagIdx = work.findIndex((w) => w.pcr === 9 && w.type === EV_EVENT_TAG && w.data.length >= 8 && w.data.readUInt32LE(0) === LINUX_EFI_INITRD_EVENT_TAG_ID);
  /** The text the current boot's LoadOptions were made from: a logged command line. */
  const currentText = pcr12[0]?.c!.text ?? grubCmds.find((x) => /kernel_cmdline/.test(x.c!.form))?.c!.text ?? grubCmds[0]?.c!.text;

  /** Sets the LoadOptions tag to `text` in the encoding that matched the current boot's (or `fallback`). */
  const setLoadOptions = (text: string, by: ChangedBy, fallback?: number) => {
    if (loadOptionsIdx < 0) return;
    const w = work[loadOptionsIdx];
    const form = 'linux-efi-stub-loadoptions';
    let k = -1;
    if (currentText !== undefined) {
      const hit = matchExpectedCmdline(w, form, currentText);
      if (hit) k = expectedMeasuredBytes(form, currentText).findIndex((b) => b.equals(hit));
    }
    if (k < 0) k = fallback ?? -1;
    if (k < 0) throw new StageError('UNPREDICTABLE', `PCR 9 event ${w.src?.index}: the current LoadOptions digest is none of the known encodings of the current command line${currentText === undefined ? ' (no command line is logged as text)' : ` ${JSON.stringify(currentText)}`}, so the new one cannot be predicted`);
    work[loadOptionsIdx] = { ...w, digests: hashAll(banks, expectedMeasuredBytes(form, text)[k]), changed: by };
  };

  if (m.uki) {
    const u = m.uki;
    const app = roleApp('uki', 'unified kernel image');
    replaceImage(app, u, 'uki', 'uki', 'UKI');
    const next = st.apps[st.apps.indexOf(app) + 1];
    if (next && next.role === 'kernel' && !next.path) replaceImage(next, u.kernel, 'uki', 'kernel', 'UKI kernel');
    else notes.push('the current boot has no PCR 4 event for the UKI\'s embedded kernel (systemd-stub < 254 under Secure Boot): none is predicted');
    // PCR 11: the stub's section events, replaced as a block.
    const old = work.map((w, i) => (w.pcr === 11 && w.type === EV_IPL ? i : -1)).filter((i) => i >= 0);
    const pos = old.length ? old[0] : at(app.event) + 1;
    const fresh: Work[] = u.pcr11.map((s) => ({ pcr: 11, type: EV_IPL, digests: fromHex(banks, s.digests, `PCR 11 ${s.section} ${s.kind}`), data: Buffer.from(s.section + '\0', 'utf16le'), changed: 'uki' as const }));
    for (const i of [...old].reverse()) work.splice(i, 1);
    work.splice(pos, 0, ...fresh);
    // The command line: the loader's (PCR 12) when it passes one, else the UKI's .cmdline.
    let text = u.cmdline;
    if (m.cmdline !== undefined) text = m.cmdline;
    else if (pcr12.length) {
      text = pcr12[0].c!.text;
      notes.push(`the loader passed a command line in the current boot (PCR 12): predicted to pass the same one, ${JSON.stringify(text)}`);
    }
    if (m.cmdline !== undefined) setPcr12(work, banks, m.cmdline, pcr12.map((x) => x.w), pos + fresh.length);
    if (text !== undefined) setLoadOptions(text, m.cmdline !== undefined ? 'cmdline' : 'uki', 0);
    else if (loadOptionsIdx >= 0) notes.push('the UKI has no .cmdline and no command line was given: PCR 9 LoadOptions kept as in the current boot');
    if (initrdTagIdx >= 0) {
      if (u.initrd) work[initrdTagIdx] = { ...work[initrdTagIdx], digests: fromHex(banks, u.initrd, 'UKI .initrd'), changed: 'uki' };
      else notes.push('the UKI has no .initrd: the current boot\'s PCR 9 initrd event is kept');
    }
  } else {
    // A kernel from a file, its initrd, and the loader's command line.
    const grubLinux = grubCmds.find((x) => x.c!.form.endsWith('grub_cmd'));
    const oldPath = grubLinux?.c!.kernelPath;
    const newPath = m.kernel?.path ?? oldPath;
    if (m.kernel) {
      const k = st.apps.find((a) => a.role === 'kernel' && a.path) ?? st.apps.find((a) => a.role === 'kernel');
      if (k) {
        const prev = st.apps[st.apps.indexOf(k) - 1];
        if (prev?.role === 'uki') throw new StageError('NO_STAGE', 'the current boot\'s kernel is the one embedded in a UKI: stage the new UKI (--uki), not a kernel');
        replaceImage(k, m.kernel, 'kernel', 'kernel', 'kernel');
      } else if (oldPath) {
        notes.push('the current boot has no PCR 4 event for the kernel (GRUB loaded it itself, without LoadImage): none is predicted');
      } else roleApp('kernel', 'kernel');
      // GRUB reads the kernel file, and measures its bytes in PCR 9 under its path.
      if (oldPath) replaceFileEvent(work, banks, oldPath, newPath!, m.kernel.file, 'kernel', notes);
    }
    if (m.initrd) {
      if (initrdTagIdx >= 0) work[initrdTagIdx] = { ...work[initrdTagIdx], digests: fromHex(banks, m.initrd.file, 'initrd'), changed: 'initrd' };
      for (const x of grubCmds.length ? work.filter((w) => w.pcr === 8 && w.type === EV_IPL && /^grub_cmd:? initrd(efi|16)? /.test(w.data.toString('latin1'))) : []) {
        const path = /^grub_cmd:? initrd\S* (\S+)/.exec(x.data.toString('latin1'))?.[1];
        if (path) replaceFileEvent(work, banks, path, path, m.initrd.file, 'initrd', notes);
      }
      if (initrdTagIdx < 0 && !grubCmds.length) notes.push('the current boot has no initrd measurement (PCR 9): the initrd is not predicted');
    }
    const args = m.cmdline;
    if (args !== undefined || newPath !== oldPath) {
      if (grubCmds.length) {
        for (const x of grubCmds) {
          const newText = `${newPath} ${args ?? x.c!.args ?? ''}`.trimEnd();
          const oldText = x.c!.text!;
          const by: ChangedBy = args !== undefined ? 'cmdline' : 'kernel';
          const data = Buffer.from(x.w.data.toString('utf8').replace(oldText, newText), 'utf8');
          const measured = Buffer.from(x.c!.measured!.toString('utf8').replace(oldText, newText), 'utf8');
          work[x.i] = { ...x.w, data, digests: hashAll(banks, measured), changed: by };
        }
        setLoadOptions(`${newPath} ${args ?? grubCmds[0].c!.args ?? ''}`.trimEnd(), args !== undefined ? 'cmdline' : 'kernel');
        notes.push('GRUB: the kernel command line and kernel path (PCR 8) are predicted; grub.cfg and GRUB\'s other commands (PCR 8/9 values) are not: a policy reads only the command line there');
      } else if (args !== undefined) {
        if (pcr12.length) setPcr12(work, banks, args, pcr12.map((x) => x.w), -1);
        if (loadOptionsIdx < 0 && !pcr12.length) throw new StageError('NO_STAGE', 'the current boot measured no command line its loader passes (no PCR 12 event, no PCR 9 LoadOptions, no GRUB PCR 8 event): a command line cannot be predicted');
        setLoadOptions(args, 'cmdline', 0);
      }
    }
  }
  return finish(current, header, work, banks, images, notes);
}

/** Replaces (or, at `insertAt` ≥ 0, inserts) systemd's PCR 12 command line event. */
function setPcr12(work: Work[], banks: BankName[], text: string, old: Work[], insertAt: number): void {
  const data = Buffer.from(text + '\0', 'utf16le');
  const ev: Work = { pcr: 12, type: EV_IPL, data, digests: hashAll(banks, data), changed: 'cmdline' };
  if (old.length) {
    for (const o of old) {
      const i = work.indexOf(o);
      // Keep the encoding the current event used (with or without the UTF-16 NUL).
      const noNul = o.src && recognizeCmdline(o.src)?.note?.includes('without its NUL');
      work[i] = { ...ev, digests: noNul ? hashAll(banks, Buffer.from(text, 'utf16le')) : ev.digests };
    }
  } else if (insertAt >= 0) work.splice(insertAt, 0, ev);
}

/** GRUB's PCR 9 measurement of a file it read: EV_IPL, data = the path, digest = the file's bytes. */
function replaceFileEvent(work: Work[], banks: BankName[], oldPath: string, newPath: string, file: Digests, by: ChangedBy, notes: string[]): void {
  const strip = (p: string) => p.replace(/^\([^)]*\)/, '');
  const i = work.findIndex((w) => w.pcr === 9 && w.type === EV_IPL && (() => {
    const t = asciiz(w.data);
    return t !== undefined && (t === oldPath || strip(t) === strip(oldPath) || t.endsWith(strip(oldPath)));
  })());
  if (i < 0) {
    notes.push(`GRUB: no PCR 9 file event for ${oldPath}: not predicted`);
    return;
  }
  const t = asciiz(work[i].data)!;
  const path = t === oldPath ? newPath : t.slice(0, t.length - strip(oldPath).length) + strip(newPath);
  const nul = work[i].data[work[i].data.length - 1] === 0;
  work[i] = { ...work[i], data: Buffer.from(path + (nul ? '\0' : ''), 'latin1'), digests: fromHex(banks, file, `${by} file`), changed: by };
}

function finish(current: EventLog, header: TcgEvent, work: Work[], banks: BankName[], images: PredictedBoot['images'], notes: string[]): PredictedBoot {
  const events: PredictedEvent[] = work.map((w) => ({
    pcr: w.pcr,
    type: w.type,
    typeName: eventTypeName(w.type),
    digests: Object.fromEntries(banks.map((b) => [b, hex(w.digests.get(b) ?? Buffer.alloc(BANK_SIZE[b]))])),
    data: hex(w.data),
    description: describe(w),
    ...(w.changed ? { changed: w.changed } : {}),
  }));
  const p: PredictedBoot = { format: 'bootkey-predicted-boot', version: 1, banks: [...banks], specId: hex(header.data), events, pcrs: {}, changedPcrs: [], images, notes };
  const now = replay(predictedEventLog(p));
  const was = replay(current);
  const changed = new Set<number>();
  for (const b of banks) {
    const v: Record<string, string> = {};
    for (let pcr = 0; pcr <= 23; pcr++) {
      const x = now.get(b)?.get(pcr) ?? Buffer.alloc(BANK_SIZE[b], pcr >= 17 && pcr <= 22 ? 0xff : 0);
      v[String(pcr)] = hex(x);
      const y = was.get(b)?.get(pcr) ?? Buffer.alloc(BANK_SIZE[b], pcr >= 17 && pcr <= 22 ? 0xff : 0);
      if (!x.equals(y)) changed.add(pcr);
    }
    p.pcrs[b] = v;
  }
  p.changedPcrs = [...changed].sort((a, b) => a - b);
  return p;
}

const ALG_ID: Record<BankName, number> = { sha1: 0x0004, sha256: 0x000b, sha384: 0x000c, sha512: 0x000d, sm3_256: 0x0012 };

/**
 * The predicted boot as a crypto-agile TCG event log (TCG PC Client PFP §10.2): the current log's
 * Spec ID event, then each event as TCG_PCR_EVENT2. `bootkey eventlog show`, `policy add-boot`
 * and the parser read it like any log.
 */
export function predictedLogBytes(p: PredictedBoot): Buffer {
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };
  const u16 = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
  const spec = Buffer.from(p.specId, 'hex');
  const parts: Buffer[] = [u32(0), u32(EV_NO_ACTION), Buffer.alloc(20), u32(spec.length), spec];
  // Every algorithm of the Spec ID event gets a digest, in its order (unknown ones: zeros).
  const specIdLog = parseEventLog(Buffer.concat(parts));
  const algs = specIdLog.specId!.algorithms;
  for (const e of p.events) {
    const data = Buffer.from(e.data, 'hex');
    parts.push(u32(e.pcr), u32(e.type), u32(algs.length));
    for (const a of algs) {
      const d = a.name && Object.hasOwn(e.digests, a.name) ? Buffer.from(e.digests[a.name]!, 'hex') : Buffer.alloc(a.digestSize);
      parts.push(u16(a.algId), d.length === a.digestSize ? d : Buffer.alloc(a.digestSize));
    }
    parts.push(u32(data.length), data);
  }
  return Buffer.concat(parts);
}

/** The predicted boot as a parsed EventLog (through the same parser as any log). */
export function predictedEventLog(p: PredictedBoot): EventLog {
  return parseEventLog(predictedLogBytes(p));
}

/** Limits on a PredictedBoot read from a file or a request. */
export const MAX_PREDICTED_EVENTS = 4096;
const MAX_DATA_HEX = 2 * 1024 * 1024;

/**
 * Validates untrusted JSON as a PredictedBoot (bounded; own properties only). Its `pcrs` are
 * recomputed from its events, never taken from the input; `changedPcrs` (display only) are the
 * PCRs of the events marked `changed`.
 * @throws StageError BAD_PREDICTION naming the field
 */
export function parsePredictedBoot(input: unknown): PredictedBoot {
  const bad = (path: string, what: string): never => {
    throw new StageError('BAD_PREDICTION', `predicted boot: ${path}: ${what}`);
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(input)) bad('$', 'expected an object');
  const o = input as Record<string, unknown>;
  const get = (k: string) => (Object.hasOwn(o, k) ? o[k] : undefined);
  if (get('format') !== 'bootkey-predicted-boot' || get('version') !== 1) bad('format', 'expected format "bootkey-predicted-boot", version 1');
  const banksIn = get('banks');
  if (!Array.isArray(banksIn) || !banksIn.length || banksIn.length > 5) bad('banks', 'expected 1-5 bank names');
  const banks = (banksIn as unknown[]).map((b, i) => (typeof b === 'string' && isBankName(b) && b !== 'sm3_256' ? b : bad(`banks[${i}]`, `unknown or unsupported bank ${JSON.stringify(b)}`)));
  const specId = get('specId');
  if (typeof specId !== 'string' || specId.length > 4096 || !/^([0-9a-f]{2})+$/.test(specId)) bad('specId', 'expected hex');
  const evs = get('events');
  if (!Array.isArray(evs) || evs.length > MAX_PREDICTED_EVENTS) bad('events', `expected an array of at most ${MAX_PREDICTED_EVENTS} events`);
  let total = 0;
  /** One digest per bank of the prediction, each of its bank's size, as lowercase hex. */
  const readDigests = (digests: unknown, at: string): Digests => {
    if (!isObj(digests)) bad(at, 'expected an object');
    const d: Digests = {};
    for (const b of banks) {
      const v = Object.hasOwn(digests as object, b) ? (digests as Record<string, unknown>)[b] : undefined;
      if (typeof v !== 'string' || v.length !== BANK_SIZE[b] * 2 || !/^[0-9a-f]+$/.test(v)) bad(`${at}.${b}`, `expected a ${b} digest`);
      d[b] = v as string;
    }
    return d;
  };
  const events: PredictedEvent[] = (evs as unknown[]).map((e, i) => {
    const at = `events[${i}]`;
    if (!isObj(e)) bad(at, 'expected an object');
    const g = (k: string) => (Object.hasOwn(e as object, k) ? (e as Record<string, unknown>)[k] : undefined);
    const pcr = g('pcr'), type = g('type'), data = g('data'), digests = g('digests'), changed = g('changed');
    if (!Number.isInteger(pcr) || (pcr as number) < 0 || (pcr as number) > 0xffffffff) bad(`${at}.pcr`, 'expected a PCR index');
    if (!Number.isInteger(type) || (type as number) < 0 || (type as number) > 0xffffffff) bad(`${at}.type`, 'expected an event type');
    if (typeof data !== 'string' || !/^([0-9a-f]{2})*$/.test(data)) bad(`${at}.data`, 'expected hex');
    total += (data as string).length;
    if (total > MAX_DATA_HEX) bad(`${at}.data`, `event data beyond ${MAX_DATA_HEX / 2} bytes in all`);
    const d = readDigests(digests, `${at}.digests`);
    const CHANGED = ['shim', 'bootloader', 'uki', 'kernel', 'initrd', 'cmdline'];
    if (changed !== undefined && !CHANGED.includes(changed as string)) bad(`${at}.changed`, `expected one of ${CHANGED.join(', ')}`);
    const desc = g('description');
    return { pcr: pcr as number, type: type as number, typeName: eventTypeName(type as number), digests: d, data: data as string, description: typeof desc === 'string' ? desc.slice(0, 512) : '', ...(changed ? { changed: changed as ChangedBy } : {}) };
  });
  const imagesIn = get('images') ?? [];
  if (!Array.isArray(imagesIn) || imagesIn.length > 16) bad('images', 'expected at most 16 images');
  const ROLES: AppRole[] = ['shim', 'bootloader', 'uki', 'kernel', 'application'];
  const images = (imagesIn as unknown[]).map((x, i) => {
    const at = `images[${i}]`;
    if (!isObj(x)) bad(at, 'expected an object');
    const g = (k: string) => (Object.hasOwn(x as object, k) ? (x as Record<string, unknown>)[k] : undefined);
    const role = g('role'), digests = g('digests'), pkcs7 = g('pkcs7');
    if (!ROLES.includes(role as AppRole)) bad(`${at}.role`, `expected one of ${ROLES.join(', ')}`);
    const d = readDigests(digests, `${at}.digests`);
    if (pkcs7 !== undefined && (!Array.isArray(pkcs7) || pkcs7.length > 8 || !pkcs7.every((s) => typeof s === 'string' && s.length <= 2 << 20 && /^([0-9a-f]{2})+$/.test(s)))) bad(`${at}.pkcs7`, 'expected at most 8 hex strings of at most 1 MiB');
    return { role: role as AppRole, digests: d, ...(pkcs7 ? { pkcs7: pkcs7 as string[] } : {}) };
  });
  const notesIn = get('notes') ?? [];
  const notes = Array.isArray(notesIn) ? notesIn.filter((s): s is string => typeof s === 'string').slice(0, 32).map((s) => s.slice(0, 1024)) : [];
  const p: PredictedBoot = { format: 'bootkey-predicted-boot', version: 1, banks, specId: specId as string, events, pcrs: {}, changedPcrs: [], images, notes };
  let log: EventLog;
  try {
    log = predictedEventLog(p);
  } catch (e) {
    return bad('events', `do not make a valid event log: ${(e as Error).message}`);
  }
  if (log.banks.join() !== banks.join()) bad('banks', `the Spec ID event declares ${log.banks.join(', ')}`);
  const v = replay(log);
  // Display only: the PCRs of events marked changed (no current log to compare with here).
  p.changedPcrs = [...new Set(events.filter((e) => e.changed).map((e) => e.pcr))].sort((a, b) => a - b);
  for (const b of banks) p.pcrs[b] = Object.fromEntries(Array.from({ length: 24 }, (_, pcr) => [String(pcr), hex(v.get(b)?.get(pcr) ?? Buffer.alloc(BANK_SIZE[b], pcr >= 17 && pcr <= 22 ? 0xff : 0))]));
  return p;
}

export interface StageOptions extends AddBootOptions {
  /** A name for the staged boot (e.g. "kernel 6.1.0-57"), recorded in `policy.staged`. */
  label?: string;
  /** When it was staged (ISO 8601; the caller's clock: this module reads none). */
  at?: string;
}

/**
 * Adds a predicted boot to a policy as another allowed alternative: exactly what
 * {@link addBoot} adds for the predicted log (the union of the allowed values, the predicted
 * PCR values as known-good values, knownGoodRules recomputed), never replacing anything, with
 * addBoot's refusals (SECUREBOOT_DOWNGRADE, DBX_ROLLBACK, DEBUG_BOOT, NO_CMDLINE, BAD_LOG), and a
 * `staged` entry recording the label and what the staged boot is (its PCR 4 digests, command
 * lines and PCR values in the policy's bank), so that it can be listed and retired.
 * @throws PolicyError (addBoot's codes), StageError BAD_PREDICTION
 */
export function stageBoot(policy: Policy, predicted: PredictedBoot, opts: StageOptions = {}): Policy {
  const log = predictedEventLog(predicted);
  const tl = unverifiedLog(log);
  const { label, at, ...addOpts } = opts;
  const out = addBoot(policy, tl, addOpts);
  const bank = policy.bank;
  const st = analyseBoot(tl);
  const vals = predicted.pcrs[bank];
  const entry: StagedBoot = {
    ...(label !== undefined ? { label } : {}),
    ...(at !== undefined ? { at } : {}),
    apps: st.apps.map((a) => a.digests[bank] ?? ''),
    knownGood: Object.fromEntries(policyPcrs(out).filter((p) => vals && Object.hasOwn(vals, String(p))).map((p) => [String(p), vals![String(p)]])),
  };
  out.staged = [...(policy.staged ?? []), entry];
  return out;
}

/**
 * The PCR 4 images of a predicted boot that the policy does not allow yet, with the index of
 * the boot-chain stage they would be added to: what a signed-by rule must vouch for when a
 * machine stages for itself. An image beyond the policy's stages has `stage` -1.
 */
export function newStagedImages(policy: Policy, predicted: PredictedBoot): { stage: number; role: AppRole; digest: string; pkcs7?: string[] }[] {
  const bank = policy.bank;
  const st = analyseBoot(unverifiedLog(predictedEventLog(predicted)));
  const stages = policy.rules.bootChain?.stages ?? [];
  const out: { stage: number; role: AppRole; digest: string; pkcs7?: string[] }[] = [];
  st.apps.forEach((a, i) => {
    const d = a.digests[bank] ?? '';
    const s = stages[i];
    if (s && (s.allowAny || s.allowed.some((x) => x.digest === d))) return;
    const img = predicted.images.find((x) => x.digests[bank] === d);
    out.push({ stage: s ? i : -1, role: s?.role ?? a.role, digest: d, ...(img?.pkcs7 ? { pkcs7: img.pkcs7 } : {}) });
  });
  return out;
}

/** One value a policy change allows that the policy before did not (see {@link policyWidening}). */
export interface Widening {
  /** firmware, boot-chain, pre-boot, exit-boot-services, secure-boot, setup-mode, PK, KEK, db, dbx, authority, debug, kernel-cmdline, pcr-value, options. */
  rule: string;
  /** For boot-chain: the stage index and role. */
  stage?: number;
  role?: AppRole;
  /** The value now allowed (a digest, a command line, "off", ...). */
  value: string;
}

/**
 * Every way `after` allows more than `before` (pure; known-good values and `staged` metadata are
 * not rules and are not listed). A server that lets a machine stage for itself compares the policy
 * with `stageBoot`'s result and accepts only the widenings its permission covers: e.g. for
 * `signed-by`, only `boot-chain` digests, each vouched for by checkStagedSignature.
 */
export function policyWidening(before: Policy, after: Policy): Widening[] {
  const out: Widening[] = [];
  const b = before.rules, a = after.rules;
  const key = (x: unknown) => JSON.stringify(x);
  const fw = (f: { events: { digest: string }[] }) => key(f.events.map((e) => e.digest));
  if (before.bank !== after.bank || key(before.pcrs) !== key(after.pcrs) || (!before.options.allowAnyCmdline && after.options.allowAnyCmdline) || (!before.options.allowAnyKernel && after.options.allowAnyKernel)) {
    out.push({ rule: 'options', value: key({ bank: after.bank, pcrs: after.pcrs, options: after.options }) });
  }
  if (a.firmware) {
    if (!b.firmware) out.push({ rule: 'firmware', value: 'any (rule removed)' });
    else for (const f of a.firmware.allowed) if (!b.firmware.allowed.some((x) => fw(x) === fw(f))) out.push({ rule: 'firmware', value: f.crtmVersions.join(' / ') || fw(f) });
  } else if (b.firmware) out.push({ rule: 'firmware', value: 'any (rule removed)' });
  const bs = b.bootChain?.stages ?? [], as = a.bootChain?.stages ?? [];
  if (b.bootChain && !a.bootChain) out.push({ rule: 'boot-chain', value: 'any (rule removed)' });
  as.forEach((s, i) => {
    const o = bs[i];
    if (s.allowAny && !o?.allowAny) out.push({ rule: 'boot-chain', stage: i, role: s.role, value: 'any image' });
    if (s.optional && o && !o.optional) out.push({ rule: 'boot-chain', stage: i, role: s.role, value: 'stage may be skipped' });
    for (const d of s.allowed) if (!o?.allowed.some((x) => x.digest === d.digest)) out.push({ rule: 'boot-chain', stage: i, role: s.role, value: d.digest });
  });
  if (b.bootChain && a.bootChain) {
    const pre = (x: string[][] | undefined) => new Set((x ?? [[]]).map((y) => y.join(',')));
    const bp = pre(b.bootChain.preBoot);
    for (const p of pre(a.bootChain.preBoot)) if (!bp.has(p)) out.push({ rule: 'pre-boot', value: p || 'none' });
    if (b.bootChain.requireExitBootServices && !a.bootChain.requireExitBootServices) out.push({ rule: 'exit-boot-services', value: 'not required' });
  }
  if (b.secureBoot?.enabled && !a.secureBoot?.enabled) out.push({ rule: 'secure-boot', value: 'off' });
  if (b.secureBoot?.setupMode === false && a.secureBoot?.setupMode !== false) out.push({ rule: 'setup-mode', value: 'allowed' });
  for (const v of ['PK', 'KEK', 'db'] as const) {
    if (b.keys && !a.keys) { out.push({ rule: v, value: 'any (rule removed)' }); continue; }
    for (const k of a.keys?.[v] ?? []) if (b.keys && !b.keys[v].some((x) => x.sha256 === k.sha256)) out.push({ rule: v, value: k.sha256 });
  }
  if (b.keys && a.keys) for (const e of b.keys.dbxMustContain) if (!a.keys.dbxMustContain.includes(e)) out.push({ rule: 'dbx', value: `${e} no longer required` });
  if (b.authorities && !a.authorities) out.push({ rule: 'authority', value: 'any (rule removed)' });
  for (const x of a.authorities?.allowed ?? []) if (b.authorities && !b.authorities.allowed.some((y) => y.sha256 === x.sha256)) out.push({ rule: 'authority', value: x.sha256 });
  if (b.debug && (!a.debug || (!b.debug.allowUefiDebugMode && a.debug.allowUefiDebugMode) || (!b.debug.allowDmaProtectionDisabled && a.debug.allowDmaProtectionDisabled))) out.push({ rule: 'debug', value: key(a.debug ?? 'rule removed') });
  if (b.kernelCmdline && !a.kernelCmdline) out.push({ rule: 'kernel-cmdline', value: 'any (rule removed)' });
  for (const c of a.kernelCmdline?.allowed ?? []) if (b.kernelCmdline && !b.kernelCmdline.allowed.some((x) => key(x) === key(c))) out.push({ rule: 'kernel-cmdline', value: c.text ?? `${c.source} digest ${c.digest}` });
  for (const [p, vals] of Object.entries(a.pcrValues ?? {})) {
    const was = b.pcrValues && Object.hasOwn(b.pcrValues, p) ? b.pcrValues[p] : undefined;
    if (b.pcrValues && !was) continue; // a PCR the policy did not pin before: not a widening of a pin
    for (const v of vals) if (was && !was.includes(v)) out.push({ rule: 'pcr-value', value: `${p}:${v}` });
  }
  for (const p of Object.keys(b.pcrValues ?? {})) if (!a.pcrValues || !Object.hasOwn(a.pcrValues, p)) out.push({ rule: 'pcr-value', value: `${p}: any (pin removed)` });
  return out;
}
