/**
 * UEFI data structures found in event data: EFI_GUID, CHAR16 strings,
 * EFI_SIGNATURE_LIST (UEFI 2.10 §32.4.1) and EFI_LOAD_OPTION (UEFI 2.10 §3.1.3).
 * All functions are pure and bounded; they throw EventLogError on malformed input.
 * @module
 */
import { X509Certificate, createHash } from 'node:crypto';
import { Reader } from './reader.ts';
import type { EfiSignature, EfiSignatureList } from './types.ts';

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** EFI_GUID (16 bytes, first three fields little-endian) → canonical lowercase text. */
export function guidToString(b: Buffer, off = 0): string {
  const x = (i: number) => HEX[b[off + i]];
  return `${x(3)}${x(2)}${x(1)}${x(0)}-${x(5)}${x(4)}-${x(7)}${x(6)}-${x(8)}${x(9)}-${x(10)}${x(11)}${x(12)}${x(13)}${x(14)}${x(15)}`;
}

export function readGuid(r: Reader, what = 'EFI_GUID'): string {
  return guidToString(r.bytes(16, what));
}

/** Well-known GUIDs (UEFI spec, PI spec, shim). */
export const GUIDS = {
  EFI_GLOBAL_VARIABLE: '8be4df61-93ca-11d2-aa0d-00e098032b8c',
  EFI_IMAGE_SECURITY_DATABASE: 'd719b2cb-3d3a-4596-a3bc-dad00e67656f',
  SHIM_LOCK: '605dab50-e046-4300-abb6-3dd810dd8b23',
  EFI_CERT_X509: 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072',
  EFI_CERT_SHA256: 'c1c41626-504c-4092-aca9-41f936934328',
} as const;

/** EFI_SIGNATURE_LIST SignatureType GUIDs (UEFI 2.10 §32.4.1.1). */
const CERT_TYPES: Record<string, string> = {
  'a5c059a1-94e4-4aa7-87b5-ab155c2bf072': 'x509',
  'c1c41626-504c-4092-aca9-41f936934328': 'sha256',
  '826ca512-cf10-4ac9-b187-be01496631bd': 'sha1',
  '0b6e5233-a65c-44c9-9407-d9ab83bfc8bd': 'sha224',
  'ff3e5307-9fd0-48c9-85f1-8ad56c701e01': 'sha384',
  '093e0fae-a6c4-4f50-9f1b-d41e2b89c19a': 'sha512',
  '3c5766e8-269c-4e34-aa14-ed776e85b3b6': 'rsa2048',
  'e2b36190-879b-4a3d-ad8d-f2e7bba32784': 'rsa2048-sha256',
  '67f8444f-8743-48f1-a328-1eaab8736080': 'rsa2048-sha1',
  '3bd2a492-96c0-4079-b420-fcf98ef103ed': 'x509-sha256',
  '7076876e-80c2-4ee6-aad2-28b349a6865b': 'x509-sha384',
  '446dbf63-2502-4cda-bcfa-2465d2b0fe9d': 'x509-sha512',
  '4aafd29d-68df-49ee-8aa9-347d375665a7': 'pkcs7',
};

/** Configuration tables seen in EV_EFI_HANDOFF_TABLES (UEFI 2.10 §4.6). */
export const TABLE_NAMES: Record<string, string> = {
  'eb9d2d31-2d88-11d3-9a16-0090273fc14d': 'SMBIOS',
  'f2fd1544-9794-4a2c-992e-e5bbcf20e394': 'SMBIOS3',
  '8868e871-e4f1-11d3-bc22-0080c73c8881': 'ACPI_20',
  'eb9d2d30-2d88-11d3-9a16-0090273fc14d': 'ACPI',
  'eb9d2d32-2d88-11d3-9a16-0090273fc14d': 'SAL_SYSTEM',
  'eb9d2d2f-2d88-11d3-9a16-0090273fc14d': 'MPS',
};

/** Decodes CHAR16 (UCS-2 LE) text, stopping at the first NUL. */
export function ucs2(b: Buffer): string {
  const n = b.length & ~1;
  let end = 0;
  while (end < n && (b[end] !== 0 || b[end + 1] !== 0)) end += 2;
  return b.toString('utf16le', 0, end);
}

/** Latin-1 text up to the first NUL. */
export function ascii(b: Buffer): string {
  const z = b.indexOf(0);
  return b.toString('latin1', 0, z < 0 ? b.length : z);
}

