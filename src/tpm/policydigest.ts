/**
 * Policy digests computed in software (Part 1 §19.7, Part 3 §23), so the server can bind a
 * secret to PCR values without a TPM. Each function extends `prev` as the TPM would extend
 * policySession→policyDigest; start from `policyZero(hashAlg)`.
 * @module
 */
import { TPM_CC } from './constants.ts';
import { TpmError } from './errors.ts';
import { marshal } from './marshal.ts';
import { writePCRSelection, hashInfo, type TPMSPCRSelection } from './structures.ts';
import { hash } from './crypto.ts';
import type { BankName, PcrValues } from '../pcrs.ts';

/** The initial policy digest: digest-size zeros (Part 3 §23.1). */
export function policyZero(hashAlg: number): Buffer {
  return Buffer.alloc(hashInfo(hashAlg).size);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/**
 * The concatenation of the selected PCR values in selection order (banks in TPML order, PCRs
 * ascending) — the input of PolicyPCR's pcrDigest and of a quote's pcrDigest.
 * @throws TpmError('UNSUPPORTED') when a selected value is missing or the wrong size.
 */
export function concatPcrValues(selection: TPMSPCRSelection[], values: PcrValues): Buffer {
  const parts: Buffer[] = [];
  for (const s of selection) {
    const info = hashInfo(s.hash);
    const bank = values.get(info.bank as BankName);
    for (const i of [...s.pcrs].sort((a, b) => a - b)) {
      const v = bank?.get(i);
      if (!v || v.length !== info.size) throw new TpmError('UNSUPPORTED', `policy: no ${info.size}-byte value for PCR ${info.bank}:${i}`);
      parts.push(v);
    }
  }
  return Buffer.concat(parts);
}

/**
 * TPM2_PolicyPCR, Part 3 §23.7: H(prev ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ pcrDigest),
 * pcrDigest = H(selected PCR values concatenated), both with the policy's hash.
 */
export function policyPCR(hashAlg: number, prev: Buffer, selection: TPMSPCRSelection[], values: PcrValues): Buffer {
  const pcrDigest = hash(hashAlg, concatPcrValues(selection, values));
  return hash(hashAlg, prev, u32(TPM_CC.PolicyPCR), marshal((w) => writePCRSelection(w, selection)), pcrDigest);
}

/** PolicyPCR from a fresh session: the authPolicy of an object sealed to these PCR values. */
export function policyPCRDigest(selection: TPMSPCRSelection[], values: PcrValues, hashAlg: number): Buffer {
  return policyPCR(hashAlg, policyZero(hashAlg), selection, values);
}

/**
 * TPM2_PolicyOR, Part 3 §23.6: H(0…0 ‖ TPM_CC_PolicyOR ‖ digest₁ ‖ … ‖ digestₙ), 2 ≤ n ≤ 8.
 * @throws TpmError('UNSUPPORTED') for a wrong branch count or size.
 */
export function policyOR(hashAlg: number, branches: Buffer[]): Buffer {
  const size = hashInfo(hashAlg).size;
  if (branches.length < 2 || branches.length > 8) throw new TpmError('UNSUPPORTED', `PolicyOR takes 2 to 8 branches, got ${branches.length}`);
  for (const b of branches) if (b.length !== size) throw new TpmError('UNSUPPORTED', `PolicyOR branch of ${b.length} bytes, expected ${size}`);
  return hash(hashAlg, policyZero(hashAlg), u32(TPM_CC.PolicyOR), ...branches);
}

/** TPM2_PolicyCommandCode, Part 3 §23.11: H(prev ‖ TPM_CC_PolicyCommandCode ‖ code). */
export function policyCommandCode(hashAlg: number, prev: Buffer, code: number): Buffer {
  return hash(hashAlg, prev, u32(TPM_CC.PolicyCommandCode), u32(code));
}

/**
 * TPM2_PolicySecret, Part 3 §23.4 (policyRef empty): H(H(prev ‖ TPM_CC_PolicySecret ‖ authName) ‖ policyRef).
 * With authName = TPM_RH_ENDORSEMENT this is the default EK policy (TCG EK Credential Profile §B.3.3).
 */
export function policySecret(hashAlg: number, prev: Buffer, authName: Buffer, policyRef: Buffer = Buffer.alloc(0)): Buffer {
  return hash(hashAlg, hash(hashAlg, prev, u32(TPM_CC.PolicySecret), authName), policyRef);
}
