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
