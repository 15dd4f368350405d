/**
 * PE/COFF images as UEFI firmware loads and measures them: the headers, the section table,
 * the certificate-table directory entry, and the **Authenticode image digest** that firmware
 * extends into PCR 4 (EV_EFI_BOOT_SERVICES_APPLICATION) and compares with `db`/`dbx`.
 *
 * The digest follows "Windows Authenticode Portable Executable Signature Format" (Microsoft,
 * 2008, "Calculating the PE Image Hash") as EDK2 implements it (SecurityPkg
 * DxeImageVerificationLib `HashPeImage`, Tcg2Dxe `MeasurePeImageAndExtend`):
 *   1. the headers up to SizeOfHeaders, leaving out the 4-byte CheckSum and the 8-byte
 *      certificate-table data-directory entry (only present when NumberOfRvaAndSizes > 4);
 *   2. each section with raw data, SizeOfRawData bytes at PointerToRawData, in order of
 *      PointerToRawData (stable for ties);
 *   3. trailing data: if the file is longer than SUM (headers + raw sections), the
 *      `FileSize - CertTableSize - SUM` bytes at SUM. The certificate table itself is never hashed.
 * A file shorter than SUM + CertTableSize is refused, as EDK2 refuses it.
 *
 * Every field read is bounds-checked against the buffer; nothing is allocated from a length
 * field. Errors are EfiErrors with the offset.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { EfiError } from './errors.ts';

/** The hash banks policies use, in the order bootkey lists them. */
export type DigestName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
export const DIGEST_NAMES: readonly DigestName[] = ['sha1', 'sha256', 'sha384', 'sha512'];
export type Digests = Record<DigestName, Buffer>;

/** IMAGE_SECTION_HEADER — PE/COFF spec §3 "Section Table". */
export interface PeSection {
  /** Index in the section table. */
  index: number;
  /** Name, up to 8 bytes, NULs stripped (a `/nnn` long name is kept as is: loaders match these 8 bytes). */
  name: string;
  /** For a `/nnn` name, the name in the COFF string table, when the file has one. */
  longName?: string;
  virtualSize: number;
  virtualAddress: number;
  sizeOfRawData: number;
  pointerToRawData: number;
  characteristics: number;
  /** Byte offset of this section header in the file. */
  headerOffset: number;
}

/** IMAGE_DATA_DIRECTORY[4]: for this one entry VirtualAddress is a file offset. */
export interface CertTableEntry {
  /** File offset of the certificate table. */
  offset: number;
  size: number;
  /** File offset of the 8-byte directory entry itself. */
  entryOffset: number;
}

export interface PeImage {
  /** IMAGE_FILE_HEADER.Machine, e.g. 0x8664 (x64), 0x14c (ia32), 0xaa64 (arm64). */
  machine: number;
  /** Optional-header magic 0x20b (PE32+) or 0x10b (PE32). */
  pe32plus: boolean;
  timeDateStamp: number;
  characteristics: number;
  subsystem: number;
  addressOfEntryPoint: number;
  sizeOfImage: number;
  sizeOfHeaders: number;
  /** File offset of the 4-byte CheckSum field. */
  checksumOffset: number;
  checksum: number;
  numberOfRvaAndSizes: number;
  /** Absent when NumberOfRvaAndSizes ≤ 4. A zero size means "not signed". */
  certTable?: CertTableEntry;
  sections: PeSection[];
  /** The whole file the image was parsed from. */
  bytes: Buffer;
}

const IMAGE_DIRECTORY_ENTRY_SECURITY = 4;
/** The PE/COFF spec allows 65535; the Windows loader stops at 96. Bounded by the file anyway. */
export const MAX_SECTIONS = 65535;

