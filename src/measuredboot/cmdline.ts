/**
 * Kernel command line measurements: which events of a TCG event log carry the kernel's command
 * line, and exactly which bytes their digest is the hash of. Pure; never throws.
 *
 * The event data of these events is a *description*: most writers hash a different byte string
 * than the one they log. So a command line shown to a policy is trusted only when the digest is
 * recomputed here from the text (`verified`), in every bank the event carries.
 *
 * ## Formats (decided by PCR, event type and content; each seen in a real log under test/data)
 *
 * | form | PCR | event data | digest = hash of | writer |
 * |---|---|---|---|---|
 * | `grub2-upstream-kernel_cmdline` | 8 | `"kernel_cmdline: " S "\0"` | S (no prefix, no NUL) | GRUB ≥ 2.04 grub-core/commands/tpm.c `grub_tpm_verify_string` (GRUB_VERIFY_KERNEL_CMDLINE, from grub_create_loader_cmdline in the linux/multiboot loaders); seen from Ubuntu 18.04–24.04, Debian 11, Fedora 35–42 and Fedora CoreOS 36, RHEL 9/CentOS Stream 9, COS; openSUSE's own predictor (pcr-oracle src/eventlog.c) knows only this form |
 * | `grub2-upstream-grub_cmd` | 8 | `"grub_cmd: linux " S "\0"` (also `linuxefi`, `linux16`) | `"linux " S` (the command, no prefix, no NUL) | same function, GRUB_VERIFY_COMMAND, called by grub-core/script/execute.c for every command |
 * | `rhel8-grub_kernel_cmdline` | 8 | `"grub_kernel_cmdline " S "\0"` | S (no prefix, no NUL) | Fedora's 0224-Rework-TPM-measurements.patch (rhboot grub2), in RHEL 8 and RHCOS 4.x logs: grub_create_loader_cmdline measures strlen(cmdline) |
 * | `rhel8-grub_cmd` | 8 | `"grub_cmd linux " S "\0"` (also `linuxefi`) | `"linux " S "\0"` (no prefix, **with** the NUL) | same patch, execute.c measures the command with its NUL |
 * | `systemd-stub-pcr12` | 12 | UTF-16LE text + UTF-16 NUL | the data itself (UTF-16LE with NUL; a digest over the text without the NUL, as docs/TPM2_PCR_MEASUREMENTS.md words it, is accepted too) | systemd ≥ 251 src/boot/efi/measure.c `tpm_log_load_options` (`strsize16`), from stub.c (passed cmdline, cmdline add-ons, SMBIOS cmdline) and from boot.c (systemd-boot, a type #1 entry's options); the two can log the same line twice (tpm2-tools' Fedora 37 sd-boot log) |
 * | `systemd-boot-pcr8-utf16` | 8 | UTF-16LE text, then either one stray 0x00 byte (odd length) or the UTF-16 NUL | UTF-16LE text + UTF-16 NUL (LoadOptions, LoadOptionsSize = StrSize) | systemd ≤ 250 boot.c/stub.c via measure.c, whose EFI_TCG2_EVENT size was `StrLen*2 + 1`; ≥ 251 only with `-Defi-tpm-pcr-compat` |
 * | `systemd-stub-pcr11-uki-cmdline` | 11 | UTF-16LE `".cmdline\0"` | the UKI's `.cmdline` section (not in the log) | systemd-stub PE section measurement; the preceding event with the same description hashes the ASCII name `".cmdline\0"` and is not a command line |
 * | `linux-efi-stub-loadoptions` | 9 | EV_EVENT_TAG 0x8F3B22ED "LOADED_IMAGE::LoadOptions" | the LoadOptions buffer the loader passed (not in the log) | Linux ≥ 6.1 drivers/firmware/efi/libstub/efi-stub-helper.c `efi_convert_cmdline` → `efi_measure_tagged_event` |
 *
 * For the last two forms the text is not in the log: `text` is undefined and `verified` false.
 * {@link expectedMeasuredBytes} gives what the digest would be the hash of for an expected command
 * line (e.g. GRUB 2.12 passes UTF-16LE "BOOT_IMAGE=" S without NUL; systemd-boot/stub pass the
 * UTF-16LE text with its NUL), so a caller can check them against a policy's command line.
 *
 * ## How GRUB's PCR 8 separates the kernel's command line from other commands
 *
 * GRUB measures every command it runs into PCR 8 as `grub_cmd: <command after expansion>`
 * (`set …`, `[ … ]`, `insmod …`, `search …`, `initrd …`, whole `menuentry … { … }` blocks, …),
 * and separately the command line its linux/multiboot loader assembles as `kernel_cmdline: …`
 * (RHEL 8: `grub_cmd …` / `grub_kernel_cmdline …`). `module_cmdline: …` is a multiboot module's
 * (e.g. a Xen dom0 kernel's) command line, not the booted kernel's, and is not recognised. Only
 * `kernel_cmdline:`/`grub_kernel_cmdline` events and `grub_cmd` events whose first word is exactly
 * `linux`, `linuxefi` or `linux16` are recognised; `linux` inside a `menuentry` block, `initrd`,
 * `set linux_gfx_mode=…` are not. A grub boot logs both the `linux` command and the loader's
 * `kernel_cmdline` for the same line: the `kernel_cmdline` one is what the kernel receives (after
 * the loader's quoting), the `grub_cmd` one is the script command; callers should prefer the former.
 * GRUB's kernel and initrd *files* are EV_IPL events in PCR 9 whose data is a path: not recognised.
 *
 * ## Confidential-computing logs (CCEL)
 *
 * In a CCEL log (Intel TDX) `pcr` is a measurement register index and PCRs 8–15 all map to
 * MR 3 (RTMR[2]); `recognizeCmdline(ev, { registers: 'ccel' })` then decides by content alone
 * (verified on go-eventlog's cos-113-intel-tdx.bin, sha384). `cmdlinePcrs` is for TPM logs.
 *
 * `text` for the GRUB forms is S as measured: the kernel image path as the first word
 * (`kernelPath`), then the arguments (`args`). Linux sees it as `BOOT_IMAGE=<kernelPath> <args>`
 * (grub-core/loader/i386/linux.c prepends BOOT_IMAGE=), which is not part of the measurement.
 * @module
 */
