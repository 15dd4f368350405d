/**
 * The public TPM API (go-attestation style): open a TPM, get the EK and bootkey's AK, quote,
 * activate a credential, unseal an imported secret. A list of re-exports only.
 * @module
 */
export { type Transport, openTransport, parseTcti, defaultTpmSpec, DEFAULT_TPM_SPEC } from './transport.ts';
export { Tpm, openTpm, type AuthHandle, type HandleRef } from './tpm.ts';
export {
  type Session, PasswordSession, PasswordAuth, AuthSession, startHMACSession, startPolicySession, type AuthSessionOptions,
} from './session.ts';
export {
  type KeyHandle, getEK, createAK, readEKCertificate, flushKey, createPrimary, readKey,
  startEKPolicySession, activateCredential, unsealImported,
} from './keys.ts';
export {
  type KeyAlg, type EKRange, type AKTemplateVersion, AK_TEMPLATE_CURRENT, hasNoDA, ekTemplate, akTemplate, EK_POLICY_A_SHA256, EK_POLICY_B_SHA256, EK_POLICY_C_SHA256, EK_CERT_INDICES,
} from './templates.ts';
export { quotePCRs, pcrDigest, Quote } from './commands/attest.ts';
export { readPCRs, getPCRBanks, PCR_Read, PCR_Extend } from './commands/pcr.ts';
export { GetRandom, GetCapability, getHandles, getProperties, getDictionaryAttackState, type DictionaryAttackState } from './commands/startup.ts';
export { CreatePrimary, Create, Load, ReadPublic, FlushContext, EvictControl, Unseal, ActivateCredential, Import, flushAll } from './commands/object.ts';
export { NV_ReadPublic, NV_Read, readNV } from './commands/nv.ts';
export { StartAuthSession, PolicySecret, PolicyPCR, PolicyOR, PolicyCommandCode, PolicyGetDigest, PolicyPassword, PolicyRestart } from './commands/session.ts';
export { TpmError } from './errors.ts';
