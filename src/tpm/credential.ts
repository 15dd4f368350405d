/**
 * Software TPM2_MakeCredential (Part 3 §12.6, protocol in Part 1 §24 and Annex B.10.4/C.7):
 * the server encrypts a secret so that only the TPM holding `ek` can recover it, and only
 * for an object (the AK) of the given Name loaded on that TPM (TPM2_ActivateCredential).
 *
 * Steps (nameAlg and symmetric definition are the EK's):
 * 1. seed, encryptedSecret = encryptSeed(ek, "IDENTITY")
 * 2. symKey = KDFa(nameAlg, seed, "STORAGE", name, "", symmetric.keyBits)
 * 3. encIdentity = AES-CFB(symKey, iv = 0, TPM2B_DIGEST(credential))
 * 4. HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
 * 5. integrityHMAC = HMAC(HMACkey, encIdentity ‖ name)
 * 6. credentialBlob = TPM2B_ID_OBJECT { TPM2B integrityHMAC ‖ encIdentity }
 *
 * Also the credential file of tpm2-tools (`tpm2_makecredential -o`, `tpm2_activatecredential -i`):
 * UINT32 0xBADCC0DE ‖ UINT32 1 ‖ TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET.
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { TpmError } from './errors.ts';
import { marshal, unmarshal } from './marshal.ts';
import { TPM_ALG, TPM_ECC, TPMA_OBJECT } from './constants.ts';
import { SCHEME_NULL, SYM_AES128_CFB, type TPMTPublic } from './structures.ts';
import { aesCfbEncrypt, digestSize, encryptSeed, fixedSize, hmac, kdfa, symKeyBits } from './crypto.ts';

export interface Credential {
  /** TPM2B_ID_OBJECT contents (without the size): integrityHMAC TPM2B ‖ encIdentity. */
  credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET contents (without the size): the seed encrypted to the EK. */
  secret: Buffer;
}

/**
 * MakeCredential in software.
 * @param ek the EK's public area (RSA or ECC storage key with AES-CFB symmetric).
 * @param name the Name of the object to activate the credential with (the AK): nameAlg ‖ digest.
 * @param credential the secret (at most the EK nameAlg's digest size, as TPM2B_DIGEST).
 * @throws TpmError('UNSUPPORTED') for an EK bootkey cannot wrap to, or a secret that is too long.
 */
export function makeCredential(ek: TPMTPublic, name: Buffer, credential: Buffer): Credential {
  if (ek.type !== TPM_ALG.RSA && ek.type !== TPM_ALG.ECC) throw new TpmError('UNSUPPORTED', 'MakeCredential: the EK must be an RSA or ECC key');
  const dsize = digestSize(ek.nameAlg);
  if (credential.length > dsize) {
    throw new TpmError('UNSUPPORTED', `MakeCredential: the secret is ${credential.length} bytes, at most ${dsize} (the EK nameAlg's digest size) fit`);
  }
  if (name.length < 2) throw new TpmError('UNSUPPORTED', 'MakeCredential: the object name is empty');
  const bits = symKeyBits(ek);
  const { seed, encryptedSecret } = encryptSeed(ek, 'IDENTITY');
  const secrets: Buffer[] = [seed];
  try {
    const symKey = kdfa(ek.nameAlg, seed, 'STORAGE', name, Buffer.alloc(0), bits);
    const plain = marshal((w) => w.tpm2b(credential));
    secrets.push(symKey, plain);
    const encIdentity = aesCfbEncrypt(symKey, Buffer.alloc(16), plain);
    const hmacKey = kdfa(ek.nameAlg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), dsize * 8);
    secrets.push(hmacKey);
    const integrity = hmac(ek.nameAlg, hmacKey, encIdentity, name);
    return { credentialBlob: marshal((w) => w.tpm2b(integrity).bytes(encIdentity)), secret: encryptedSecret };
  } finally {
    for (const b of secrets) b.fill(0);
  }
}

/** The magic and version of tpm2-tools' credential file (tpm2_makecredential -o). */
export const CREDENTIAL_FILE_MAGIC = 0xbadcc0de;
export const CREDENTIAL_FILE_VERSION = 1;