import type { BankName } from '../pcrs.ts';
import { hashesTo } from './digest.ts';
import { EV_EVENT_TAG, EV_IPL } from './eventtypes.ts';
import type { TcgEvent } from './types.ts';

export type CmdlineSource = 'grub' | 'systemd' | 'linux-efi-stub';

export type CmdlineForm =
  | 'grub2-upstream-kernel_cmdline'
  | 'grub2-upstream-grub_cmd'
  | 'rhel8-grub_kernel_cmdline'
  | 'rhel8-grub_cmd'
  | 'systemd-stub-pcr12'
  | 'systemd-boot-pcr8-utf16'
  | 'systemd-stub-pcr11-uki-cmdline'
  | 'linux-efi-stub-loadoptions';

export const CMDLINE_FORMS: readonly CmdlineForm[] = [
  'grub2-upstream-kernel_cmdline',
  'grub2-upstream-grub_cmd',
  'rhel8-grub_kernel_cmdline',
  'rhel8-grub_cmd',
  'systemd-stub-pcr12',
  'systemd-boot-pcr8-utf16',
  'systemd-stub-pcr11-uki-cmdline',
  'linux-efi-stub-loadoptions',
];

export interface CmdlineMeasurement {
  source: CmdlineSource;
  /** Which format matched: one of {@link CMDLINE_FORMS}. */
  form: string;
  /** The kernel command line itself (prefixes, kernel path for `linux` commands handled as documented), when the event carries it as text. */
  text?: string;
  /** The exact bytes the digest should be the hash of (per the format). */
  measured?: Buffer;
  /** true when `measured` hashes to the event's digest in EVERY bank the event carries (node:crypto-computable banks; a bank we cannot compute is not counted as matching; at least one must be checked). */
  verified: boolean;
  /** For a grub `linux`/`linuxefi` command: the kernel image path (first word). */
  kernelPath?: string;
  /** For the grub forms: `text` after the kernel path and its separating space. */
  args?: string;
  /** Why the event is odd (data not in the documented shape, a stray byte, ...). */
  note?: string;
}

