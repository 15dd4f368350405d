/**
 * Predicting the next boot from the files an update installs (issue 11 §2): the measurements
 * of each file as firmware, systemd-stub, the Linux EFI stub and GRUB will make them, then
 * src/measuredboot/stage.ts applies them to the current boot's log.
 *
 * - shim, boot loader, UKI, kernel: the Authenticode digest (PCR 4), and the file's Authenticode
 *   PKCS#7 blobs (for signed-by staging);
 * - UKI: the embedded kernel's Authenticode digest (PCR 4 VenMedia), the PCR 11 section events
 *   for the stub version read from `.sdmagic`, the `.cmdline` text and the `.initrd` digest
 *   (what the kernel measures in PCR 9);
 * - kernel: also the plain hash of the file (GRUB's PCR 9 measurement of the file it read);
 * - initrd: the plain hash of its bytes (the Linux EFI stub's PCR 9 initrd tag, GRUB's PCR 9).
 * Pure (bytes in; no I/O).
 * @module
 */
import { createHash } from 'node:crypto';
import type { BankName } from '../pcrs.ts';
import type { Digests as HexDigests } from '../measuredboot/bootstate.ts';
import { applyMeasurements, StageError, type ImageMeasurement, type PartMeasurements, type PredictedBoot } from '../measuredboot/stage.ts';
import type { EventLog } from '../measuredboot/types.ts';
import { authenticodeDigests, parsePe, DIGEST_NAMES, type DigestName, type PeImage } from './pe.ts';
import { parseCertificateTable, WIN_CERT_TYPE_PKCS_SIGNED_DATA } from './authenticode.ts';
import { parseUki, pcr11Events, kernelAuthenticode, sectionText } from './uki.ts';
import { EfiError } from './errors.ts';

/** The files of an update (their bytes), each optional. */
export interface BootParts {
  uki?: Buffer;
  kernel?: Buffer;
  initrd?: Buffer;
  /** The command line exactly as the loader will pass it (see PartMeasurements.cmdline). */
  cmdline?: string;
  /** GRUB: the new kernel's path as grub.cfg will name it (default: the current one). */
  kernelPath?: string;
  shim?: Buffer;
  bootloader?: Buffer;
}

function digestBanks(banks: readonly BankName[]): DigestName[] {
  for (const b of banks) if (!(DIGEST_NAMES as readonly string[]).includes(b)) throw new StageError('UNSUPPORTED', `bank ${b} cannot be computed (Authenticode digests: ${DIGEST_NAMES.join(', ')})`);
  return banks as DigestName[];
}

function hexOf(d: Partial<Record<DigestName, Buffer>>): HexDigests {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v!.toString('hex')]));
}

function plain(bytes: Buffer, banks: DigestName[]): HexDigests {
  return Object.fromEntries(banks.map((b) => [b, createHash(b).update(bytes).digest('hex')]));
}

function image(pe: PeImage, banks: DigestName[]): ImageMeasurement {
  const blobs = parseCertificateTable(pe).filter((w) => w.certificateType === WIN_CERT_TYPE_PKCS_SIGNED_DATA).map((w) => w.data.toString('hex'));
  return { digests: hexOf(authenticodeDigests(pe, banks)), size: pe.bytes.length, ...(blobs.length ? { pkcs7: blobs } : {}) };
}

function named<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof EfiError) throw new EfiError(e.code as never, `${what}: ${e.message.replace(/^at byte \d+: /, '')}`, e.offset, { cause: e });
    throw e;
  }
}

/**
 * Measures the files of an update in `banks` (the current log's).
 * @throws EfiError (a file that is not a valid PE / UKI, with its byte offset), StageError UNSUPPORTED
 */
export function measureParts(parts: BootParts, banks: readonly BankName[]): PartMeasurements {
  const b = digestBanks(banks);
  const m: PartMeasurements = {};
  if (parts.shim) m.shim = named('shim', () => image(parsePe(parts.shim!), b));
  if (parts.bootloader) m.bootloader = named('boot loader', () => image(parsePe(parts.bootloader!), b));
  if (parts.uki) {
    m.uki = named('UKI', () => {
      const pe = parsePe(parts.uki!);
      const uki = parseUki(pe);
      const initrd = uki.sections.find((s) => s.name === '.initrd');
      const cmdline = sectionText(uki, '.cmdline');
      return {
        ...image(pe, b),
        kernel: { digests: hexOf(kernelAuthenticode(uki, b)), size: uki.sections.find((s) => s.name === '.linux')!.data.length },
        pcr11: pcr11Events(uki, b).map((e) => ({ section: e.section!, kind: e.kind as 'name' | 'data', digests: hexOf(e.digests) })),
        ...(cmdline !== undefined ? { cmdline } : {}),
        ...(initrd && initrd.data.length ? { initrd: plain(initrd.data, b) } : {}),
      };
    });
  }
  if (parts.kernel) m.kernel = named('kernel', () => ({ ...image(parsePe(parts.kernel!), b), file: plain(parts.kernel!, b), ...(parts.kernelPath ? { path: parts.kernelPath } : {}) }));
  if (parts.initrd) m.initrd = { file: plain(parts.initrd, b) };
  if (parts.cmdline !== undefined) m.cmdline = parts.cmdline;
  return m;
}

/**
 * The predicted next boot: `current` (the running boot's log) with the events of the given
 * files replaced (src/measuredboot/stage.ts applyMeasurements).
 * @throws EfiError, StageError
 */
export function predictBoot(current: EventLog, parts: BootParts): PredictedBoot {
  if (parts.uki && parts.kernel) throw new StageError('BAD_PARTS', 'give either a UKI or a kernel, not both (a UKI carries its kernel)');
  if (parts.initrd && parts.uki) throw new StageError('BAD_PARTS', 'a UKI carries its initrd: --initrd goes with --kernel');
  if (parts.kernelPath && !parts.kernel) throw new StageError('BAD_PARTS', 'a kernel path goes with a kernel');
  return applyMeasurements(current, measureParts(parts, current.banks));
}
