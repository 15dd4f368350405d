/**
 * TPM2_ActivateCredential in software (Part 3 §12.5; the inverse of src/tpm/credential.ts):
 * 1. seed from TPM2B_ENCRYPTED_SECRET with the EK private key: RSA-OAEP (hash = EK nameAlg,
 *    label "IDENTITY\0") or ECC: Z = x of ECDH(EK private, ephemeral point), seed =
 *    KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, EK.x, digest bits);
 * 2. HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits); the blob's integrityHMAC
 *    must equal HMAC(HMACkey, encIdentity ‖ AK name) (else the TPM returns TPM_RC_INTEGRITY);
 * 3. symKey = KDFa(nameAlg, seed, "STORAGE", AK name, "", AES bits); credential =
 *    TPM2B_DIGEST of AES-CFB-decrypt(symKey, IV 0, encIdentity).
 */
import { constants as cryptoConstants, createECDH, privateDecrypt, timingSafeEqual, type KeyObject } from 'node:crypto';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import { aesCfbDecrypt, digestSize, hash, hashName, hmac, kdfa, kdfe, symKeyBits, fixedSize } from '../../src/tpm/crypto.ts';
import { unmarshal } from '../../src/tpm/marshal.ts';
import { unmarshalPublic, type TPMTPublic } from '../../src/tpm/structures.ts';

export function recoverSeed(ekPublic: TPMTPublic, ekPrivate: KeyObject, encryptedSecret: Buffer, label: string): Buffer {
  if (ekPublic.type === TPM_ALG.RSA) {
    return privateDecrypt({ key: ekPrivate, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: hashName(ekPublic.nameAlg), oaepLabel: Buffer.from(label + '\0') }, encryptedSecret);
  }
  if (ekPublic.type === TPM_ALG.ECC) {
    const { x, y } = unmarshal(encryptedSecret, 'TPMS_ECC_POINT', (r) => ({ x: r.tpm2b('x', 66), y: r.tpm2b('y', 66) }));
    const d = Buffer.from(ekPrivate.export({ format: 'jwk' }).d!, 'base64url');
    const size = d.length;
    const ecdh = createECDH(size === 32 ? 'prime256v1' : size === 48 ? 'secp384r1' : 'secp521r1');
    ecdh.setPrivateKey(d);
    const z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), fixedSize(x, size, 'x'), fixedSize(y, size, 'y')]));
    return kdfe(ekPublic.nameAlg, z, label, x, ekPublic.unique.x, digestSize(ekPublic.nameAlg) * 8);
  }
  throw new Error('EK must be RSA or ECC');
}

export function activateCredentialSoft(o: { ekPublic: TPMTPublic; ekPrivate: KeyObject; akName: Buffer; credentialBlob: Buffer; encryptedSecret: Buffer }): Buffer {
  const seed = recoverSeed(o.ekPublic, o.ekPrivate, o.encryptedSecret, 'IDENTITY');
  const alg = o.ekPublic.nameAlg;
  const { integrity, encIdentity } = unmarshal(o.credentialBlob, 'TPM2B_ID_OBJECT', (r) => ({ integrity: r.tpm2b('integrityHMAC', 64), encIdentity: r.bytes(r.remaining, 'encIdentity') }));
  const hmacKey = kdfa(alg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), digestSize(alg) * 8);
  const expect = hmac(alg, hmacKey, encIdentity, o.akName);
  if (expect.length !== integrity.length || !timingSafeEqual(expect, integrity)) throw new Error('ActivateCredential: integrity check failed (TPM_RC_INTEGRITY)');
  const symKey = kdfa(alg, seed, 'STORAGE', o.akName, Buffer.alloc(0), symKeyBits(o.ekPublic));
  const plain = aesCfbDecrypt(symKey, Buffer.alloc(16), encIdentity);
  return unmarshal(plain, 'TPM2B_DIGEST', (r) => r.tpm2b('credential', 64));
}

/**
 * TPM2_Import + Unseal in software, for checking a `released` blob: recovers the seed
 * ("DUPLICATE"), checks the outer HMAC over the sealed object's name, decrypts the
 * TPMT_SENSITIVE and returns the sealed secret and the object's public area (its authPolicy is
 * the PolicyPCR digest the TPM would enforce).
 */
export function importSoft(o: { ekPublic: TPMTPublic; ekPrivate: KeyObject; blob: { public: Buffer; duplicate: Buffer; inSymSeed: Buffer } }): { secret: Buffer; objectPublic: TPMTPublic } {
  const alg = o.ekPublic.nameAlg;
  const pubBytes = unmarshal(o.blob.public, 'TPM2B_PUBLIC', (r) => r.tpm2b('public', 4096));
  const objectPublic = unmarshalPublic(pubBytes);
  const nameAlgB = Buffer.alloc(2);
  nameAlgB.writeUInt16BE(objectPublic.nameAlg);
  const name = Buffer.concat([nameAlgB, hash(objectPublic.nameAlg, pubBytes)]);
  const seedEnc = unmarshal(o.blob.inSymSeed, 'TPM2B_ENCRYPTED_SECRET', (r) => r.tpm2b('secret', 1024));
  const seed = recoverSeed(o.ekPublic, o.ekPrivate, seedEnc, 'DUPLICATE');
  const priv = unmarshal(o.blob.duplicate, 'TPM2B_PRIVATE', (r) => r.tpm2b('private', 4096));
  const { outer, dup } = unmarshal(priv, 'duplicate', (r) => ({ outer: r.tpm2b('outerHMAC', 64), dup: r.bytes(r.remaining, 'dupSensitive') }));
  const hmacKey = kdfa(alg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), digestSize(alg) * 8);
  const expect = hmac(alg, hmacKey, dup, name);
  if (expect.length !== outer.length || !timingSafeEqual(expect, outer)) throw new Error('Import: outer integrity check failed');
  const symKey = kdfa(alg, seed, 'STORAGE', name, Buffer.alloc(0), symKeyBits(o.ekPublic));
  const sens = aesCfbDecrypt(symKey, Buffer.alloc(16), dup);
  const secret = unmarshal(sens, 'TPM2B_SENSITIVE', (r) => {
    const inner = r.tpm2b('sensitive', 4096);
    return unmarshal(inner, 'TPMT_SENSITIVE', (s) => {
      s.u16('sensitiveType');
      s.tpm2b('authValue', 64);
      s.tpm2b('seedValue', 64);
      return s.tpm2b('sensitive', 128);
    });
  });
  return { secret, objectPublic };
}