/** The PCRs each source measures the command line into: current first, historical after. */
export const cmdlinePcrs: Record<CmdlineSource, number[]> = {
  grub: [8],
  // 12 since systemd 251; 8 before (and with -Defi-tpm-pcr-compat in 251–253); 11 = UKI .cmdline section.
  systemd: [12, 8, 11],
  'linux-efi-stub': [9],
};

/** LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID, include/linux/efi.h (Linux ≥ 6.1). */
export const LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID = 0x8f3b22ed;

/** GRUB PCR 8 prefixes: [prefix, form, is a grub_cmd (needs a linux command word), NUL measured]. */
const GRUB_PREFIXES: readonly (readonly [string, CmdlineForm, boolean, boolean])[] = [
  ['kernel_cmdline: ', 'grub2-upstream-kernel_cmdline', false, false],
  ['grub_cmd: ', 'grub2-upstream-grub_cmd', true, false],
  ['grub_kernel_cmdline ', 'rhel8-grub_kernel_cmdline', false, false],
  ['grub_cmd ', 'rhel8-grub_cmd', true, true],
];

/** The grub commands that load a Linux kernel (grub-core/loader/.../linux.c; RHEL's linuxefi). */
const LINUX_COMMANDS = new Set(['linux', 'linuxefi', 'linux16']);

/** systemd-stub's other PCR 12 EV_IPL descriptions (credential cpio archives): not command lines. */
const SYSTEMD_PCR12_OTHER = new Set(['Credentials initrd', 'Global credentials initrd', 'System extension initrd']);

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** GRUB strings are UTF-8 (grub manual, "Internationalisation"); invalid bytes fall back to latin1 with a note. */
function decodeGrub(b: Buffer): { text: string; note?: string } {
  try {
    return { text: UTF8.decode(b) };
  } catch {
    return { text: b.toString('latin1'), note: 'not valid UTF-8; shown as latin1' };
  }
}

function splitKernel(text: string): { kernelPath?: string; args?: string } {
  const m = /^(\S+)(?: ([\s\S]*))?$/.exec(text);
  if (!m) return {};
  return { kernelPath: m[1], args: m[2] ?? '' };
}

function startsWithAscii(data: Buffer, prefix: string): boolean {
  return data.length >= prefix.length && data.toString('latin1', 0, prefix.length) === prefix;
}

function grub(pcr: number, data: Buffer, digests: Map<BankName, Buffer>): CmdlineMeasurement | undefined {
  if (pcr !== 8) return undefined;
  for (const [prefix, form, isCmd, nulMeasured] of GRUB_PREFIXES) {
    if (!startsWithAscii(data, prefix)) continue;
    const hasNul = data.length > prefix.length && data[data.length - 1] === 0;
    const body = data.subarray(prefix.length, hasNul ? data.length - 1 : data.length);
    const notes: string[] = [];
    if (!hasNul) notes.push('no terminating NUL');
    if (body.includes(0)) notes.push('NUL inside the string');
    // A copy: the caller may keep it after the log's buffer is reused.
    const measured = nulMeasured ? Buffer.concat([body, Buffer.alloc(1)]) : Buffer.from(body);
    const dec = decodeGrub(body);
    if (dec.note) notes.push(dec.note);
    let text = dec.text;
    if (isCmd) {
      const word = /^([^ \t\n]*)(?:[ \t]([\s\S]*))?$/.exec(text);
      if (!word || !LINUX_COMMANDS.has(word[1])) return undefined;
      text = word[2] ?? '';
    }
    const verified = body.includes(0) ? false : hashesTo(digests, measured);
    return {
      source: 'grub',
      form,
      text,
      measured,
      verified,
      ...splitKernel(text),
      ...(notes.length ? { note: notes.join('; ') } : {}),
    };
  }
  return undefined;
}

