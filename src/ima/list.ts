/**
 * IMA measurement-list parser: the binary list (`binary_runtime_measurements`, per-bank
 * `binary_runtime_measurements_<bank>`) and the ASCII list (`ascii_runtime_measurements*`), as
 * Linux writes them (security/integrity/ima/ima_fs.c, ima_template_lib.c).
 *
 * Binary entry (little-endian; the template-digest size is NOT recorded: 20 bytes in the classic
 * and `_sha1` files, the bank's size in `_<bank>` files):
 *   u32 pcr | template hash | u32 name length | template name |
 *   template `ima`:  20-byte digest | u32 length | name (no NUL)          (no template-data length)
 *   other templates: u32 template-data length | fields, each u32 length | bytes
 * ASCII line: `PCR HASH TEMPLATE FIELD...`, each field after one space (an empty field leaves the
 * space), digests as `algo:hex`, strings raw, signatures and buffers hex.
 *
 * Bounded: every length is checked against what is left of the input before use; entries share
 * the input's memory (subarray); at most `maxEntries` entries. Errors are ImaParseErrors with the
 * byte offset or the line. Nothing here is trusted: see trusted.ts.
 * @module
 */
import { createHash } from 'node:crypto';
import { BANK_HASH, BANK_SIZE, isBankName, type BankName } from '../pcrs.ts';
import { ImaParseError } from './errors.ts';
import type { ImaEntry, ImaList } from './types.ts';

export interface ParseImaOptions {
  /** The bank of the template hashes when the caller knows it (from the file name). */
  bank?: BankName;
  /** Upper bound on entries (default 1,000,000). */
  maxEntries?: number;
  /** Index of the first entry (an incremental report that starts past entry 0; default 0). */
  firstIndex?: number;
}

export const DEFAULT_MAX_ENTRIES = 1_000_000;
/** IMA_EVENT_NAME_LEN_MAX: the `ima` template's name, hashed zero-padded to 256 bytes. */
export const IMA_EVENT_NAME_LEN_MAX = 255;
/** Template names are short ("ima-modsig"); the kernel's IMA_TEMPLATE_NAME_LEN_MAX is 15. */
const TEMPLATE_NAME_MAX = 32;
/** A template-data length above this is a bad field, not a cut list (buffers and keys are KiBs). */
const MAX_TEMPLATE_DATA = 16 << 20;
/** Templates whose fields this parser decodes, and their field lists (ima_template.c). */
export const KNOWN_TEMPLATES: Readonly<Record<string, readonly string[]>> = {
  ima: ['d', 'n'],
  'ima-ng': ['d-ng', 'n-ng'],
  'ima-ngv2': ['d-ngv2', 'n-ng'],
  'ima-sig': ['d-ng', 'n-ng', 'sig'],
  'ima-sigv2': ['d-ngv2', 'n-ng', 'sig'],
  'ima-buf': ['d-ng', 'n-ng', 'buf'],
  'ima-modsig': ['d-ng', 'n-ng', 'sig', 'd-modsig', 'modsig'],
};
/** Digest sizes of the algorithms a d-ng field may name (crypto/hash_info.c names). */
const ALGO_SIZE: Record<string, number> = { md5: 16, sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64, sm3: 32, 'sm3-256': 32, 'streebog256': 32, 'streebog512': 64, 'sha3-256': 32, 'sha3-384': 48, 'sha3-512': 64 };
const SIZE_BANK: Record<number, BankName> = { 20: 'sha1', 32: 'sha256', 48: 'sha384', 64: 'sha512' };

/** @throws ImaParseError (code and byte offset / line in the message) */
export function parseImaList(bytes: Uint8Array, opts: ParseImaOptions = {}): ImaList {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const max = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const first = opts.firstIndex ?? 0;
  if (!Number.isSafeInteger(first) || first < 0) throw new RangeError('parseImaList: firstIndex must be a non-negative integer');
  if (buf.length === 0 || ((buf[0] === 0x0a || buf[0] === 0x0d || buf[0] === 0x20) && /^\s*$/.test(buf.toString('latin1')))) {
    throw new ImaParseError('EMPTY', 'the list is empty', { byte: 0 });
  }
  // A binary list starts with a u32 PCR index (< 24, so its first byte is never an ASCII digit).
  if (buf[0] >= 0x30 && buf[0] <= 0x39) return parseAscii(buf, opts.bank, max, first);
  if (opts.bank) return parseBinary(buf, BANK_SIZE[opts.bank], opts.bank, max, first);
  return inferBinary(buf, max, first);
}

