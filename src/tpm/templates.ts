/**
 * Key templates (TPMT_PUBLIC) bootkey creates primaries from.
 *
 * EK templates: TCG EK Credential Profile for TPM Family 2.0, Level 0, Version 2.x, §B.3.3
 * (low range, templates L-1 RSA 2048 and L-2 ECC NIST P-256) and §B.3.4 (high range, H-1 RSA
 * 2048 and H-2 ECC NIST P-256, SHA-256). Both ranges: fixedTPM, fixedParent,
 * sensitiveDataOrigin, adminWithPolicy, restricted, decrypt; symmetric AES-128-CFB; scheme
 * NULL. Low range: no userWithAuth, authPolicy = PolicyA = PolicySecret(TPM_RH_ENDORSEMENT),
 * unique = 256 (RSA) or 2×32 (ECC) zero bytes. High range: userWithAuth, authPolicy = PolicyB
 * (SHA-256) = PolicyOR(PolicyA, PolicyC), PolicyC = PolicyAuthorizeNV(index 0x01C07F01), and
 * an empty unique. The EK templates are fixed by that profile (no noDA: the EK is authorized
 * only by policy sessions, PolicySecret on the endorsement hierarchy, which the dictionary-attack
 * logic does not count); bootkey never changes them, or the EK and its certificate would differ.
 *
 * AK templates (bootkey's own, go-attestation style): restricted signing keys under the
 * endorsement hierarchy, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA,
 * restricted, sign; ECC P-256 ECDSA-SHA256 (default) or RSA 2048 RSASSA-SHA256. As primaries
 * they are re-derived identically from the endorsement seed on every boot.
 *
 * AK template versions (the LUKS2 token's `ak_template`, absent = "v1"):
 * - "v1" (bootkey before issue 10): no noDA. Every use of the AK is a dictionary-attack
 *   protected authorization, so each power loss after it (non-orderly shutdown) raises the
 *   TPM's lockout counter; at TPM_PT_MAX_AUTH_FAIL (3 on swtpm) TPM2_Quote answers
 *   TPM_RC_LOCKOUT and the machine cannot unlock until the counter decays.
 * - "v2" (current): noDA SET, as go-attestation and go-tpm-tools do. Its Name differs from
 *   v1's (the attributes are hashed into it), so a machine enrolled with v1 keeps using v1
 *   until it is re-enrolled; the server tells it to (notice AK_NO_DA, docs/SERVER.md).
 * @module
 */
import { TPM_ALG, TPM_ECC, TPMA_OBJECT } from './constants.ts';
import { SYM_AES128_CFB, SYM_NULL, SCHEME_NULL, type TPMTPublic } from './structures.ts';

export type KeyAlg = 'rsa' | 'ecc';

/** PolicyA, SHA-256 (EK Credential Profile §B.3.2): PolicySecret(TPM_RH_ENDORSEMENT) from zeros. */
export const EK_POLICY_A_SHA256 = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');
/** PolicyC, SHA-256: PolicyAuthorizeNV(0x01C07F01). */
export const EK_POLICY_C_SHA256 = Buffer.from('3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde', 'hex');
/** PolicyB, SHA-256: PolicyOR(PolicyA, PolicyC), the high-range EK authPolicy. */
export const EK_POLICY_B_SHA256 = Buffer.from('ca3d0a99a2b93906f7a3342414efcfb3a385d44cd1fd459089d19b5071c0b7a0', 'hex');

const EK_ATTRS =
  TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.adminWithPolicy | TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt;

/** Template L-1: RSA 2048 EK, low range (0x000300b2). */
export function ekTemplateRSA(): TPMTPublic {
  return {
    type: TPM_ALG.RSA, nameAlg: TPM_ALG.SHA256, objectAttributes: EK_ATTRS, authPolicy: Buffer.from(EK_POLICY_A_SHA256),
    parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, keyBits: 2048, exponent: 0 },
    unique: { rsa: Buffer.alloc(256) },
  };
}

/** Template L-2: ECC NIST P-256 EK, low range. */
export function ekTemplateECC(): TPMTPublic {
  return {
    type: TPM_ALG.ECC, nameAlg: TPM_ALG.SHA256, objectAttributes: EK_ATTRS, authPolicy: Buffer.from(EK_POLICY_A_SHA256),
    parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, curveID: TPM_ECC.NIST_P256, kdf: { ...SCHEME_NULL } },
    unique: { x: Buffer.alloc(32), y: Buffer.alloc(32) },
  };
}

