/**
 * Attestation: Part 3 §18.4 (Quote).
 * @module
 */
import { TPM_CC, TPM_ALG } from '../constants.ts';
import { Writer } from '../marshal.ts';
import { readSignature, writePCRSelection, type TPMSPCRSelection, type TPMTScheme, type TPMTSignature } from '../structures.ts';
import type { AuthHandle, Tpm } from '../tpm.ts';
import type { Session } from '../session.ts';

/** TPM2_Quote, Part 3 §18.4: `quoted` is the TPMS_ATTEST bytes (what tpm2_quote -m writes). */
export async function Quote(
  tpm: Tpm,
  req: { signHandle: AuthHandle; qualifyingData: Buffer; inScheme?: TPMTScheme; PCRselect: TPMSPCRSelection[] },
  ...sessions: Session[]
): Promise<{ quoted: Buffer; signature: TPMTSignature }> {
  const w = new Writer().tpm2b(req.qualifyingData);
  const s = req.inScheme ?? { scheme: TPM_ALG.NULL, hashAlg: TPM_ALG.NULL };
  w.u16(s.scheme);
  if (s.scheme !== TPM_ALG.NULL) w.u16(s.hashAlg);
  writePCRSelection(w, req.PCRselect);
  const { params: r } = await tpm.execute({ cc: TPM_CC.Quote, handles: [{ auth: req.signHandle }], params: w.finish(), sessions, decryptable: true, encryptable: true });
  const quoted = r.tpm2b('TPM2B_ATTEST quoted', 4096);
  const signature = readSignature(r);
  r.done();
  return { quoted, signature };
}

import { TpmError } from '../errors.ts';
import { unmarshalAttest, hashInfo, type TPMSAttest } from '../structures.ts';
import { TPM_ST } from '../constants.ts';
import { hash } from '../crypto.ts';
import { readPCRs } from './pcr.ts';
import type { BankName, PcrValues } from '../../pcrs.ts';

/** The PCR digest a quote over `sel` carries (Part 3 §18.4.1: H(PCR values in selection order)). */
export function pcrDigest(hashAlg: number, sel: TPMSPCRSelection[], values: PcrValues): Buffer {
  const parts: Buffer[] = [];
  for (const s of sel) {
    const bank = values.get(hashInfo(s.hash).bank as BankName);
    for (const p of s.pcrs) {
      const v = bank?.get(p);
      if (!v) throw new TpmError('VERIFY_PCR_DIGEST', `no value for PCR ${hashInfo(s.hash).bank}:${p}`);
      parts.push(v);
    }
  }
  return hash(hashAlg, ...parts);
}

/**
 * Quotes `selection` with the AK and reads the PCR values the quote covers; repeats (up to 3
 * times) when a PCR changed between the two, so the returned values always match the
 * quote's pcrDigest.
 */
export async function quotePCRs(
  tpm: Tpm,
  ak: { handle: number; name: Buffer; public: { nameAlg: number } },
  req: { selection: TPMSPCRSelection[]; nonce: Buffer },
): Promise<{ quoted: Buffer; attest: TPMSAttest; signature: TPMTSignature; pcrs: PcrValues }> {
  for (let attempt = 0; ; attempt++) {
    const q = await Quote(tpm, { signHandle: { handle: ak.handle, name: ak.name }, qualifyingData: req.nonce, PCRselect: req.selection });
    const attest = unmarshalAttest(q.quoted, 'TPM2_Quote quoted');
    if (attest.attested.type !== TPM_ST.ATTEST_QUOTE || !('pcrSelect' in attest.attested)) {
      throw new TpmError('MARSHAL', 'TPM2_Quote: the attestation is not a quote');
    }
    const fmt = (sel: TPMSPCRSelection[]): string =>
      sel.filter((x) => x.pcrs.length).map((x) => `${hashInfo(x.hash).bank}:${x.pcrs.join(',')}`).join('+') || '(nothing)';
    const asked = fmt(req.selection.map((x) => ({ hash: x.hash, pcrs: [...new Set(x.pcrs)].sort((a, b) => a - b) })));
    const got = fmt(attest.attested.pcrSelect);
    if (asked !== got) {
      // a TPM silently drops banks it has not allocated
      throw new TpmError('VERIFY_PCR_SELECTION', `TPM2_Quote: the TPM quoted ${got} but ${asked} was asked (PCR bank not allocated?)`);
    }
    const pcrs = await readPCRs(tpm, attest.attested.pcrSelect);
    const sigHash = 'hash' in q.signature ? q.signature.hash : ak.public.nameAlg;
    if (pcrDigest(sigHash, attest.attested.pcrSelect, pcrs).equals(attest.attested.pcrDigest)) return { quoted: q.quoted, attest, signature: q.signature, pcrs };
    if (attempt >= 2) throw new TpmError('VERIFY_PCR_DIGEST', 'TPM2_Quote: PCRs kept changing between the quote and PCR_Read');
  }
}