function u16(b: Buffer, off: number, what: string): number {
  if (off + 2 > b.length) throw new EfiError('TRUNCATED', `${what}: file ends at ${b.length}`, off);
  return b.readUInt16LE(off);
}
function u32(b: Buffer, off: number, what: string): number {
  if (off + 4 > b.length) throw new EfiError('TRUNCATED', `${what}: file ends at ${b.length}`, off);
  return b.readUInt32LE(off);
}
function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * Parses the headers and the section table of a PE/COFF image.
 * @throws EfiError (NOT_PE, TRUNCATED, BAD_HEADER, BAD_SECTION, BAD_CERT_TABLE)
 */
export function parsePe(bytes: Buffer): PeImage {
  if (bytes.length < 2 || bytes.readUInt16LE(0) !== 0x5a4d) throw new EfiError('NOT_PE', 'no MZ signature: not a PE/COFF image', 0);
  const peOff = u32(bytes, 0x3c, 'e_lfanew');
  if (peOff + 24 > bytes.length) throw new EfiError('TRUNCATED', `PE header at ${hex(peOff)} runs past the end of the file (${bytes.length} bytes)`, 0x3c);
  if (bytes.readUInt32LE(peOff) !== 0x00004550) throw new EfiError('NOT_PE', 'no PE\\0\\0 signature at e_lfanew', peOff);
  const coff = peOff + 4;
  const machine = bytes.readUInt16LE(coff);
  const numberOfSections = bytes.readUInt16LE(coff + 2);
  const timeDateStamp = bytes.readUInt32LE(coff + 4);
  const sizeOfOptionalHeader = bytes.readUInt16LE(coff + 16);
  const characteristics = bytes.readUInt16LE(coff + 18);
  const opt = coff + 20;
  const magic = u16(bytes, opt, 'optional header magic');
  if (magic !== 0x10b && magic !== 0x20b) throw new EfiError('BAD_HEADER', `optional header magic ${hex(magic)} is neither PE32 (0x10b) nor PE32+ (0x20b)`, opt);
  const pe32plus = magic === 0x20b;
  const ddOff = opt + (pe32plus ? 112 : 96); // first data directory
  const nrvaOff = ddOff - 4;
  if (sizeOfOptionalHeader < ddOff - opt) throw new EfiError('BAD_HEADER', `SizeOfOptionalHeader ${sizeOfOptionalHeader} is smaller than the ${pe32plus ? 'PE32+' : 'PE32'} fixed part (${ddOff - opt})`, coff + 16);
  const optEnd = opt + sizeOfOptionalHeader;
  if (optEnd > bytes.length) throw new EfiError('TRUNCATED', `optional header (${sizeOfOptionalHeader} bytes) runs past the end of the file`, opt);
  const addressOfEntryPoint = bytes.readUInt32LE(opt + 16);
  const sizeOfImage = bytes.readUInt32LE(opt + 56);
  const sizeOfHeaders = bytes.readUInt32LE(opt + 60);
  const checksumOffset = opt + 64;
  const checksum = bytes.readUInt32LE(checksumOffset);
  const subsystem = bytes.readUInt16LE(opt + 68);
  const numberOfRvaAndSizes = bytes.readUInt32LE(nrvaOff);
  if (numberOfRvaAndSizes > (optEnd - ddOff) / 8) throw new EfiError('BAD_HEADER', `NumberOfRvaAndSizes ${numberOfRvaAndSizes} does not fit the optional header (${sizeOfOptionalHeader} bytes)`, nrvaOff);

  const secTable = optEnd;
  if (numberOfSections > MAX_SECTIONS) throw new EfiError('BAD_HEADER', `${numberOfSections} sections`, coff + 2);
  const secEnd = secTable + numberOfSections * 40;
  if (secEnd > bytes.length) throw new EfiError('TRUNCATED', `section table (${numberOfSections} entries at ${hex(secTable)}) runs past the end of the file`, secTable);
  if (sizeOfHeaders > bytes.length) throw new EfiError('BAD_HEADER', `SizeOfHeaders ${hex(sizeOfHeaders)} is beyond the end of the file (${bytes.length} bytes)`, opt + 60);
  if (sizeOfHeaders < checksumOffset + 4) throw new EfiError('BAD_HEADER', `SizeOfHeaders ${hex(sizeOfHeaders)} ends before the CheckSum field`, opt + 60);

  let certTable: CertTableEntry | undefined;
  if (numberOfRvaAndSizes > IMAGE_DIRECTORY_ENTRY_SECURITY) {
    const entryOffset = ddOff + 8 * IMAGE_DIRECTORY_ENTRY_SECURITY;
    const offset = bytes.readUInt32LE(entryOffset);
    const size = bytes.readUInt32LE(entryOffset + 4);
    if (entryOffset + 8 > sizeOfHeaders) throw new EfiError('BAD_HEADER', `SizeOfHeaders ${hex(sizeOfHeaders)} ends inside the data directories`, opt + 60);
    if (size !== 0 && (offset > bytes.length || size > bytes.length - offset)) {
      throw new EfiError('BAD_CERT_TABLE', `certificate table (${size} bytes at ${hex(offset)}) runs past the end of the file (${bytes.length} bytes)`, entryOffset);
    }
    if (size !== 0 && offset < sizeOfHeaders) throw new EfiError('BAD_CERT_TABLE', `certificate table at ${hex(offset)} lies inside the headers`, entryOffset);
    certTable = { offset: size === 0 ? 0 : offset, size, entryOffset };
  }

  // COFF string table (for `/nnn` section names): after the symbol table, a u32 size first.
  const symOff = bytes.readUInt32LE(coff + 8);
  const strOff = symOff + bytes.readUInt32LE(coff + 12) * 18;
  const strEnd = symOff !== 0 && strOff + 4 <= bytes.length ? Math.min(bytes.length, strOff + bytes.readUInt32LE(strOff)) : 0;
  const sections: PeSection[] = [];
  for (let i = 0; i < numberOfSections; i++) {
    const h = secTable + i * 40;
    const rawName = bytes.subarray(h, h + 8);
    const nul = rawName.indexOf(0);
    const s: PeSection = {
      index: i,
      name: rawName.subarray(0, nul < 0 ? 8 : nul).toString('latin1'),
      virtualSize: bytes.readUInt32LE(h + 8),
      virtualAddress: bytes.readUInt32LE(h + 12),
      sizeOfRawData: bytes.readUInt32LE(h + 16),
      pointerToRawData: bytes.readUInt32LE(h + 20),
      characteristics: bytes.readUInt32LE(h + 36),
      headerOffset: h,
    };
    const m = /^\/(\d{1,7})$/.exec(s.name);
    if (m && strEnd && strOff + Number(m[1]) < strEnd) {
      const from = strOff + Number(m[1]);
      const z = bytes.indexOf(0, from);
      s.longName = bytes.subarray(from, Math.min(z < 0 ? strEnd : z, strEnd, from + 256)).toString('latin1');
    }
    if (s.sizeOfRawData !== 0 && (s.pointerToRawData > bytes.length || s.sizeOfRawData > bytes.length - s.pointerToRawData)) {
      throw new EfiError('BAD_SECTION', `section ${i} ${JSON.stringify(s.name)} raw data (${hex(s.sizeOfRawData)} bytes at ${hex(s.pointerToRawData)}) runs past the end of the file (${bytes.length} bytes)`, h + 16);
    }
    sections.push(s);
  }
  return { machine, pe32plus, timeDateStamp, characteristics, subsystem, addressOfEntryPoint, sizeOfImage, sizeOfHeaders, checksumOffset, checksum, numberOfRvaAndSizes, certTable, sections, bytes };
}

