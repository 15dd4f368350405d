/**
 * Session and policy commands: Part 3 §11.1 (StartAuthSession), §23.4 (PolicySecret),
 * §23.6 (PolicyOR), §23.7 (PolicyPCR), §23.11 (PolicyCommandCode), §23.19 (PolicyGetDigest),
 * §23.18 (PolicyPassword), §23.20 (PolicyRestart).
 *
 * Policy commands also have an offline form (`policy*Digest`) that updates a policy digest the
 * way the TPM does (Part 3 §23.2.1: policyDigest_new = H(policyDigest_old ‖ TPM_CC ‖ args)),
 * so the server can compute the same digests from the same values.
 * @module
 */
import { TPM_CC } from '../constants.ts';
import { Writer } from '../marshal.ts';
import { hashInfo, writePCRSelection, writeSymDef, type TPMSPCRSelection, type TPMTSymDef } from '../structures.ts';
import { hash } from '../crypto.ts';
import type { AuthHandle, Handle, Tpm } from '../tpm.ts';
import type { AuthSession, Session } from '../session.ts';
export { FlushContext } from './object.ts';

/** TPM2_StartAuthSession, Part 3 §11.1. */
export async function StartAuthSession(
  tpm: Tpm,
  req: { tpmKey: Handle; bind: Handle; nonceCaller: Buffer; encryptedSalt: Buffer; sessionType: number; symmetric: TPMTSymDef; authHash: number },
): Promise<{ sessionHandle: number; nonceTPM: Buffer }> {
  const w = new Writer().tpm2b(req.nonceCaller).tpm2b(req.encryptedSalt).u8(req.sessionType);
  writeSymDef(w, req.symmetric);
  w.u16(req.authHash);
  const { handles, params: r } = await tpm.execute({ cc: TPM_CC.StartAuthSession, handles: [req.tpmKey, req.bind], params: w.finish(), responseHandles: 1 });
  const nonceTPM = r.tpm2b('TPM2B_NONCE nonceTPM', 64);
  r.done();
  return { sessionHandle: handles[0], nonceTPM };
}

function policyHandle(s: AuthSession | number): number {
  return typeof s === 'number' ? s : s.handle;
}

/** TPM2_PolicySecret, Part 3 §23.4: authHandle's authorization (e.g. TPM_RH_ENDORSEMENT) satisfies the policy. */
export async function PolicySecret(
  tpm: Tpm,
  req: { authHandle: AuthHandle; policySession: AuthSession | number; nonceTPM?: Buffer; cpHashA?: Buffer; policyRef?: Buffer; expiration?: number },
  ...sessions: Session[]
): Promise<{ timeout: Buffer; policyTicket: { tag: number; hierarchy: number; digest: Buffer } }> {
  const w = new Writer().tpm2b(req.nonceTPM ?? Buffer.alloc(0)).tpm2b(req.cpHashA ?? Buffer.alloc(0)).tpm2b(req.policyRef ?? Buffer.alloc(0)).u32((req.expiration ?? 0) >>> 0);
  const { params: r } = await tpm.execute({
    cc: TPM_CC.PolicySecret, handles: [{ auth: req.authHandle }, policyHandle(req.policySession)], params: w.finish(), sessions, decryptable: true, encryptable: true,
  });
  const timeout = r.tpm2b('TPM2B_TIMEOUT timeout', 8);
  const policyTicket = { tag: r.u16('TPMT_TK_AUTH.tag'), hierarchy: r.u32('TPMT_TK_AUTH.hierarchy'), digest: r.tpm2b('TPMT_TK_AUTH.digest', 64) };
  r.done();
  return { timeout, policyTicket };
}

/** TPM2_PolicyPCR, Part 3 §23.7: pcrDigest empty = the TPM's current values. */
export async function PolicyPCR(tpm: Tpm, req: { policySession: AuthSession | number; pcrDigest?: Buffer; pcrs: TPMSPCRSelection[] }, ...sessions: Session[]): Promise<void> {
  const w = new Writer().tpm2b(req.pcrDigest ?? Buffer.alloc(0));
  writePCRSelection(w, req.pcrs);
  const { params } = await tpm.execute({ cc: TPM_CC.PolicyPCR, handles: [policyHandle(req.policySession)], params: w.finish(), sessions, decryptable: true });
  params.done();
}