/** UTF-16LE text of a systemd EV_IPL description: the code units before the first NUL, if all printable. */
function utf16Text(data: Buffer): { text: string; units: number } | undefined {
  if (data.length < 2) return undefined;
  const n = data.length >> 1;
  let units = 0;
  while (units < n && data.readUInt16LE(units * 2) !== 0) units++;
  if (units === 0) return undefined;
  const text = data.toString('utf16le', 0, units * 2);
  // Command lines are printable; C0 controls other than tab/newline, and unpaired surrogates, are not.
  if (/[\x00-\x08\x0b-\x1f\x7f]/.test(text) || !isWellFormed(text)) return undefined;
  return { text, units };
}

function isWellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

function systemd(pcr: number, data: Buffer, digests: Map<BankName, Buffer>): CmdlineMeasurement | undefined {
  if (pcr !== 12 && pcr !== 8 && pcr !== 11) return undefined;
  // GRUB's PCR 8 strings are ASCII: a UTF-16 description has a zero high byte in its first unit.
  if (data.length < 2 || data[1] !== 0) return undefined;
  const u = utf16Text(data);
  if (!u) return undefined;
  const textBytes = data.subarray(0, u.units * 2);
  const withNul = Buffer.concat([textBytes, Buffer.alloc(2)]);
  const rest = data.subarray(u.units * 2);
  const restIsZero = rest.every((b) => b === 0);

  if (pcr === 11) {
    if (u.text !== '.cmdline') return undefined;
    // systemd ≥ 253 logs two events per section: the first hashes the ASCII name with its NUL.
    if (hashesTo(digests, Buffer.from('.cmdline\0', 'latin1'))) return undefined;
    return { source: 'systemd', form: 'systemd-stub-pcr11-uki-cmdline', verified: false };
  }

  if (pcr === 12) {
    const notes: string[] = [];
    if (!(rest.length === 2 && restIsZero)) notes.push(`data is not the UTF-16 text and one UTF-16 NUL (${rest.length} bytes after the text)`);
    let measured = withNul;
    let verified = hashesTo(digests, withNul);
    if (!verified && hashesTo(digests, textBytes)) {
      measured = Buffer.from(textBytes);
      verified = true;
      notes.push('digest over the text without its NUL');
    }
    // systemd-stub's credential archives share PCR 12 and EV_IPL; their digest is of a cpio.
    if (!verified && SYSTEMD_PCR12_OTHER.has(u.text)) return undefined;
    return { source: 'systemd', form: 'systemd-stub-pcr12', text: u.text, measured, verified, ...(notes.length ? { note: notes.join('; ') } : {}) };
  }

  // PCR 8: systemd ≤ 250. The data is the text and either one stray zero byte or the UTF-16 NUL.
  const notes: string[] = [];
  if (rest.length === 1 && rest[0] === 0) notes.push('systemd ≤ 250 event size quirk: text and one stray byte');
  else if (!(rest.length === 2 && restIsZero)) notes.push(`unexpected ${rest.length} bytes after the text`);
  let measured = withNul;
  let verified = hashesTo(digests, withNul);
  if (!verified && hashesTo(digests, textBytes)) {
    measured = Buffer.from(textBytes);
    verified = true;
    notes.push('digest over the text without its NUL');
  }
  return { source: 'systemd', form: 'systemd-boot-pcr8-utf16', text: u.text, measured, verified, ...(notes.length ? { note: notes.join('; ') } : {}) };
}

export interface RecognizeOptions {
  /**
   * 'ccel': the event's `pcr` is a confidential-computing measurement register index (CCEL,
   * UEFI 2.10 §38.4; Intel TDX: 0 = MRTD, 1 = RTMR0 ← PCR 1/7, 2 = RTMR1 ← PCR 2–6,
   * 3 = RTMR2 ← PCR 8–15). PCRs 8, 9, 11 and 12 all land in MR 3, so there the content alone
   * decides the format. Default 'tpm': `pcr` is a TPM PCR.
   */
  registers?: 'tpm' | 'ccel';
}