/** Template H-1: RSA 2048 EK, high range. */
export function ekTemplateRSAHigh(): TPMTPublic {
  return {
    type: TPM_ALG.RSA, nameAlg: TPM_ALG.SHA256, objectAttributes: EK_ATTRS | TPMA_OBJECT.userWithAuth, authPolicy: Buffer.from(EK_POLICY_B_SHA256),
    parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, keyBits: 2048, exponent: 0 },
    unique: { rsa: Buffer.alloc(0) },
  };
}

/** Template H-2: ECC NIST P-256 EK (SHA-256), high range. */
export function ekTemplateECCHigh(): TPMTPublic {
  return {
    type: TPM_ALG.ECC, nameAlg: TPM_ALG.SHA256, objectAttributes: EK_ATTRS | TPMA_OBJECT.userWithAuth, authPolicy: Buffer.from(EK_POLICY_B_SHA256),
    parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, curveID: TPM_ECC.NIST_P256, kdf: { ...SCHEME_NULL } },
    unique: { x: Buffer.alloc(0), y: Buffer.alloc(0) },
  };
}

export type EKRange = 'low' | 'high';

/** The EK template for an algorithm and range (low range by default, what tpm2_createek uses). */
export function ekTemplate(alg: KeyAlg, range: EKRange = 'low'): TPMTPublic {
  if (range === 'high') return alg === 'rsa' ? ekTemplateRSAHigh() : ekTemplateECCHigh();
  return alg === 'rsa' ? ekTemplateRSA() : ekTemplateECC();
}

/** EK certificate NV indices (EK Credential Profile §2.2.1.5): low range, then high range. */
export const EK_CERT_INDICES: Record<KeyAlg, number[]> = {
  rsa: [0x01c00002, 0x01c00012],
  ecc: [0x01c0000a, 0x01c00014],
};

/** Which AK template a machine was enrolled with (module doc). */
export type AKTemplateVersion = 'v1' | 'v2';
/** The AK template new enrolments use. */
export const AK_TEMPLATE_CURRENT: AKTemplateVersion = 'v2';

const AK_ATTRS_V1 =
  TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.userWithAuth | TPMA_OBJECT.restricted | TPMA_OBJECT.sign;
const AK_ATTRS: Record<AKTemplateVersion, number> = { v1: AK_ATTRS_V1, v2: AK_ATTRS_V1 | TPMA_OBJECT.noDA };

/** Whether a public area has noDA SET (its authorizations are exempt from dictionary-attack lockout). */
export function hasNoDA(p: { objectAttributes: number }): boolean {
  return (p.objectAttributes & TPMA_OBJECT.noDA) !== 0;
}

/** AK: ECC NIST P-256, ECDSA with SHA-256. */
export function akTemplateECC(version: AKTemplateVersion = AK_TEMPLATE_CURRENT): TPMTPublic {
  return {
    type: TPM_ALG.ECC, nameAlg: TPM_ALG.SHA256, objectAttributes: AK_ATTRS[version], authPolicy: Buffer.alloc(0),
    parameters: { symmetric: { ...SYM_NULL }, scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 }, curveID: TPM_ECC.NIST_P256, kdf: { ...SCHEME_NULL } },
    unique: { x: Buffer.alloc(0), y: Buffer.alloc(0) },
  };
}

/** AK: RSA 2048, RSASSA-PKCS1-v1_5 with SHA-256. */
export function akTemplateRSA(version: AKTemplateVersion = AK_TEMPLATE_CURRENT): TPMTPublic {
  return {
    type: TPM_ALG.RSA, nameAlg: TPM_ALG.SHA256, objectAttributes: AK_ATTRS[version], authPolicy: Buffer.alloc(0),
    parameters: { symmetric: { ...SYM_NULL }, scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 }, keyBits: 2048, exponent: 0 },
    unique: { rsa: Buffer.alloc(0) },
  };
}

/** The AK template for an algorithm and template version (default: the current one, with noDA). */
export function akTemplate(alg: KeyAlg = 'ecc', version: AKTemplateVersion = AK_TEMPLATE_CURRENT): TPMTPublic {
  return alg === 'rsa' ? akTemplateRSA(version) : akTemplateECC(version);
}
