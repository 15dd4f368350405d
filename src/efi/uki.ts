/**
 * Unified kernel images (UAPI.5 "Unified Kernel Image" spec; systemd-stub(7)): a systemd-stub
 * PE with the kernel, initrd, command line, ... in named sections, and the measurements the
 * stub makes of them:
 *
 * - **PCR 11**, per UKI section present, in the canonical order, two `EV_IPL` events: first the
 *   section name (digest over the ASCII name *with* its NUL; event data the UTF-16 name), then
 *   the section contents (digest over VirtualSize bytes as mapped; same event data). `.pcrsig`
 *   is never measured. Which sections a stub knows depends on its version (read from the
 *   `.sdmagic` section): systemd 252–253 `.linux .osrel .cmdline .initrd .splash .dtb .pcrpkey`;
 *   254–255 add `.uname .sbat`; 256+ add `.ucode` after `.initrd`. Checked against our OVMF
 *   boots of Debian 12's systemd-stub 252 (test/data/qemu/uki-*.bin, test/efi/uki.test.ts).
 * - **PCR 12**, a command line the loader passes in LoadOptions when the stub uses it (the UKI
 *   has no `.cmdline`, or Secure Boot is off): one `EV_IPL` over the UTF-16LE string. systemd 252
 *   (Debian 12) hashes it *with* its UTF-16 NUL (checked on test/data/qemu/sdboot-sb-off.bin,
 *   systemd-boot's identical measurement); systemd's current documentation says without — pass
 *   `{ nul: false }` for such stubs.
 * - **PCR 4**: firmware measures the `.linux` kernel's own Authenticode digest when the stub
 *   loads it (the `VenMedia(55c5d1f8-…)` EV_EFI_BOOT_SERVICES_APPLICATION event), unless
 *   systemd-stub < 254 starts it under Secure Boot by bypassing the firmware's Security2 handler
 *   (then there is no such event: see test/data/qemu/README.md, uki-sb-on).
 *
 * Multi-profile UKIs (`.profile`, systemd 257) are not modelled.
 * @module
 */
import { createHash } from 'node:crypto';
import { EfiError, type EfiErrorCode } from './errors.ts';
import { type DigestName, type Digests, DIGEST_NAMES, type PeImage, type PeSection, authenticodeDigests, parsePe, sectionData } from './pe.ts';

/** Every section name the UKI spec defines, in canonical (measurement) order. */
export const UKI_SECTION_ORDER = ['.linux', '.osrel', '.cmdline', '.initrd', '.ucode', '.splash', '.dtb', '.uname', '.sbat', '.pcrsig', '.pcrpkey'] as const;
export type UkiSectionName = (typeof UKI_SECTION_ORDER)[number];

/** Sections a given systemd-stub version measures into PCR 11, in order. */
export function measuredSections(stubMajor: number | undefined): UkiSectionName[] {
  const v = stubMajor ?? 256;
  return UKI_SECTION_ORDER.filter((s) => {
    if (s === '.pcrsig') return false;
    if (s === '.uname' || s === '.sbat') return v >= 254;
    if (s === '.ucode') return v >= 256;
    return true;
  });
}


export interface UkiSection {
  name: UkiSectionName;
  section: PeSection;
  /** The VirtualSize bytes systemd-stub measures and uses. */
  data: Buffer;
}

export interface Measurement {
  pcr: number;
  /** 'name' | 'data' for PCR 11 pairs; 'cmdline' for PCR 12. */
  kind: 'name' | 'data' | 'cmdline';
  section?: UkiSectionName;
  /** EV_IPL event data as the stub logs it (UTF-16LE + NUL). */
  eventData: Buffer;
  digests: Partial<Digests>;
}

export interface Uki {
  pe: PeImage;
  /** The systemd-stub version string from `.sdmagic` (e.g. "252.39-1~deb12u2"), when present. */
  stubVersion?: string;
  stubMajor?: number;
  sections: UkiSection[];
}

function utf16z(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf16le');
}

function hashes(data: Buffer, banks: readonly DigestName[]): Partial<Digests> {
  return Object.fromEntries(banks.map((b) => [b, createHash(b).update(data).digest()]));
}

