/**
 * PCR values as every layer passes them around: bank name → PCR index → digest.
 * The JSON form, used by `--pcr-values` files and `eventlog replay --json`, is
 * `{"sha256": {"0": "<lowercase hex>", ...}, "sha1": {...}}`.
 * @module
 */
import { InputError } from './errors.ts';

/** Bank names as used throughout bootkey (and by tpm2-tools): */
export type BankName = 'sha1' | 'sha256' | 'sha384' | 'sha512' | 'sm3_256';
export const BANK_NAMES: readonly BankName[] = ['sha1', 'sha256', 'sha384', 'sha512', 'sm3_256'];
/** Digest sizes in bytes. */
export const BANK_SIZE: Record<BankName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64, sm3_256: 32 };
/** node:crypto hash names. */
export const BANK_HASH: Record<BankName, string> = { sha1: 'sha1', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512', sm3_256: 'sm3' };

export type PcrBank = Map<number, Buffer>;
export type PcrValues = Map<BankName, PcrBank>;

export function isBankName(s: string): s is BankName {
  return (BANK_NAMES as readonly string[]).includes(s);
}

export function pcrValuesToJson(v: PcrValues): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const bank of BANK_NAMES) {
    const b = v.get(bank);
    if (!b) continue;
    const o: Record<string, string> = {};
    for (const i of [...b.keys()].sort((x, y) => x - y)) o[String(i)] = b.get(i)!.toString('hex');
    out[bank] = o;
  }
  return out;
}

/** Parses the JSON form; unknown banks, bad indices and wrong digest sizes are InputErrors. */
export function pcrValuesFromJson(j: unknown): PcrValues {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new InputError('PCR_JSON', 'PCR values: expected an object {"sha256": {"0": "hex", ...}}');
  const out: PcrValues = new Map();
  for (const [bank, pcrs] of Object.entries(j as Record<string, unknown>)) {
    if (!isBankName(bank)) throw new InputError('PCR_JSON', `PCR values: unknown bank "${bank}"`);
    if (typeof pcrs !== 'object' || pcrs === null) throw new InputError('PCR_JSON', `PCR values: bank ${bank} is not an object`);
    const m: PcrBank = new Map();
    for (const [k, hex] of Object.entries(pcrs as Record<string, unknown>)) {
      const i = Number(k);
      if (!/^\d+$/.test(k) || i > 23) throw new InputError('PCR_JSON', `PCR values: bad PCR index "${k}" in bank ${bank}`);
      if (typeof hex !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(hex.replace(/^0x/, ''))) throw new InputError('PCR_JSON', `PCR values: ${bank}:${k} is not hex`);
      const d = Buffer.from(hex.replace(/^0x/, ''), 'hex');
      if (d.length !== BANK_SIZE[bank]) throw new InputError('PCR_JSON', `PCR values: ${bank}:${k} has ${d.length} bytes, expected ${BANK_SIZE[bank]}`);
      m.set(i, d);
    }
    out.set(bank, m);
  }
  return out;
}

/**
 * Reads quoted PCR values from a file's text: bootkey's JSON form, or tpm2-tools'
 * `tpm2_pcrread` YAML output (`sha256:` then lines `  0 : 0x3DCA...`). The PCRs listed are
 * taken as exactly the PCRs the quote covered.
 * @throws InputError naming the line.
 */
export function pcrValuesFromText(text: string): PcrValues {
  if (text.length > 1 << 20) throw new InputError('PCR_JSON', `PCR values: ${text.length} bytes is more than any PCR file`);
  const t = text.trim();
  if (t.startsWith('{')) {
    let j: unknown;
    try {
      j = JSON.parse(t);
    } catch (e) {
      throw new InputError('PCR_JSON', `PCR values: not valid JSON: ${(e as Error).message}`);
    }
    return pcrValuesFromJson(j);
  }
  const out: Record<string, Record<string, string>> = {};
  let bank: string | undefined;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trimEnd();
    if (!line.trim()) continue;
    const b = /^\s*(?:pcrs:\s*)?([a-z0-9_]+)\s*:\s*$/.exec(line);
    if (b) {
      if (b[1] === 'pcrs') continue;
      bank = b[1];
      if (!isBankName(bank)) throw new InputError('PCR_JSON', `PCR values: line ${n + 1}: unknown bank "${bank}"`);
      out[bank] ??= {};
      continue;
    }
    const v = /^\s+(\d+)\s*:\s*(?:0x)?([0-9a-fA-F]+)\s*$/.exec(line);
    if (!v || bank === undefined) throw new InputError('PCR_JSON', `PCR values: line ${n + 1}: expected "BANK:" or "  N : 0xHEX" (tpm2_pcrread output), got ${JSON.stringify(raw.slice(0, 60))}`);
    out[bank][v[1]] = v[2].toLowerCase();
  }
  if (!Object.keys(out).length) throw new InputError('PCR_JSON', 'PCR values: no bank found');
  return pcrValuesFromJson(out);
}
