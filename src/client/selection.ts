/** PCR selections: the wire form ({bank, pcrs}) ↔ the TPM form (TPMS_PCR_SELECTION {hash, pcrs}). @module */
import { TPM_ALG } from '../tpm/constants.ts';
import { hashInfo, type TPMSPCRSelection } from '../tpm/structures.ts';
import type { BankName } from '../pcrs.ts';
import type { PcrSelection } from '../protocol/index.ts';
import { ClientError } from './connect.ts';

export const BANK_ALG: Record<BankName, number> = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384, sha512: TPM_ALG.SHA512, sm3_256: TPM_ALG.SM3_256 };

export function toTpmSelection(sel: PcrSelection[]): TPMSPCRSelection[] {
  return sel.map((s) => {
    const hash = BANK_ALG[s.bank];
    if (hash === undefined) throw new ClientError('PROTOCOL', `the server selected unknown bank ${s.bank}`);
    return { hash, pcrs: [...s.pcrs] };
  });
}

export function toWireSelection(sel: TPMSPCRSelection[]): PcrSelection[] {
  return sel.map((s) => ({ bank: hashInfo(s.hash).bank as BankName, pcrs: [...s.pcrs] }));
}