/** True when the image has a `.linux` section (what systemd-stub requires of a UKI). */
export function isUki(pe: PeImage): boolean {
  return pe.sections.some((s) => s.name === '.linux');
}

/**
 * The UKI sections of a PE image (first section of each name, as systemd-stub takes it).
 * @throws EfiError BAD_UKI (no .linux), BAD_SECTION (a VirtualSize far beyond the raw data)
 */
export function parseUki(pe: PeImage | Buffer): Uki {
  const image = Buffer.isBuffer(pe) ? parsePe(pe) : pe;
  const sections: UkiSection[] = [];
  for (const name of UKI_SECTION_ORDER) {
    const s = image.sections.find((x) => x.name === name);
    if (s) sections.push({ name, section: s, data: sectionData(image, s) });
  }
  if (!sections.some((s) => s.name === '.linux')) throw new EfiError('BAD_UKI', 'no .linux section: not a unified kernel image', image.sections[0]?.headerOffset ?? 0);
  let stubVersion: string | undefined;
  const magic = image.sections.find((x) => x.name === '.sdmagic');
  if (magic) {
    const text = image.bytes.subarray(magic.pointerToRawData, magic.pointerToRawData + Math.min(magic.sizeOfRawData, 4096)).toString('latin1');
    stubVersion = /LoaderInfo: systemd-stub ([^\s#]+)/.exec(text)?.[1];
  }
  const major = stubVersion ? Number(/^(\d+)/.exec(stubVersion)?.[1]) : undefined;
  return { pe: image, stubVersion, stubMajor: Number.isFinite(major) ? major : undefined, sections };
}

/** A text section (cmdline, osrel, uname) as the stub reads it: up to the first NUL. */
export function sectionText(uki: Uki, name: UkiSectionName): string | undefined {
  const s = uki.sections.find((x) => x.name === name);
  if (!s) return undefined;
  const z = s.data.indexOf(0);
  return s.data.subarray(0, z < 0 ? s.data.length : z).toString('utf8');
}

/**
 * The PCR 11 events systemd-stub logs for this UKI, in order (name, data, name, data, ...).
 * `stubMajor` overrides the version read from `.sdmagic`.
 */
export function pcr11Events(uki: Uki, banks: readonly DigestName[] = DIGEST_NAMES, stubMajor = uki.stubMajor): Measurement[] {
  const out: Measurement[] = [];
  const wanted = measuredSections(stubMajor);
  for (const name of wanted) {
    const s = uki.sections.find((x) => x.name === name);
    if (!s || s.data.length === 0) continue; // the stub skips sections of size 0
    const eventData = utf16z(name);
    out.push({ pcr: 11, kind: 'name', section: name, eventData, digests: hashes(Buffer.from(name + '\0', 'latin1'), banks) });
    out.push({ pcr: 11, kind: 'data', section: name, eventData, digests: hashes(s.data, banks) });
  }
  return out;
}

/** The PCR 12 event for a command line a loader passes (systemd 252: UTF-16LE with NUL). */
export function pcr12CmdlineEvent(cmdline: string, banks: readonly DigestName[] = DIGEST_NAMES, opts: { nul?: boolean } = {}): Measurement {
  const data = Buffer.from(opts.nul === false ? cmdline : cmdline + '\0', 'utf16le');
  return { pcr: 12, kind: 'cmdline', eventData: utf16z(cmdline), digests: hashes(data, banks) };
}

/**
 * The embedded kernel's Authenticode digests (what firmware logs in PCR 4 as the VenMedia event).
 * @throws EfiError when `.linux` is not a valid PE image (the offset is inside the UKI file)
 */
export function kernelAuthenticode(uki: Uki, banks: readonly DigestName[] = DIGEST_NAMES): Partial<Digests> {
  const linux = uki.sections.find((s) => s.name === '.linux')!;
  try {
    return authenticodeDigests(parsePe(linux.data), banks);
  } catch (e) {
    if (e instanceof EfiError) {
      const base = linux.section.pointerToRawData;
      throw new EfiError(e.code as EfiErrorCode, `in the .linux section (file offset ${base}, its byte ${e.offset}): ${e.message.replace(/^at byte \d+: /, '')}`, base + e.offset, { cause: e });
    }
    throw e;
  }
}