// ---------------------------------------------------------------------------------------------
// Binary

/** Tries every template-digest size; the one that parses the whole file wins (see module doc). */
function inferBinary(buf: Buffer, max: number, first: number): ImaList {
  const ok: ImaList[] = [];
  let best: ImaParseError | undefined;
  for (const size of [20, 32, 48, 64]) {
    try {
      ok.push(parseBinary(buf, size, SIZE_BANK[size], max, first));
    } catch (e) {
      if (!(e instanceof ImaParseError)) throw e;
      if (e.code === 'TOO_MANY') throw e;
      if (!best || e.offset > best.offset) best = e;
    }
  }
  if (ok.length === 1) return ok[0];
  if (ok.length === 0) {
    throw new ImaParseError('BAD_SIZE', `no template-digest size (20, 32, 48, 64 bytes) parses the whole list; give the bank (--bank, from the file name). Furthest attempt: ${best!.message}`, { byte: best!.offset });
  }
  // Several sizes parse (rare): the one whose recorded hashes are the hashes of the template data.
  const verified = ok.filter((l) => l.entries.some((e) => !e.violation && e.templateName !== 'ima') &&
    l.entries.every((e) => e.violation || e.templateName === 'ima' || createHash(BANK_HASH[l.bank]).update(e.templateData).digest().equals(e.templateHash)));
  if (verified.length === 1) return verified[0];
  throw new ImaParseError('BAD_SIZE', `the list parses with template digests of ${ok.map((l) => BANK_SIZE[l.bank]).join(' and ')} bytes; give the bank (--bank, from the file name)`, { byte: 0 });
}

function parseBinary(buf: Buffer, hashSize: number, bank: BankName, max: number, first: number): ImaList {
  const entries: ImaEntry[] = [];
  let unknown = 0;
  let off = 0;
  while (off < buf.length) {
    const index = first + entries.length;
    if (entries.length >= max) throw new ImaParseError('TOO_MANY', `more than ${max} entries`, { byte: off, entry: index });
    const at = { byte: off, entry: index };
    const need = (n: number, what: string) => {
      if (buf.length - off < n) throw new ImaParseError('TRUNCATED', `${what}: needs ${n} bytes, ${buf.length - off} left`, at);
    };
    need(4 + hashSize + 4, 'entry header');
    const pcr = buf.readUInt32LE(off);
    if (pcr > 23) throw new ImaParseError('BAD_PCR', `PCR index ${pcr}`, at);
    const templateHash = buf.subarray(off + 4, off + 4 + hashSize);
    const nameLen = buf.readUInt32LE(off + 4 + hashSize);
    if (nameLen === 0 || nameLen > TEMPLATE_NAME_MAX) throw new ImaParseError('BAD_TEMPLATE_NAME', `template name length ${nameLen}`, at);
    const entryStart = off;
    off += 8 + hashSize;
    need(nameLen, 'template name');
    const nameBytes = buf.subarray(off, off + nameLen);
    if (!nameBytes.every((c) => c > 0x20 && c < 0x7f)) throw new ImaParseError('BAD_TEMPLATE_NAME', `template name ${JSON.stringify(nameBytes.toString('latin1'))} is not printable`, at);
    const templateName = nameBytes.toString('latin1');
    off += nameLen;
    let templateData: Buffer;
    if (templateName === 'ima') {
      need(20 + 4, 'ima template digest and name length');
      const n = buf.readUInt32LE(off + 20);
      if (n > IMA_EVENT_NAME_LEN_MAX) throw new ImaParseError('BAD_LENGTH', `ima template name length ${n} (at most ${IMA_EVENT_NAME_LEN_MAX})`, at);
      need(24 + n, 'ima template name');
      templateData = buf.subarray(off, off + 24 + n);
      off += 24 + n;
    } else {
      need(4, 'template data length');
      const n = buf.readUInt32LE(off);
      off += 4;
      if (n > buf.length - off) {
        // A plausible length past the end is a cut list; an absurd one is a bad field.
        throw new ImaParseError(n <= MAX_TEMPLATE_DATA ? 'TRUNCATED' : 'BAD_LENGTH', `template data length ${n} runs past the end of the list (${buf.length - off} bytes left)`, at);
      }
      templateData = buf.subarray(off, off + n);
      off += n;
    }
    const violation = templateHash.every((b) => b === 0);
    const fields = decodeFields(templateName, templateData, at);
    if (!fields) unknown++;
    entries.push({ index, offset: entryStart, format: 'binary', pcr, templateHash, templateName, templateData, violation, ...fields });
  }
  return { format: 'binary', bank, entries, unknownTemplates: unknown };
}