/** TPM2_PolicyOR, Part 3 §23.6. */
export async function PolicyOR(tpm: Tpm, req: { policySession: AuthSession | number; pHashList: Buffer[] }, ...sessions: Session[]): Promise<void> {
  const w = new Writer().u32(req.pHashList.length);
  for (const d of req.pHashList) w.tpm2b(d);
  const { params } = await tpm.execute({ cc: TPM_CC.PolicyOR, handles: [policyHandle(req.policySession)], params: w.finish(), sessions });
  params.done();
}

/** TPM2_PolicyCommandCode, Part 3 §23.11. */
export async function PolicyCommandCode(tpm: Tpm, req: { policySession: AuthSession | number; code: number }, ...sessions: Session[]): Promise<void> {
  const { params } = await tpm.execute({ cc: TPM_CC.PolicyCommandCode, handles: [policyHandle(req.policySession)], params: new Writer().u32(req.code).finish(), sessions });
  params.done();
}

/** TPM2_PolicyPassword, Part 3 §23.18: the authValue is then sent in clear. */
export async function PolicyPassword(tpm: Tpm, req: { policySession: AuthSession }): Promise<void> {
  const { params } = await tpm.execute({ cc: TPM_CC.PolicyPassword, handles: [req.policySession.handle], params: Buffer.alloc(0) });
  params.done();
  req.policySession.passwordNeeded = true;
}

/** TPM2_PolicyGetDigest, Part 3 §23.19. */
export async function PolicyGetDigest(tpm: Tpm, req: { policySession: AuthSession | number }, ...sessions: Session[]): Promise<{ policyDigest: Buffer }> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.PolicyGetDigest, handles: [policyHandle(req.policySession)], params: Buffer.alloc(0), sessions, encryptable: true });
  const policyDigest = r.tpm2b('TPM2B_DIGEST policyDigest', 64);
  r.done();
  return { policyDigest };
}

/** TPM2_PolicyRestart, Part 3 §23.20 (resets a policy session's digest). */
export async function PolicyRestart(tpm: Tpm, req: { sessionHandle: AuthSession | number }): Promise<void> {
  const { params } = await tpm.execute({ cc: TPM_CC.PolicyRestart, handles: [policyHandle(req.sessionHandle)], params: Buffer.alloc(0) });
  params.done();
}

// ---------- offline policy digests (Part 3 §23.2.1) ----------

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

/** The initial policy digest: all zeros of the hash size. */
export function policyStart(hashAlg: number): Buffer {
  return Buffer.alloc(hashInfo(hashAlg).size);
}

/** PolicySecret/PolicySigned update, Part 3 §23.2.4 (PolicyUpdate): H(H(old ‖ cc ‖ authName) ‖ policyRef). */
export function policySecretDigest(hashAlg: number, old: Buffer, authName: Buffer, policyRef: Buffer = Buffer.alloc(0)): Buffer {
  return hash(hashAlg, hash(hashAlg, old, u32(TPM_CC.PolicySecret), authName), policyRef);
}

/** PolicyPCR update, Part 3 §23.7: H(old ‖ cc ‖ TPML_PCR_SELECTION ‖ pcrDigest). */
export function policyPCRDigest(hashAlg: number, old: Buffer, pcrs: TPMSPCRSelection[], pcrDigest: Buffer): Buffer {
  const w = new Writer();
  writePCRSelection(w, pcrs);
  return hash(hashAlg, old, u32(TPM_CC.PolicyPCR), w.finish(), pcrDigest);
}

/** PolicyOR update, Part 3 §23.6: H(zeros ‖ cc ‖ digests...). */
export function policyORDigest(hashAlg: number, digests: Buffer[]): Buffer {
  return hash(hashAlg, policyStart(hashAlg), u32(TPM_CC.PolicyOR), ...digests);
}

/** PolicyCommandCode update, Part 3 §23.11. */
export function policyCommandCodeDigest(hashAlg: number, old: Buffer, code: number): Buffer {
  return hash(hashAlg, old, u32(TPM_CC.PolicyCommandCode), u32(code));
}
