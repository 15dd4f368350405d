/**
 * TPM2_Duplicate done in software (Part 1 §23.3.2 "outer wrapper", Part 3 §13.1; the server
 * side of go-tpm-tools' ImportBlob): a sealed KEYEDHASH data object whose authPolicy binds it
 * to PCR values, wrapped to a TPM's EK so that only that TPM can TPM2_Import it.
 *
 * - public: KEYEDHASH, scheme NULL, nameAlg (default SHA-256), objectAttributes: userWithAuth
 *   CLEAR (only the policy authorises Unseal), fixedTPM/fixedParent CLEAR (duplicates must
 *   be), sensitiveDataOrigin CLEAR, sign/decrypt CLEAR; adminWithPolicy and noDA SET;
 *   authPolicy = the policy digest; unique = H_nameAlg(seedValue ‖ secret) (Part 1 §27.7.4).
 * - sensitive: TPMT_SENSITIVE { KEYEDHASH, authValue empty, seedValue random, secret }.
 * - no inner wrapper (symmetricAlg NULL, encryptionKey empty: the TPM accepts this because
 *   encryptedDuplication is CLEAR).
 * - outer wrapper with the EK: seed, inSymSeed = encryptSeed(ek, "DUPLICATE");
 *   symKey = KDFa(ek.nameAlg, seed, "STORAGE", name, "", ek's AES key bits);
 *   dupSensitive = AES-CFB(symKey, iv 0, TPM2B(TPMT_SENSITIVE));
 *   outerHMAC = HMAC(KDFa(ek.nameAlg, seed, "INTEGRITY", "", "", digest bits), dupSensitive ‖ name);
 *   duplicate = TPM2B_PRIVATE { TPM2B outerHMAC ‖ dupSensitive }.
 *
 * Using the EK as the parent of TPM2_Import and TPM2_Load needs the EK's authorisation: the
 * default EK template has userWithAuth CLEAR and authPolicy PolicySecret(TPM_RH_ENDORSEMENT),
 * so each of Import and Load needs a policy session satisfied with TPM2_PolicySecret on the
 * endorsement hierarchy (tpm2-tools: `tpm2_startauthsession --policy-session` +
 * `tpm2_policysecret -c e`, then `-P session:...`).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { TPM_ALG, TPMA_OBJECT } from './constants.ts';
import { TpmError } from './errors.ts';
import { marshal } from './marshal.ts';
import { marshalPublic, marshalPublic2B, hashInfo, SCHEME_NULL, type TPMTPublic, type TPMSPCRSelection } from './structures.ts';
import { aesCfbEncrypt, encryptSeed, hash, hmac, kdfa, objectName, symKeyBits } from './crypto.ts';
import { policyPCRDigest } from './policydigest.ts';
import type { PcrValues } from '../pcrs.ts';

/** MAX_SYM_DATA (Part 2 §10.3.1 / TPM2B_SENSITIVE_DATA): the largest sealed secret. */
export const MAX_SEALED_SECRET = 128;

export interface ImportBlobOptions {
  /** The sealed object's authPolicy; or give `pcrs` to compute PolicyPCR. */
  authPolicy?: Buffer;
  /** Seal to these PCR values: authPolicy = PolicyPCR(selection, values). */
  pcrs?: { selection: TPMSPCRSelection[]; values: PcrValues };
  /** The sealed object's nameAlg (and policy hash); default SHA-256. */
  nameAlg?: number;
}

export interface ImportBlob {
  /** The sealed object's public area. */
  objectPublic: TPMTPublic;
  /** Its Name (nameAlg ‖ H(public)). */
  name: Buffer;
  /** TPM2B_PUBLIC bytes (TPM2_Import objectPublic; `tpm2_import -u`). */
  public: Buffer;
  /** TPM2B_PRIVATE bytes (TPM2_Import duplicate; `tpm2_import -i`). */
  duplicate: Buffer;
  /** TPM2B_ENCRYPTED_SECRET bytes (TPM2_Import inSymSeed; `tpm2_import -s`). */
  inSymSeed: Buffer;
  /** The same three without their UINT16 size fields (TPMT_PUBLIC, TPM2B contents), as src/tpm/keys.ts unsealImported takes them. */
  raw: { objectPublic: Buffer; duplicate: Buffer; inSymSeed: Buffer };
}

