/**
 * tpm2-tools' PCR output files (`tpm2_quote -o`, `tpm2_pcrread -o`):
 * - `-F serialized` (the default): the tools' C structures dumped in host (little-endian)
 *   byte order, as checked against tpm2-tools 5.4's output:
 *   UINT32 count ‖ TPMS_PCR_SELECTION[16] (each 8 bytes: UINT16 hash, UINT8 sizeofSelect,
 *   UINT8 pcrSelect[4], 1 pad byte) ‖ UINT32 number of digest lists ‖ TPML_DIGEST[n]
 *   (each UINT32 count ‖ 8 × (UINT16 size ‖ BYTE[64])). Values follow the selection order
 *   (banks in order, PCRs ascending), at most 8 per list.
 * - `-F values`: the digests concatenated in selection order (the selection must come from
 *   elsewhere, e.g. the quote).
 * Parsers throw only TpmError('MARSHAL').
 * @module
 */
import { TpmError } from './errors.ts';
import { HASH_INFO } from './constants.ts';
import type { TPMSPCRSelection } from './structures.ts';
import type { BankName, PcrValues } from '../pcrs.ts';

const SEL_ENTRY = 8;
const SEL_MAX = 16;
const DIGEST_ENTRY = 66;
const LIST_SIZE = 4 + 8 * DIGEST_ENTRY;
const HEADER = 4 + SEL_MAX * SEL_ENTRY;

function bad(ctx: string, msg: string): never {
  throw new TpmError('MARSHAL', `${ctx}: ${msg}`);
}

/** Assigns digests to the selection in order; checks sizes. */
function assign(selection: TPMSPCRSelection[], digests: Buffer[], ctx: string): PcrValues {
  const out: PcrValues = new Map();
  let k = 0;
  for (const s of selection) {
    const info = HASH_INFO.get(s.hash);
    if (!info) bad(ctx, `unknown bank 0x${s.hash.toString(16)}`);
    const bank = out.get(info.bank as BankName) ?? new Map<number, Buffer>();
    for (const i of s.pcrs) {
      const d = digests[k++];
      if (!d) bad(ctx, `no value for PCR ${info.bank}:${i}`);
      if (d.length !== info.size) bad(ctx, `PCR ${info.bank}:${i} has ${d.length} bytes, expected ${info.size}`);
      bank.set(i, d);
    }
    out.set(info.bank as BankName, bank);
  }
  if (k !== digests.length) bad(ctx, `${digests.length - k} values more than the selection has`);
  return out;
}

/** Parses the `serialized` format: the selection it records and the values. */
export function parsePcrsSerialized(buf: Uint8Array, ctx = 'PCR file'): { selection: TPMSPCRSelection[]; values: PcrValues } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER + 4) bad(ctx, `${b.length} bytes is too short for tpm2-tools' serialized PCR format`);
  const count = b.readUInt32LE(0);
  if (count > SEL_MAX) bad(ctx, `selection count ${count} exceeds ${SEL_MAX}`);
  const selection: TPMSPCRSelection[] = [];
  for (let i = 0; i < count; i++) {
    const o = 4 + i * SEL_ENTRY;
    const hash = b.readUInt16LE(o);
    const size = b[o + 2];
    if (size > 4) bad(ctx, `sizeofSelect ${size} exceeds 4`);
    const pcrs: number[] = [];
    for (let p = 0; p < size * 8; p++) if (b[o + 3 + (p >> 3)] & (1 << (p & 7))) pcrs.push(p);
    selection.push({ hash, pcrs });
  }
  const lists = b.readUInt32LE(HEADER);
  if (lists > 16) bad(ctx, `digest list count ${lists} is too large`);
  if (b.length !== HEADER + 4 + lists * LIST_SIZE) bad(ctx, `${b.length} bytes, expected ${HEADER + 4 + lists * LIST_SIZE} for ${lists} digest list(s)`);
  const digests: Buffer[] = [];
  for (let l = 0; l < lists; l++) {
    const o = HEADER + 4 + l * LIST_SIZE;
    const n = b.readUInt32LE(o);
    if (n > 8) bad(ctx, `digest list ${l} has count ${n} > 8`);
    for (let j = 0; j < n; j++) {
      const d = o + 4 + j * DIGEST_ENTRY;
      const size = b.readUInt16LE(d);
      if (size > 64) bad(ctx, `digest size ${size} exceeds 64`);
      digests.push(Buffer.from(b.subarray(d + 2, d + 2 + size)));
    }
  }
  return { selection, values: assign(selection, digests, ctx) };
}

/** Parses the `values` format against a known selection (e.g. the quote's). */
export function parsePcrsValues(buf: Uint8Array, selection: TPMSPCRSelection[], ctx = 'PCR file'): PcrValues {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const digests: Buffer[] = [];
  let off = 0;
  for (const s of selection) {
    const info = HASH_INFO.get(s.hash);
    if (!info) bad(ctx, `unknown bank 0x${s.hash.toString(16)}`);
    for (let i = 0; i < s.pcrs.length; i++) {
      if (off + info.size > b.length) bad(ctx, `${b.length} bytes is too short for the selection`);
      digests.push(Buffer.from(b.subarray(off, off + info.size)));
      off += info.size;
    }
  }
  if (off !== b.length) bad(ctx, `${b.length - off} trailing bytes after the selected values`);
  return assign(selection, digests, ctx);
}

/** Either format: serialized when its layout fits, else values against `selection`. */
export function parseTpm2ToolsPcrs(buf: Uint8Array, selection?: TPMSPCRSelection[], ctx = 'PCR file'): PcrValues {
  const lists = buf.length >= HEADER + 4 ? Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readUInt32LE(HEADER) : -1;
  if (lists >= 0 && lists <= 16 && buf.length === HEADER + 4 + lists * LIST_SIZE) return parsePcrsSerialized(buf, ctx).values;
  if (!selection) bad(ctx, 'not in tpm2-tools\' serialized PCR format (and no selection for the values format)');
  return parsePcrsValues(buf, selection, ctx);
}
