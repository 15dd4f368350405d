/**
 * Per-event digest check: for the event types whose digest the PFP defines as the hash of
 * the event data (PFP 1.05 §10.4.1 Table 9 and §10.4.4), compare. Reports, never fails.
 * @module
 */
import { getHashes, hash } from 'node:crypto';
import { BANK_HASH, type BankName } from '../pcrs.ts';
import * as EV from './eventtypes.ts';
import type { DecodedEvent, DigestCheck } from './types.ts';

const AVAILABLE = new Set(getHashes());

/** The byte strings the digest may be the hash of, or undefined when the spec does not tie it to the data. */
function candidates(type: number, pcr: number, data: Buffer, decoded: DecodedEvent): Buffer[] | undefined {
  switch (type) {
    case EV.EV_SEPARATOR:
    case EV.EV_EFI_ACTION:
    case EV.EV_ACTION:
    case EV.EV_S_CRTM_VERSION:
    case EV.EV_OMIT_BOOT_DEVICE_EVENTS:
    case EV.EV_EFI_GPT_EVENT:
    case EV.EV_EFI_GPT_EVENT2:
    case EV.EV_EFI_VARIABLE_DRIVER_CONFIG:
    case EV.EV_EFI_VARIABLE_BOOT2:
      return [data];
    case EV.EV_EFI_VARIABLE_AUTHORITY:
      return authorityCandidates(data);
    case EV.EV_EFI_VARIABLE_BOOT:
      // PFP: the hash of UEFI_VARIABLE_DATA; some firmware hashes VariableData only.
      return decoded.kind === 'efi-variable' ? [data, decoded.data] : [data];
    case EV.EV_IPL: {
      // Command lines (PCR 8 grub, PCR 12 systemd-stub). grub hashes the text after its
      // "grub_cmd: " / "kernel_cmdline: " (RHEL: "grub_cmd ") prefix, with or without the NUL.
      if (pcr !== 8 && pcr !== 12) return undefined;
      const c = [data];
      let end = data.length;
      while (end > 0 && data[end - 1] === 0) end--;
      if (end !== data.length) c.push(data.subarray(0, end));
      const s = data.toString('latin1', 0, end);
      for (const cut of [s.indexOf(': ') + 2, s.indexOf(' ') + 1]) {
        if (cut <= 1) continue;
        c.push(data.subarray(cut, end));
        if (end !== data.length) c.push(data.subarray(cut, end + 1));
      }
      return c;
    }
  }
  return undefined;
}

/**
 * shim's EV_EFI_VARIABLE_AUTHORITY events carry a few bytes more than their UEFI_VARIABLE_DATA
 * (it sizes them with sizeof() of the struct), and shim < 15.3 hashes one byte less than it logs
 * (go-attestation issue 157): the prefixes that may be what was hashed. The GUID and name are
 * covered by each of them. Shared by the parser's display check and trusted.ts's binding.
 */
export function shimAuthorityPrefixes(data: Buffer): Buffer[] {
  if (data.length < 33) return [];
  const out = [data.subarray(0, data.length - 1)];
  const exact = 32n + data.readBigUInt64LE(16) * 2n + data.readBigUInt64LE(24);
  if (exact >= BigInt(data.length) || BigInt(data.length) - exact > 16n) return out;
  for (let n = Number(exact); n < data.length - 1; n++) out.push(data.subarray(0, n));
  return out;
}

function authorityCandidates(data: Buffer): Buffer[] {
  return [data, ...shimAuthorityPrefixes(data)];
}

/**
 * Does `bytes` hash to the digest in every bank of `digests`? Banks node:crypto cannot compute
 * (sm3) are skipped, not counted as a match; at least one bank must be checked. The one test of
 * "this data is what was measured" for the binding (trusted.ts) and command lines (cmdline.ts).
 */
export function hashesTo(digests: ReadonlyMap<BankName, Buffer>, bytes: Buffer): boolean {
  let checked = 0;
  for (const [bank, digest] of digests) {
    const alg = Object.hasOwn(BANK_HASH, bank) ? BANK_HASH[bank] : undefined;
    if (alg === undefined || !AVAILABLE.has(alg) || !Buffer.isBuffer(digest)) continue;
    checked++;
    if (!hash(alg, bytes, 'buffer').equals(digest)) return false;
  }
  return checked > 0;
}

/** Does every digest the event carries equal the hash of (one reading of) its data? */
export function checkDigest(type: number, pcr: number, data: Buffer, decoded: DecodedEvent, digests: Map<BankName, Buffer>, legacy = false): DigestCheck {
  const cands = candidates(type, pcr, data, decoded);
  // TCG 1.2-era UEFI firmware (SHA-1 logs) hashes only VariableData for EV_EFI_VARIABLE_DRIVER_CONFIG.
  if (cands && legacy && type === EV.EV_EFI_VARIABLE_DRIVER_CONFIG && decoded.kind === 'efi-variable') cands.push(decoded.data);
  if (!cands || digests.size === 0) return 'not-applicable';
  let checked = 0;
  let matched = 0;
  for (const [bank, digest] of digests) {
    const alg = BANK_HASH[bank];
    if (!AVAILABLE.has(alg)) continue;
    checked++;
    if (cands.some((c) => hash(alg, c, 'buffer').equals(digest))) matched++;
  }
  if (checked === 0) return 'not-applicable';
  if (matched === checked) return 'match';
  return 'mismatch';
}