/** The byte ranges [start, end) the Authenticode digest covers, in hashing order. */
export function authenticodeRanges(pe: PeImage): Array<[number, number]> {
  const { bytes, sizeOfHeaders, checksumOffset, certTable } = pe;
  const ranges: Array<[number, number]> = [[0, checksumOffset]];
  if (certTable) {
    if (certTable.entryOffset < checksumOffset + 4) throw new EfiError('BAD_HEADER', 'certificate-table entry overlaps the CheckSum field', certTable.entryOffset);
    ranges.push([checksumOffset + 4, certTable.entryOffset], [certTable.entryOffset + 8, sizeOfHeaders]);
  } else {
    ranges.push([checksumOffset + 4, sizeOfHeaders]);
  }
  let sum = sizeOfHeaders;
  const ordered = pe.sections.filter((s) => s.sizeOfRawData !== 0).sort((a, b) => a.pointerToRawData - b.pointerToRawData || a.index - b.index);
  for (const s of ordered) {
    ranges.push([s.pointerToRawData, s.pointerToRawData + s.sizeOfRawData]);
    sum += s.sizeOfRawData;
  }
  const certSize = certTable?.size ?? 0;
  if (bytes.length > sum) {
    if (bytes.length - sum > certSize) ranges.push([sum, bytes.length - certSize]);
    else if (bytes.length - sum < certSize) {
      throw new EfiError('BAD_CERT_TABLE', `file (${bytes.length} bytes) is shorter than headers + sections (${sum}) + certificate table (${certSize})`, certTable!.entryOffset);
    }
  } else if (bytes.length < sum) {
    // Sections overlap or repeat bytes: EDK2 hashes them as they are, and so do we; the
    // certificate table cannot then be "after" the hashed data.
    if (certSize !== 0) throw new EfiError('BAD_CERT_TABLE', `headers + sections (${sum} bytes) exceed the file (${bytes.length} bytes) and a certificate table is present`, certTable!.entryOffset);
  }
  return ranges;
}