/** True if `b` looks like UCS-2 LE text: even length, mostly printable ASCII with zero high bytes. */
export function looksUcs2(b: Buffer): boolean {
  if (b.length < 2 || b.length % 2 !== 0) return false;
  let chars = 0;
  for (let i = 0; i < b.length; i += 2) {
    const c = b[i] | (b[i + 1] << 8);
    if (c === 0) break;
    if (b[i + 1] !== 0 || !isPrintable(b[i])) return false;
    chars++;
  }
  return chars > 0;
}

function isPrintable(c: number): boolean {
  return (c >= 0x20 && c < 0x7f) || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** True if `b` is printable ASCII, optionally NUL-terminated (trailing NULs allowed). */
export function looksAscii(b: Buffer): boolean {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  if (end === 0) return false;
  for (let i = 0; i < end; i++) if (!isPrintable(b[i])) return false;
  return true;
}

/** Subjects of certificates already seen (the same CA certificates recur in every log), by SHA-256. */
const SUBJECTS = new Map<string, string | undefined>();
const MAX_CACHED = 512;

/** X.509 subject as one line ("CN=..., O=..."), or undefined when node:crypto cannot parse it. */
export function x509Subject(der: Buffer): string | undefined {
  if (der.length < 4 || der[0] !== 0x30) return undefined;
  const key = createHash('sha256').update(der).digest('base64');
  if (SUBJECTS.has(key)) return SUBJECTS.get(key);
  let subject: string | undefined;
  try {
    subject = new X509Certificate(der).subject.split('\n').join(', ');
  } catch {
    subject = undefined;
  }
  if (SUBJECTS.size >= MAX_CACHED) SUBJECTS.delete(SUBJECTS.keys().next().value!);
  SUBJECTS.set(key, subject);
  return subject;
}

/** Upper bound on signatures per variable, against pathological SignatureSize values. */
const MAX_SIGNATURES = 1 << 16;

/**
 * Parses a sequence of EFI_SIGNATURE_LISTs (the data of PK, KEK, db, dbx, MokList, ...).
 * @throws EventLogError on sizes that do not fit
 */
export function parseSignatureLists(data: Buffer, base = 0): EfiSignatureList[] {
  const r = new Reader(data, base);
  const lists: EfiSignatureList[] = [];
  let total = 0;
  while (r.remaining > 0) {
    const start = r.pos;
    const type = readGuid(r, 'SignatureType');
    const listSize = r.u32('SignatureListSize');
    const headerSize = r.u32('SignatureHeaderSize');
    const sigSize = r.u32('SignatureSize');
    if (listSize < 28 || listSize - 28 > r.remaining + 0) r.fail('BAD_SIZE', `SignatureListSize ${listSize} does not fit (${r.remaining + 28} bytes left)`, start + 16);
    if (headerSize > listSize - 28) r.fail('BAD_SIZE', `SignatureHeaderSize ${headerSize} exceeds the list`, start + 20);
    const body = listSize - 28 - headerSize;
    if (sigSize < 16 || body % sigSize !== 0) r.fail('BAD_SIZE', `SignatureSize ${sigSize} does not divide the ${body}-byte list body`, start + 24);
    r.skip(headerSize, 'SignatureHeader');
    const typeName = Object.hasOwn(CERT_TYPES, type) ? CERT_TYPES[type] : undefined;
    const signatures: (EfiSignature & { subject?: string })[] = [];
    const count = body / sigSize;
    total += count;
    if (total > MAX_SIGNATURES) r.fail('BAD_SIZE', `more than ${MAX_SIGNATURES} signatures`);
    for (let i = 0; i < count; i++) {
      const owner = readGuid(r, 'SignatureOwner');
      const d = r.bytes(sigSize - 16, 'SignatureData');
      const subject = typeName === 'x509' ? x509Subject(d) : undefined;
      signatures.push(subject === undefined ? { owner, data: d } : { owner, data: d, subject });
    }
    lists.push(typeName ? { type, typeName, signatures } : { type, signatures });
  }
  return lists;
}

/** EFI_LOAD_OPTION (UEFI 2.10 §3.1.3), the data of Boot#### variables. */
export interface EfiLoadOption {
  attributes: number;
  description: string;
  /** The FilePathList rendered as text. */
  devicePath: string;
  optionalData: Buffer;
}