/** tpm2-tools' credential file: magic ‖ version ‖ TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET. */
export function marshalCredentialFile(c: Credential): Buffer {
  return marshal((w) => w.u32(CREDENTIAL_FILE_MAGIC).u32(CREDENTIAL_FILE_VERSION).tpm2b(c.credentialBlob).tpm2b(c.secret));
}

/**
 * Parses tpm2-tools' credential file.
 * @throws TpmError('MARSHAL') for a wrong magic/version, truncation or trailing bytes.
 */
export function unmarshalCredentialFile(b: Uint8Array, ctx = 'credential file'): Credential {
  return unmarshal(b, ctx, (r) => {
    const magic = r.u32('magic');
    if (magic !== CREDENTIAL_FILE_MAGIC) r.fail('magic', `0x${magic.toString(16)} is not 0xbadcc0de`);
    const version = r.u32('version');
    if (version !== CREDENTIAL_FILE_VERSION) r.fail('version', `unsupported version ${version}`);
    const credentialBlob = r.tpm2b('TPM2B_ID_OBJECT', 2 + 64 + 2 + 64);
    const secret = r.tpm2b('TPM2B_ENCRYPTED_SECRET', 512);
    return { credentialBlob, secret };
  });
}

/** The default EK policy (TCG EK Credential Profile §B.3.3, policy A): PolicySecret(TPM_RH_ENDORSEMENT), SHA-256. */
export const EK_POLICY_A_SHA256 = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');

/** The default EK template's attributes (EK Credential Profile §B.3.3 templates L-1/L-2). */
export const EK_ATTRIBUTES =
  TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin | TPMA_OBJECT.adminWithPolicy | TPMA_OBJECT.restricted | TPMA_OBJECT.decrypt;

/**
 * The public area an EK with this public key has under the default low-range templates
 * (EK Credential Profile §B.3.3: L-1 RSA 2048, L-2 ECC NIST P-256; nameAlg SHA-256,
 * AES-128-CFB, policy A). For an EK given as a bare public key (PEM); other templates
 * (high-range, P-384) give the same seed encryption only when nameAlg and AES size agree.
 * @throws TpmError('UNSUPPORTED') for a key that is not RSA or EC P-256/P-384.
 */
export function ekPublicFromKey(key: KeyObject): TPMTPublic {
  const jwk = key.export({ format: 'jwk' });
  const common = { nameAlg: TPM_ALG.SHA256, objectAttributes: EK_ATTRIBUTES, authPolicy: Buffer.from(EK_POLICY_A_SHA256) };
  if (jwk.kty === 'RSA' && jwk.n && jwk.e) {
    const n = Buffer.from(jwk.n, 'base64url');
    const e = Buffer.from(jwk.e, 'base64url').readUIntBE(0, Math.min(6, Buffer.from(jwk.e, 'base64url').length));
    return { type: TPM_ALG.RSA, ...common, parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, keyBits: n.length * 8, exponent: e === 65537 ? 0 : e }, unique: { rsa: n } };
  }
  if (jwk.kty === 'EC' && jwk.x && jwk.y && (jwk.crv === 'P-256' || jwk.crv === 'P-384')) {
    const size = jwk.crv === 'P-256' ? 32 : 48;
    return {
      type: TPM_ALG.ECC,
      ...common,
      parameters: { symmetric: { ...SYM_AES128_CFB }, scheme: { ...SCHEME_NULL }, curveID: jwk.crv === 'P-256' ? TPM_ECC.NIST_P256 : TPM_ECC.NIST_P384, kdf: { ...SCHEME_NULL } },
      unique: { x: fixedSize(Buffer.from(jwk.x, 'base64url'), size, 'x'), y: fixedSize(Buffer.from(jwk.y, 'base64url'), size, 'y') },
    };
  }
  throw new TpmError('UNSUPPORTED', `EK public key: unsupported key type ${jwk.kty}${jwk.crv ? ' ' + jwk.crv : ''}`);
}
