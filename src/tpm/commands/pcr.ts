/**
 * PCR commands: Part 3 §22.4 (PCR_Read), §22.2 (PCR_Extend), and a reader of whole banks
 * that splits selections the TPM answers only in part (at most 8 digests per response,
 * TPML_DIGEST) and checks every returned selection against the request.
 * @module
 */
import { TPM_CC, TPM_CAP, HASH_INFO } from '../constants.ts';
import { TpmError } from '../errors.ts';
import { Writer } from '../marshal.ts';
import { readDigestList, readPCRSelection, writePCRSelection, hashInfo, type TPMSPCRSelection } from '../structures.ts';
import { isBankName, type BankName, type PcrValues } from '../../pcrs.ts';
import type { AuthHandle, Tpm } from '../tpm.ts';
import { GetCapability } from './startup.ts';

export interface PCRReadResponse {
  pcrUpdateCounter: number;
  pcrSelectionOut: TPMSPCRSelection[];
  pcrValues: Buffer[];
}

/** TPM2_PCR_Read, Part 3 §22.4: one call (the TPM returns at most 8 digests, and selectionOut says which). */
export async function PCR_Read(tpm: Tpm, req: { pcrSelectionIn: TPMSPCRSelection[] }): Promise<PCRReadResponse> {
  const w = new Writer();
  writePCRSelection(w, req.pcrSelectionIn);
  const { params } = await tpm.execute({ cc: TPM_CC.PCR_Read, handles: [], params: w.finish() });
  const pcrUpdateCounter = params.u32('pcrUpdateCounter');
  const pcrSelectionOut = readPCRSelection(params);
  const pcrValues = readDigestList(params);
  params.done();
  return { pcrUpdateCounter, pcrSelectionOut, pcrValues };
}

/** TPM2_PCR_Extend, Part 3 §22.2: digests is TPML_DIGEST_VALUES (one per bank). */
export async function PCR_Extend(tpm: Tpm, req: { pcrHandle: AuthHandle | number; digests: { hashAlg: number; digest: Buffer }[] }): Promise<void> {
  const w = new Writer().u32(req.digests.length);
  for (const d of req.digests) {
    if (d.digest.length !== hashInfo(d.hashAlg).size) throw new TpmError('UNSUPPORTED', `PCR_Extend: digest for 0x${d.hashAlg.toString(16)} has ${d.digest.length} bytes`);
    w.u16(d.hashAlg).bytes(d.digest);
  }
  const auth = typeof req.pcrHandle === 'number' ? { handle: req.pcrHandle } : req.pcrHandle;
  await tpm.execute({ cc: TPM_CC.PCR_Extend, handles: [{ auth }], params: w.finish() });
}

/** The PCR banks the TPM has allocated (TPM_CAP_PCRS), with their PCRs. */
export async function getPCRBanks(tpm: Tpm): Promise<TPMSPCRSelection[]> {
  const { capabilityData } = await GetCapability(tpm, { capability: TPM_CAP.PCRS, property: 0, propertyCount: 1 });
  if (capabilityData.capability !== TPM_CAP.PCRS) return [];
  return capabilityData.assignedPCR;
}

/**
 * Reads every requested PCR of every requested bank, repeating PCR_Read until all are read;
 * each response's selection is checked to be a subset of what was asked and to match the
 * number of digests. The PCR update counter must not change between calls (else it starts over).
 * @throws TpmError('MARSHAL') on an inconsistent answer, ('UNSUPPORTED') for a bank bootkey does not know.
 */
export async function readPCRs(tpm: Tpm, selection: TPMSPCRSelection[]): Promise<PcrValues> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const out: PcrValues = new Map();
    const todo = selection.map((s) => ({ hash: s.hash, pcrs: [...new Set(s.pcrs)].sort((a, b) => a - b) })).filter((s) => s.pcrs.length > 0);
    for (const s of todo) {
      const bank = hashInfo(s.hash).bank;
      if (!isBankName(bank)) throw new TpmError('UNSUPPORTED', `PCR bank ${bank}`);
      out.set(bank as BankName, new Map());
    }
    let counter: number | undefined;
    let changed = false;
    for (let guard = 0; todo.some((s) => s.pcrs.length) && guard < 64; guard++) {
      const ask = todo.filter((s) => s.pcrs.length);
      const rsp = await PCR_Read(tpm, { pcrSelectionIn: ask });
      if (counter !== undefined && rsp.pcrUpdateCounter !== counter) {
        changed = true;
        break;
      }
      counter = rsp.pcrUpdateCounter;
      let k = 0;
      let got = 0;
      for (const sel of rsp.pcrSelectionOut) {
        const want = ask.find((a) => a.hash === sel.hash);
        if (!want && sel.pcrs.length) throw new TpmError('MARSHAL', `TPM2_PCR_Read: returned bank 0x${sel.hash.toString(16)} that was not asked for`);
        const size = HASH_INFO.get(sel.hash)?.size;
        for (const p of sel.pcrs) {
          if (!want!.pcrs.includes(p)) throw new TpmError('MARSHAL', `TPM2_PCR_Read: returned PCR ${p} that was not asked for`);
          const d = rsp.pcrValues[k++];
          if (!d) throw new TpmError('MARSHAL', 'TPM2_PCR_Read: fewer digests than selected PCRs');
          if (d.length !== size) throw new TpmError('MARSHAL', `TPM2_PCR_Read: PCR ${p} digest has ${d.length} bytes, expected ${size}`);
          out.get(hashInfo(sel.hash).bank as BankName)!.set(p, d);
          want!.pcrs = want!.pcrs.filter((x) => x !== p);
          got++;
        }
      }
      if (k !== rsp.pcrValues.length) throw new TpmError('MARSHAL', 'TPM2_PCR_Read: more digests than selected PCRs');
      if (got === 0) {
        const missing = ask.map((a) => `${hashInfo(a.hash).bank}:${a.pcrs.join(',')}`).join(' ');
        throw new TpmError('UNSUPPORTED', `TPM2_PCR_Read: the TPM does not return PCRs ${missing} (bank not allocated?)`);
      }
    }
    if (!changed) return out;
  }
  throw new TpmError('TRANSPORT', 'TPM2_PCR_Read: PCRs kept changing while being read');
}