/**
 * The Authenticode digest of a PE/COFF image in the given banks (default all four),
 * computed in one pass over the bytes.
 * @throws EfiError
 */
export function authenticodeDigests(pe: PeImage | Buffer, banks: readonly DigestName[] = DIGEST_NAMES): Partial<Digests> {
  const image = Buffer.isBuffer(pe) ? parsePe(pe) : pe;
  const hashes: Array<[DigestName, Hash]> = banks.map((b) => [b, createHash(b)]);
  for (const [a, b] of authenticodeRanges(image)) {
    if (b <= a) continue;
    const chunk = image.bytes.subarray(a, b);
    for (const [, h] of hashes) h.update(chunk);
  }
  return Object.fromEntries(hashes.map(([n, h]) => [n, h.digest()])) as Partial<Digests>;
}

/** The Authenticode digest in one bank. */
export function authenticodeDigest(pe: PeImage | Buffer, bank: DigestName = 'sha256'): Buffer {
  return authenticodeDigests(pe, [bank])[bank]!;
}

/**
 * The bytes of a section as the loader maps them: VirtualSize bytes (the raw data, zero-filled
 * when VirtualSize exceeds SizeOfRawData; cut when it is smaller). A VirtualSize of 0 means
 * SizeOfRawData (object files, some linkers). The zero fill is bounded by `maxFill` (16 MiB):
 * a hostile VirtualSize must not make us allocate a gigabyte.
 * @throws EfiError BAD_SECTION when the zero fill would exceed `maxFill`
 */
export function sectionData(pe: PeImage, s: PeSection, maxFill = 1 << 24): Buffer {
  const size = s.virtualSize === 0 ? s.sizeOfRawData : s.virtualSize;
  if (size > s.sizeOfRawData && size - s.sizeOfRawData > maxFill) {
    throw new EfiError('BAD_SECTION', `section ${JSON.stringify(s.name)} VirtualSize ${hex(size)} exceeds its raw data (${hex(s.sizeOfRawData)}) by more than ${maxFill} bytes`, s.headerOffset + 8);
  }
  const raw = pe.bytes.subarray(s.pointerToRawData, s.pointerToRawData + Math.min(s.sizeOfRawData, size));
  if (raw.length === size) return raw;
  const out = Buffer.alloc(size);
  raw.copy(out);
  return out;
}
