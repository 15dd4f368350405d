/**
 * TPM2_Quote in software: a genuine TPMS_ATTEST (Part 2 §10.12.12) — magic
 * TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE, qualifiedSigner = the AK's name, extraData =
 * the nonce, TPMS_CLOCK_INFO, firmwareVersion, TPMS_QUOTE_INFO {TPML_PCR_SELECTION, pcrDigest
 * = SHA-256 of the selected PCR values in selection order} — signed ECDSA P-256/SHA-256 with
 * the AK's private key (TPMT_SIGNATURE with r and s).
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../../src/tpm/constants.ts';
import { marshal } from '../../src/tpm/marshal.ts';
import { writePCRSelection, type TPMTSignature } from '../../src/tpm/structures.ts';
import type { PcrSelection } from '../../src/protocol/messages.ts';
import type { BankName, PcrValues } from '../../src/pcrs.ts';

const BANK_ALG: Record<string, number> = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384, sha512: TPM_ALG.SHA512 };

export interface SoftQuoteInput {
  akPrivate: KeyObject;
  akName: Buffer;
  nonce: Buffer;
  selection: PcrSelection[];
  pcrs: PcrValues;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  firmwareVersion?: bigint;
}

export function marshalQuoteAttest(o: Omit<SoftQuoteInput, 'akPrivate'>): Buffer {
  const sel = o.selection.map((s) => ({ hash: BANK_ALG[s.bank], pcrs: [...s.pcrs].sort((a, b) => a - b) }));
  const h = createHash('sha256');
  for (const s of o.selection) {
    for (const p of [...s.pcrs].sort((a, b) => a - b)) h.update(o.pcrs.get(s.bank as BankName)!.get(p)!);
  }
  const pcrDigest = h.digest();
  return marshal((w) => {
    w.u32(TPM_GENERATED_VALUE).u16(TPM_ST.ATTEST_QUOTE).tpm2b(o.akName).tpm2b(o.nonce);
    w.u64(o.clock).u32(o.resetCount).u32(o.restartCount).u8(1);
    w.u64(o.firmwareVersion ?? 0x2023_0101_0000_0000n);
    writePCRSelection(w, sel);
    w.tpm2b(pcrDigest);
  });
}

export function softQuote(o: SoftQuoteInput): { quote: Buffer; signature: TPMTSignature } {
  const quote = marshalQuoteAttest(o);
  const rs = sign('sha256', quote, { key: o.akPrivate, dsaEncoding: 'ieee-p1363' });
  return { quote, signature: { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, signatureR: rs.subarray(0, 32), signatureS: rs.subarray(32) } };
}
