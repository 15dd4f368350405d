/**
 * Endorsement and attestation keys, go-attestation style:
 *
 * - {@link getEK}: the persistent EK (0x81010001 RSA / 0x81010002 ECC) when present and of the
 *   right type, else TPM2_CreatePrimary(TPM_RH_ENDORSEMENT) from the EK Credential Profile
 *   template (a transient object: flush it).
 * - {@link createAK}: a restricted signing PRIMARY under the endorsement hierarchy from a fixed
 *   template (noDA SET: power losses never lock it out), so one TPM gives the same AK on every
 *   boot without persistent storage.
 * - {@link readEKCertificate}: the EK certificate from NV (low then high range index).
 * - {@link startEKPolicySession}: a policy session satisfying the EK's authPolicy
 *   (PolicySecret(TPM_RH_ENDORSEMENT), plus PolicyOR for the high range), salted to a pinned EK
 *   public and parameter-encrypted.
 * - {@link activateCredential}: TPM2_ActivateCredential through that session.
 *
 * Names are as the TPM computes them (nameAlg ‖ H(TPMT_PUBLIC)), checked against the TPM's.
 * @module
 */
import { TPM_ALG, TPM_RH } from './constants.ts';
import { TPM_RC } from './rc.ts';
import { TpmError } from './errors.ts';
import { marshalPublic, type TPMTPublic } from './structures.ts';
import { objectName } from './crypto.ts';
import type { Tpm } from './tpm.ts';
import { CreatePrimary, ReadPublic, FlushContext, ActivateCredential, Import, Load, Unseal } from './commands/object.ts';
import { readNV } from './commands/nv.ts';
import { PolicySecret, PolicyOR, PolicyPCR } from './commands/session.ts';
import type { TPMSPCRSelection } from './structures.ts';
import { startPolicySession, type AuthSession } from './session.ts';
import {
  AK_TEMPLATE_CURRENT, EK_CERT_INDICES, EK_POLICY_A_SHA256, EK_POLICY_B_SHA256, EK_POLICY_C_SHA256, akTemplate, ekTemplate,
  type AKTemplateVersion, type EKRange, type KeyAlg,
} from './templates.ts';

/** A loaded key: its handle, public area (exact bytes too) and Name. */
export interface KeyHandle {
  handle: number;
  public: TPMTPublic;
  publicBytes: Buffer;
  name: Buffer;
  /** True for a transient object this code created (flush it); false for a persistent one. */
  transient: boolean;
}

/** Flushes a transient key (no-op for persistent ones). */
export async function flushKey(tpm: Tpm, k: KeyHandle | undefined): Promise<void> {
  if (k?.transient) await FlushContext(tpm, { flushHandle: k.handle });
}

/** TPM2_CreatePrimary with a template, checking the TPM's Name against ours. */
export async function createPrimary(tpm: Tpm, hierarchy: number, template: TPMTPublic): Promise<KeyHandle> {
  const r = await CreatePrimary(tpm, { primaryHandle: hierarchy, inPublic: template });
  const name = objectName(r.outPublic);
  if (!name.equals(r.name)) {
    await FlushContext(tpm, { flushHandle: r.objectHandle }).catch(() => undefined);
    throw new TpmError('VERIFY_NAME', `TPM2_CreatePrimary: the TPM's Name ${r.name.toString('hex')} is not the Name of its public area ${name.toString('hex')}`);
  }
  return { handle: r.objectHandle, public: r.outPublic, publicBytes: r.outPublicBytes, name, transient: true };
}

/** Reads a loaded/persistent object; undefined when the handle is not there. */
export async function readKey(tpm: Tpm, handle: number): Promise<KeyHandle | undefined> {
  try {
    const r = await ReadPublic(tpm, { objectHandle: handle });
    const name = objectName(r.outPublic);
    if (!name.equals(r.name)) throw new TpmError('VERIFY_NAME', `TPM2_ReadPublic: Name mismatch for 0x${handle.toString(16)}`);
    return { handle, public: r.outPublic, publicBytes: r.outPublicBytes, name, transient: (handle >>> 24) === 0x80 };
  } catch (e) {
    if (e instanceof TpmError && e.code === 'TPM_RC' && (e.is(TPM_RC.HANDLE) || e.is(TPM_RC.VALUE))) return undefined;
    throw e;
  }
}