type Decoded = Omit<ImaEntry, 'index' | 'offset' | 'pcr' | 'templateHash' | 'templateName' | 'templateData' | 'violation'>;

/** The decoded fields of a known template's data, or undefined for an unknown template. */
function decodeFields(template: string, data: Buffer, at: { byte?: number; line?: number; entry?: number }): Decoded | undefined {
  const ids = KNOWN_TEMPLATES[template];
  if (!ids) return undefined;
  if (template === 'ima') {
    const n = data.readUInt32LE(20);
    return { digestAlgo: 'sha1', digest: data.subarray(0, 20), path: data.subarray(24, 24 + n).toString('utf8') };
  }
  const raw: Buffer[] = [];
  let o = 0;
  for (const id of ids) {
    if (data.length - o < 4) throw new ImaParseError('BAD_FIELD', `${template}: template data ends before field ${id}`, at);
    const n = data.readUInt32LE(o);
    if (n > data.length - o - 4) throw new ImaParseError('BAD_FIELD', `${template}: field ${id} length ${n} runs past the template data`, at);
    raw.push(data.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  if (o !== data.length) throw new ImaParseError('BAD_FIELD', `${template}: ${data.length - o} bytes after the last field`, at);
  const out: { -readonly [K in keyof Decoded]: Decoded[K] } = {};
  ids.forEach((id, i) => {
    const f = raw[i];
    switch (id) {
      case 'd-ng':
      case 'd-ngv2': {
        const d = digestField(f, id, template, at, false)!;
        out.digestAlgo = d.algo; out.digest = d.digest;
        if (d.type !== undefined) out.digestType = d.type;
        break;
      }
      case 'n-ng': {
        // The name with its NUL terminator (ima_eventname_ng_init); the NUL is not part of the path.
        const s = f.length && f[f.length - 1] === 0 ? f.subarray(0, f.length - 1) : f;
        out.path = s.toString('utf8');
        break;
      }
      case 'sig': out.sig = f; break;
      case 'buf': out.buf = f; break;
      case 'd-modsig': {
        const d = digestField(f, id, template, at, true);
        if (d) { out.modsigDigestAlgo = d.algo; out.modsigDigest = d.digest; }
        break;
      }
      case 'modsig': out.modsig = f; break;
    }
  });
  return out;
}

/** d-ng: `algo:` NUL digest; d-ngv2: `type:algo:` NUL digest (ima_eventdigest_init_common). */
function digestField(f: Buffer, id: string, template: string, at: object, emptyOk: boolean): { algo: string; digest: Buffer; type?: string } | undefined {
  if (f.length === 0) {
    if (emptyOk) return undefined;
    throw new ImaParseError('BAD_FIELD', `${template}: empty ${id} field`, at);
  }
  const nul = f.indexOf(0);
  if (nul < 2 || f[nul - 1] !== 0x3a) throw new ImaParseError('BAD_FIELD', `${template}: ${id} field is not "algo:" NUL digest`, at);
  const prefix = f.subarray(0, nul - 1).toString('latin1');
  const parts = prefix.split(':');
  if (parts.length > (id === 'd-ngv2' ? 2 : 1) || !/^[a-z0-9_-]+$/.test(parts[parts.length - 1])) throw new ImaParseError('BAD_FIELD', `${template}: ${id} algorithm ${JSON.stringify(prefix.slice(0, 40))}`, at);
  const algo = parts[parts.length - 1];
  const digest = f.subarray(nul + 1);
  const size = ALGO_SIZE[algo];
  if (size !== undefined && digest.length !== size) throw new ImaParseError('BAD_FIELD', `${template}: ${algo} digest of ${digest.length} bytes (expected ${size})`, at);
  return parts.length === 2 ? { algo, digest, type: parts[0] } : { algo, digest };
}

// ---------------------------------------------------------------------------------------------
// ASCII

function parseAscii(buf: Buffer, bank: BankName | undefined, max: number, first: number): ImaList {
  const entries: ImaEntry[] = [];
  let unknown = 0;
  let listBank: BankName | undefined = bank;
  let lineNo = 0;
  let pos = 0;
  while (pos < buf.length) {
    let end = buf.indexOf(0x0a, pos);
    if (end < 0) end = buf.length;
    lineNo++;
    let line = buf.subarray(pos, end);
    pos = end + 1;
    if (line.length && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (line.length === 0) continue;
    const index = first + entries.length;
    const at = { line: lineNo, entry: index };
    if (entries.length >= max) throw new ImaParseError('TOO_MANY', `more than ${max} entries`, at);
    // PCR, template hash and template name: the first three space-separated tokens.
    const s1 = line.indexOf(0x20);
    const s2 = s1 < 0 ? -1 : line.indexOf(0x20, s1 + 1);
    const s3 = s2 < 0 ? -1 : line.indexOf(0x20, s2 + 1);
    if (s3 < 0) throw new ImaParseError('BAD_LINE', `expected "PCR TEMPLATE-HASH TEMPLATE FIELDS...", got ${JSON.stringify(line.subarray(0, 80).toString('latin1'))}`, at);
    const pcrText = line.subarray(0, s1).toString('latin1');
    if (!/^\d{1,2}$/.test(pcrText) || Number(pcrText) > 23) throw new ImaParseError('BAD_PCR', `PCR index ${JSON.stringify(pcrText.slice(0, 12))}`, at);
    const hashHex = line.subarray(s1 + 1, s2).toString('latin1');
    const templateHash = fromHex(hashHex);
    if (!templateHash || hashHex.length === 0) throw new ImaParseError('BAD_LINE', `template hash ${JSON.stringify(hashHex.slice(0, 140))} is not hex`, at);
    const size = templateHash.length;
    if (listBank === undefined) {
      listBank = SIZE_BANK[size];
      if (!listBank) throw new ImaParseError('BAD_SIZE', `a template hash of ${size} bytes is no bank's digest`, at);
    }
    if (size !== BANK_SIZE[listBank]) throw new ImaParseError('BAD_LINE', `template hash of ${size} bytes in a ${listBank} list (${BANK_SIZE[listBank]} bytes)`, at);
    const nameBytes = line.subarray(s2 + 1, s3);
    if (nameBytes.length === 0 || nameBytes.length > TEMPLATE_NAME_MAX || !nameBytes.every((c) => c > 0x20 && c < 0x7f)) {
      throw new ImaParseError('BAD_TEMPLATE_NAME', `template name ${JSON.stringify(nameBytes.subarray(0, 40).toString('latin1'))}`, at);
    }
    const templateName = nameBytes.toString('latin1');
    const rest = line.subarray(s3 + 1);
    const violation = templateHash.every((b) => b === 0);
    const base = { index, offset: lineNo, format: 'ascii' as const, pcr: Number(pcrText), templateHash, templateName, violation };
    if (!KNOWN_TEMPLATES[templateName]) {
      unknown++;
      entries.push({ ...base, templateData: Buffer.alloc(0), opaque: true, fieldsText: rest.toString('utf8') });
      continue;
    }
    const templateData = rebuildAscii(templateName, rest, at);
    entries.push({ ...base, templateData, ...decodeFields(templateName, templateData, at) });
  }
  if (entries.length === 0) throw new ImaParseError('EMPTY', 'no entry in the list', { line: Math.max(lineNo, 1) });
  return { format: 'ascii', bank: listBank!, entries, unknownTemplates: unknown };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** Hex → bytes; Buffer.from stops at the first non-hex pair, so a short result means bad hex. */
function fromHex(s: string): Buffer | undefined {
  const b = Buffer.from(s, 'hex');
  return b.length * 2 === s.length ? b : undefined;
}

function hexField(text: Buffer, what: string, at: object): Buffer {
  const s = text.toString('latin1');
  const b = fromHex(s);
  if (!b) throw new ImaParseError('BAD_FIELD', `${what} ${JSON.stringify(s.slice(0, 40))} is not hex`, at);
  return b;
}

/** `algo:hex` (d-ng) or `type:algo:hex` (d-ngv2) → the field as the kernel stores it. */
function digestText(text: Buffer, id: string, at: object): Buffer {
  const c = text.lastIndexOf(0x3a);
  if (c < 1) throw new ImaParseError('BAD_FIELD', `${id} ${JSON.stringify(text.subarray(0, 60).toString('latin1'))} is not "algo:hex"`, at);
  const digest = hexField(text.subarray(c + 1), `${id} digest`, at);
  return Buffer.concat([text.subarray(0, c + 1), Buffer.from([0]), digest]);
}

function lenPrefixed(b: Buffer): Buffer[] {
  return [u32(b.length), b];
}

/**
 * Rebuilds the template data (as the kernel hashes it) from an ASCII line's fields. Paths may hold
 * spaces: the name is everything between the digest and the fields after it, which are taken from
 * the right. An ima-sig / ima-buf line whose trailing space was stripped (copies of lists often
 * lose it) is read as an empty last field when its last word is not hex.
 */
function rebuildAscii(template: string, rest: Buffer, at: object): Buffer {
  const sp = rest.indexOf(0x20);
  if (sp < 0) throw new ImaParseError('BAD_LINE', `${template}: expected a digest and a name`, at);
  const dText = rest.subarray(0, sp);
  let tail = rest.subarray(sp + 1);
  if (template === 'ima') {
    const d = hexField(dText, 'ima digest', at);
    if (d.length !== 20) throw new ImaParseError('BAD_FIELD', `ima template digest of ${d.length} bytes (expected 20)`, at);
    if (tail.length > IMA_EVENT_NAME_LEN_MAX) throw new ImaParseError('BAD_LENGTH', `ima template name of ${tail.length} bytes (at most ${IMA_EVENT_NAME_LEN_MAX})`, at);
    return Buffer.concat([d, u32(tail.length), tail]);
  }
  const ids = KNOWN_TEMPLATES[template];
  const after = ids.length - 2; // fields after the name
  const right: Buffer[] = [];
  for (let k = 0; k < after; k++) {
    const c = tail.lastIndexOf(0x20);
    if (c < 0) {
      if (after === 1 && right.length === 0) { right.unshift(Buffer.alloc(0)); break; } // stripped trailing space
      throw new ImaParseError('BAD_LINE', `${template}: expected ${ids.length} fields`, at);
    }
    const word = tail.subarray(c + 1);
    if (after === 1 && word.length > 0 && !fromHex(word.toString('latin1'))) { right.unshift(Buffer.alloc(0)); break; }
    right.unshift(word);
    tail = tail.subarray(0, c);
  }
  const name = tail;
  const parts: Buffer[] = [...lenPrefixed(digestText(dText, ids[0], at)), ...lenPrefixed(Buffer.concat([name, Buffer.from([0])]))];
  ids.slice(2).forEach((id, i) => {
    const w = right[i];
    if (id === 'd-modsig') parts.push(...lenPrefixed(w.length ? digestText(w, id, at) : w));
    else parts.push(...lenPrefixed(hexField(w, id, at)));
  });
  return Buffer.concat(parts);
}

/** The bank a file name implies: `..._sha256` → sha256; `binary_runtime_measurements` → sha1. */
export function bankFromFileName(path: string): BankName | undefined {
  const m = /_runtime_measurements(?:_([a-z0-9_]+))?$/.exec(path);
  if (!m) return undefined;
  if (!m[1]) return 'sha1';
  return isBankName(m[1]) ? m[1] : m[1] === 'sm3' ? 'sm3_256' : undefined;
}