/** The public area of a sealed data object with the given policy (see the module doc). */
export function sealedObjectPublic(nameAlg: number, authPolicy: Buffer, unique: Buffer): TPMTPublic {
  return {
    type: TPM_ALG.KEYEDHASH,
    nameAlg,
    objectAttributes: TPMA_OBJECT.adminWithPolicy | TPMA_OBJECT.noDA,
    authPolicy,
    parameters: { scheme: { ...SCHEME_NULL } },
    unique: { digest: unique },
  };
}

/**
 * Creates the TPM2_Import inputs that load `secret` as a sealed object under `ek`.
 * @throws TpmError('UNSUPPORTED') for a secret over 128 bytes, a policy of the wrong size,
 *   or a parent bootkey cannot wrap to (needs an RSA/ECC key with AES-CFB symmetric).
 */
export function createImportBlob(ek: TPMTPublic, secret: Buffer, opts: ImportBlobOptions = {}): ImportBlob {
  const nameAlg = opts.nameAlg ?? TPM_ALG.SHA256;
  const size = hashInfo(nameAlg).size;
  if (secret.length > MAX_SEALED_SECRET) throw new TpmError('UNSUPPORTED', `duplicate: the secret is ${secret.length} bytes, at most ${MAX_SEALED_SECRET}`);
  if (opts.authPolicy && opts.pcrs) throw new TpmError('UNSUPPORTED', 'duplicate: give authPolicy or pcrs, not both');
  const authPolicy = opts.authPolicy ?? (opts.pcrs ? policyPCRDigest(opts.pcrs.selection, opts.pcrs.values, nameAlg) : Buffer.alloc(0));
  if (authPolicy.length !== 0 && authPolicy.length !== size) throw new TpmError('UNSUPPORTED', `duplicate: authPolicy has ${authPolicy.length} bytes, nameAlg needs ${size}`);
  if (authPolicy.length === 0) throw new TpmError('UNSUPPORTED', 'duplicate: an authPolicy is required (userWithAuth is CLEAR)');
  if (ek.type !== TPM_ALG.RSA && ek.type !== TPM_ALG.ECC) throw new TpmError('UNSUPPORTED', 'duplicate: the new parent must be an RSA or ECC storage key');
  const keyBits = symKeyBits(ek);

  // Every intermediate that holds the secret or a key to it is zeroed before returning.
  const secrets: Buffer[] = [];
  const keep = (b: Buffer): Buffer => (secrets.push(b), b);
  let objectPublic: TPMTPublic, name: Buffer, encryptedSecret: Buffer, dupSensitive: Buffer, outerHMAC: Buffer;
  try {
    const seedValue = keep(randomBytes(size));
    objectPublic = sealedObjectPublic(nameAlg, authPolicy, hash(nameAlg, seedValue, secret));
    name = objectName(objectPublic);
    // TPMT_SENSITIVE, Part 2 §12.3.2.4, inside its TPM2B (TPM2B_SENSITIVE).
    const sensitive = keep(marshal((w) => w.u16(TPM_ALG.KEYEDHASH).tpm2b(Buffer.alloc(0)).tpm2b(seedValue).tpm2b(secret)));
    const sensitive2B = keep(marshal((w) => w.tpm2b(sensitive)));

    const es = encryptSeed(ek, 'DUPLICATE');
    const seed = keep(es.seed);
    encryptedSecret = es.encryptedSecret;
    const symKey = keep(kdfa(ek.nameAlg, seed, 'STORAGE', name, Buffer.alloc(0), keyBits));
    dupSensitive = aesCfbEncrypt(symKey, Buffer.alloc(16), sensitive2B);
    const hmacKey = keep(kdfa(ek.nameAlg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), hashInfo(ek.nameAlg).size * 8));
    outerHMAC = hmac(ek.nameAlg, hmacKey, dupSensitive, name);
  } finally {
    for (const b of secrets) b.fill(0);
  }
  const duplicate = marshal((w) => w.tpm2b(outerHMAC).bytes(dupSensitive));
  return {
    objectPublic,
    name,
    public: marshalPublic2B(objectPublic),
    duplicate: marshal((w) => w.tpm2b(duplicate)),
    inSymSeed: marshal((w) => w.tpm2b(encryptedSecret)),
    raw: { objectPublic: marshalPublic(objectPublic), duplicate, inSymSeed: encryptedSecret },
  };
}