const EK_PERSISTENT: Record<KeyAlg, number> = { rsa: 0x81010001, ecc: 0x81010002 };

function sameShape(p: TPMTPublic, t: TPMTPublic): boolean {
  if (p.type !== t.type) return false;
  if (p.type === TPM_ALG.ECC && t.type === TPM_ALG.ECC) return p.parameters.curveID === t.parameters.curveID;
  if (p.type === TPM_ALG.RSA && t.type === TPM_ALG.RSA) return p.parameters.keyBits === t.parameters.keyBits;
  return true;
}

/**
 * The EK: the persistent one at 0x81010001 (RSA) / 0x81010002 (ECC) when present and of the
 * template's type (and key size/curve), else a transient primary from the template.
 * `persistent: false` forces CreatePrimary.
 */
export async function getEK(tpm: Tpm, alg: KeyAlg = 'rsa', opts: { range?: EKRange; persistent?: boolean } = {}): Promise<KeyHandle> {
  const template = ekTemplate(alg, opts.range);
  if (opts.persistent !== false && (opts.range ?? 'low') === 'low') {
    const p = await readKey(tpm, EK_PERSISTENT[alg]);
    if (p && sameShape(p.public, template)) return p;
  }
  return createPrimary(tpm, TPM_RH.ENDORSEMENT, template);
}

/**
 * The AK: a primary under the endorsement hierarchy from bootkey's fixed template (flush it).
 * `version` "v2" (default) has noDA SET; "v1" is the template of machines enrolled before it
 * (templates.ts), kept so that they still unlock until they are re-enrolled.
 */
export function createAK(tpm: Tpm, alg: KeyAlg = 'ecc', version: AKTemplateVersion = AK_TEMPLATE_CURRENT): Promise<KeyHandle> {
  return createPrimary(tpm, TPM_RH.ENDORSEMENT, akTemplate(alg, version));
}

/** The DER EK certificate from NV, or undefined when the TPM has none for that algorithm. */
export async function readEKCertificate(tpm: Tpm, alg: KeyAlg = 'rsa'): Promise<Buffer | undefined> {
  for (const idx of EK_CERT_INDICES[alg]) {
    try {
      const der = await readNV(tpm, idx);
      // Some TPMs pad the index; trim to the DER SEQUENCE length.
      if (der.length >= 4 && der[0] === 0x30 && der[1] === 0x82) return der.subarray(0, Math.min(der.length, 4 + der.readUInt16BE(2)));
      return der;
    } catch (e) {
      if (e instanceof TpmError && e.code === 'TPM_RC' && e.is(TPM_RC.HANDLE)) continue;
      throw e;
    }
  }
  return undefined;
}

/** Whether a public area carries the high-range EK policy (PolicyB). */
function isHighRange(p: TPMTPublic): boolean {
  return p.authPolicy.equals(EK_POLICY_B_SHA256);
}

/**
 * A policy session satisfying the EK's policy: PolicySecret(TPM_RH_ENDORSEMENT, empty password)
 * then, for a high-range EK, PolicyOR(PolicyA, PolicyC). The session is salted to
 * `pinnedPublic` (default: the EK's public as loaded) and encrypts parameters both ways.
 */
export async function startEKPolicySession(tpm: Tpm, ek: KeyHandle, opts: { pinnedPublic?: TPMTPublic; encrypt?: boolean } = {}): Promise<AuthSession> {
  const pub = opts.pinnedPublic ?? ek.public;
  const enc = opts.encrypt ?? true;
  const s = await startPolicySession(tpm, { salt: { handle: ek.handle, public: pub }, decrypt: enc, encrypt: enc, hashAlg: TPM_ALG.SHA256 });
  try {
    await PolicySecret(tpm, { authHandle: { handle: TPM_RH.ENDORSEMENT }, policySession: s });
    if (isHighRange(pub)) await PolicyOR(tpm, { policySession: s, pHashList: [EK_POLICY_A_SHA256, EK_POLICY_C_SHA256] });
  } catch (e) {
    await s.flush(tpm).catch(() => undefined);
    throw e;
  }
  return s;
}