/** CCEL MR index of TDX's RTMR[2], which the firmware maps PCRs 8–15 to (MapPcrToMrIndex). */
const CCEL_MR_PCR8_15 = 3;

function recognizeAt(pcr: number, type: number, data: Buffer, digests: Map<BankName, Buffer>): CmdlineMeasurement | undefined {
  if (type === EV_EVENT_TAG) {
    // TCG_PCClientTaggedEvent (PFP 1.05 §10.4.2.1): taggedEventID, taggedEventDataSize, data.
    if (pcr !== 9 || data.length < 8 || data.readUInt32LE(0) !== LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID) return undefined;
    return { source: 'linux-efi-stub', form: 'linux-efi-stub-loadoptions', verified: false };
  }
  if (type !== EV_IPL) return undefined;
  return grub(pcr, data, digests) ?? systemd(pcr, data, digests);
}

/**
 * Recognises a kernel command line measurement.
 * @param ev the parsed event (src/measuredboot/types.ts TcgEvent: pcr, type, data, digests).
 * @param opts `registers: 'ccel'` for confidential-computing event logs (see {@link RecognizeOptions}).
 * @returns undefined when the event is not a kernel command line measurement. Never throws on any input.
 */
export function recognizeCmdline(ev: Pick<TcgEvent, 'pcr' | 'type' | 'data' | 'digests'>, opts: RecognizeOptions = {}): CmdlineMeasurement | undefined {
  if (typeof ev !== 'object' || ev === null) return undefined;
  const { pcr, type, digests } = ev;
  let data: unknown = ev.data;
  if (typeof pcr !== 'number' || typeof type !== 'number' || !(digests instanceof Map)) return undefined;
  if (data instanceof Uint8Array && !Buffer.isBuffer(data)) data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (!Buffer.isBuffer(data)) return undefined;
  if (typeof opts !== 'object' || opts === null || opts.registers !== 'ccel') return recognizeAt(pcr, type, data, digests);
  if (pcr !== CCEL_MR_PCR8_15) return undefined;
  // In MR 3 the PCR is unknown: the LoadOptions tag as PCR 9, ASCII as GRUB's PCR 8, and UTF-16
  // as systemd's: ".cmdline" is the PCR 11 section, an odd-sized description the ≤ 250 PCR 8 quirk.
  let m: CmdlineMeasurement | undefined;
  if (type === EV_EVENT_TAG) m = recognizeAt(9, type, data, digests);
  else if (type === EV_IPL) {
    m = grub(8, data, digests);
    if (!m) {
      const name = data.length >= 2 && data[1] === 0 ? utf16Text(data)?.text : undefined;
      m = systemd(name === '.cmdline' ? 11 : data.length % 2 === 1 ? 8 : 12, data, digests);
    }
  }
  if (!m) return undefined;
  const note = `CCEL MR ${CCEL_MR_PCR8_15} (RTMR[2], PCRs 8–15)`;
  return { ...m, note: m.note ? `${m.note}; ${note}` : note };
}

/**
 * The byte strings a form's digest would be the hash of, for the command line `text` (as
 * `recognizeCmdline` reports it). For the forms whose text is not in the log (the Linux EFI stub's
 * LoadOptions, the UKI `.cmdline` section) this lists what the known loaders pass, so a caller can
 * compare an event's digest against a command line a policy expects.
 */
export function expectedMeasuredBytes(form: CmdlineForm, text: string): Buffer[] {
  switch (form) {
    case 'grub2-upstream-kernel_cmdline':
    case 'rhel8-grub_kernel_cmdline':
      return [Buffer.from(text, 'utf8')];
    case 'grub2-upstream-grub_cmd':
      return [...LINUX_COMMANDS].map((c) => Buffer.from(`${c} ${text}`, 'utf8'));
    case 'rhel8-grub_cmd':
      return [...LINUX_COMMANDS].map((c) => Buffer.from(`${c} ${text}\0`, 'utf8'));
    case 'systemd-stub-pcr12':
    case 'systemd-boot-pcr8-utf16':
      return [Buffer.from(text + '\0', 'utf16le'), Buffer.from(text, 'utf16le')];
    case 'systemd-stub-pcr11-uki-cmdline':
      // The section as ukify/objcopy wrote it: the text, possibly NUL-terminated.
      return [Buffer.from(text, 'utf8'), Buffer.from(text + '\0', 'utf8')];
    case 'linux-efi-stub-loadoptions':
      // systemd-boot/stub: UTF-16 with NUL; GRUB 2.12 (grub-core/loader/efi/linux.c): "BOOT_IMAGE=" + cmdline, no NUL.
      return [
        Buffer.from(text + '\0', 'utf16le'),
        Buffer.from(text, 'utf16le'),
        Buffer.from(`BOOT_IMAGE=${text}`, 'utf16le'),
        Buffer.from(`BOOT_IMAGE=${text}\0`, 'utf16le'),
      ];
  }
}

/**
 * The event data and measured bytes a writer of `form` produces for `text` (the first candidate of
 * {@link expectedMeasuredBytes}); the grub `grub_cmd` forms use the `linux` command. For tests and
 * for predicting a log; the tagged and section forms carry only their fixed description.
 */
export function cmdlineEventData(form: CmdlineForm, text: string): { pcr: number; type: number; data: Buffer; measured: Buffer } {
  const measured = expectedMeasuredBytes(form, text)[0];
  const nul = Buffer.alloc(1);
  switch (form) {
    case 'grub2-upstream-kernel_cmdline':
      return { pcr: 8, type: EV_IPL, data: Buffer.concat([Buffer.from('kernel_cmdline: '), measured, nul]), measured };
    case 'rhel8-grub_kernel_cmdline':
      return { pcr: 8, type: EV_IPL, data: Buffer.concat([Buffer.from('grub_kernel_cmdline '), measured, nul]), measured };
    case 'grub2-upstream-grub_cmd':
      return { pcr: 8, type: EV_IPL, data: Buffer.concat([Buffer.from('grub_cmd: '), measured, nul]), measured };
    case 'rhel8-grub_cmd':
      return { pcr: 8, type: EV_IPL, data: Buffer.concat([Buffer.from('grub_cmd '), measured]), measured };
    case 'systemd-stub-pcr12':
      return { pcr: 12, type: EV_IPL, data: Buffer.from(measured), measured };
    case 'systemd-boot-pcr8-utf16':
      // systemd ≤ 250: the description without its NUL plus one stray byte.
      return { pcr: 8, type: EV_IPL, data: Buffer.concat([Buffer.from(text, 'utf16le'), nul]), measured };
    case 'systemd-stub-pcr11-uki-cmdline':
      return { pcr: 11, type: EV_IPL, data: Buffer.from('.cmdline\0', 'utf16le'), measured };
    case 'linux-efi-stub-loadoptions': {
      const desc = Buffer.from('LOADED_IMAGE::LoadOptions\0', 'latin1');
      const head = Buffer.alloc(8);
      head.writeUInt32LE(LINUX_EFI_LOADOPTIONS_EVENT_TAG_ID, 0);
      head.writeUInt32LE(desc.length, 4);
      return { pcr: 9, type: EV_EVENT_TAG, data: Buffer.concat([head, desc]), measured };
    }
  }
}

/**
 * Checks a measurement whose text is not in the log (or any other) against an expected command
 * line: returns the candidate of {@link expectedMeasuredBytes} that the event's digest is the hash
 * of in every bank it carries, or undefined when none is.
 */
export function matchExpectedCmdline(ev: Pick<TcgEvent, 'digests'>, form: CmdlineForm, text: string): Buffer | undefined {
  if (typeof ev !== 'object' || ev === null || !(ev.digests instanceof Map) || typeof text !== 'string') return undefined;
  if (!CMDLINE_FORMS.includes(form)) return undefined;
  return expectedMeasuredBytes(form, text).find((b) => hashesTo(ev.digests, b));
}