/**
 * TPM2_ActivateCredential (Part 3 §12.5) of a MakeCredential blob for `ak`, with the EK
 * authorized by an EK policy session salted to `pinnedEK` (so certInfo leaves the TPM
 * encrypted). The session is flushed afterwards.
 */
export async function activateCredential(
  tpm: Tpm,
  req: { ak: KeyHandle; ek: KeyHandle; credentialBlob: Buffer; secret: Buffer; pinnedEK?: TPMTPublic; encrypt?: boolean },
): Promise<Buffer> {
  const s = await startEKPolicySession(tpm, req.ek, { pinnedPublic: req.pinnedEK, encrypt: req.encrypt });
  try {
    const r = await ActivateCredential(tpm, {
      activateHandle: { handle: req.ak.handle, name: req.ak.name },
      keyHandle: { handle: req.ek.handle, name: req.ek.name, session: s },
      credentialBlob: req.credentialBlob,
      secret: req.secret,
    });
    return r.certInfo;
  } finally {
    await s.flush(tpm).catch(() => undefined);
  }
}

/**
 * Imports a sealed object wrapped to the EK (TPM2_Import inputs as made by a server, e.g.
 * duplicate.ts createImportBlob), loads it under the EK and unseals it through a policy
 * session with PolicyPCR(pcrs), salted to `pinnedEK` and with response encryption, so the
 * secret never crosses the bus in clear. Every session and the loaded object are flushed.
 * `objectPublic` is TPMT_PUBLIC bytes; `duplicate` and `inSymSeed` are the contents of
 * TPM2B_PRIVATE / TPM2B_ENCRYPTED_SECRET (without their size fields).
 */
export async function unsealImported(
  tpm: Tpm,
  req: { ek: KeyHandle; objectPublic: Buffer; duplicate: Buffer; inSymSeed: Buffer; pcrs: TPMSPCRSelection[]; pinnedEK?: TPMTPublic; encrypt?: boolean },
): Promise<Buffer> {
  const ekAuth = async <T>(fn: (s: AuthSession) => Promise<T>): Promise<T> => {
    const s = await startEKPolicySession(tpm, req.ek, { pinnedPublic: req.pinnedEK, encrypt: req.encrypt });
    try {
      return await fn(s);
    } finally {
      await s.flush(tpm).catch(() => undefined);
    }
  };
  const { outPrivate } = await ekAuth((s) =>
    Import(tpm, { parentHandle: { handle: req.ek.handle, name: req.ek.name, session: s }, objectPublic: req.objectPublic, duplicate: req.duplicate, inSymSeed: req.inSymSeed }),
  );
  const { objectHandle, name } = await ekAuth((s) =>
    Load(tpm, { parentHandle: { handle: req.ek.handle, name: req.ek.name, session: s }, inPrivate: outPrivate, inPublic: req.objectPublic }),
  );
  try {
    const enc = req.encrypt ?? true;
    const s = await startPolicySession(tpm, { salt: { handle: req.ek.handle, public: req.pinnedEK ?? req.ek.public }, encrypt: enc, decrypt: enc });
    try {
      await PolicyPCR(tpm, { policySession: s, pcrs: req.pcrs });
      return (await Unseal(tpm, { itemHandle: { handle: objectHandle, name, session: s } })).outData;
    } finally {
      await s.flush(tpm).catch(() => undefined);
    }
  } finally {
    await FlushContext(tpm, { flushHandle: objectHandle }).catch(() => undefined);
  }
}

/** Name of a public area (re-exported for callers that hold a TPMT_PUBLIC). */
export { objectName, marshalPublic };
