/**
 * TPM 2.0 constants, named as in TPM 2.0 Library Part 2: Structures (section numbers given).
 * @module
 */

/** TPM_ALG_ID, Part 2 §6.3 (the subset bootkey uses). */
export const TPM_ALG = {
  ERROR: 0x0000,
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;

/** TPM_ECC_CURVE, Part 2 §6.4. */
export const TPM_ECC = { NONE: 0x0000, NIST_P256: 0x0003, NIST_P384: 0x0004, NIST_P521: 0x0005 } as const;

/** TPM_CC, Part 2 §6.5.2 (commands bootkey sends). */
export const TPM_CC = {
  EvictControl: 0x00000120,
  NV_Read: 0x0000014e,
  CreatePrimary: 0x00000131,
  PolicySecret: 0x00000151,
  Create: 0x00000153,
  Import: 0x00000156,
  Load: 0x00000157,
  Quote: 0x00000158,
  Unseal: 0x0000015e,
  ContextLoad: 0x00000161,
  ContextSave: 0x00000162,
  FlushContext: 0x00000165,
  ActivateCredential: 0x00000147,
  MakeCredential: 0x00000168,
  NV_ReadPublic: 0x00000169,
  PolicyCommandCode: 0x0000016c,
  PolicyOR: 0x00000171,
  ReadPublic: 0x00000173,
  StartAuthSession: 0x00000176,
  GetCapability: 0x0000017a,
  GetRandom: 0x0000017b,
  PCR_Read: 0x0000017e,
  PolicyPCR: 0x0000017f,
  PolicyRestart: 0x00000180,
  PCR_Extend: 0x00000182,
  PolicyGetDigest: 0x00000189,
  PolicyPassword: 0x0000018c,
  Startup: 0x00000144,
  Shutdown: 0x00000145,
  SelfTest: 0x00000143,
} as const;

export const TPM_CC_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(TPM_CC).map(([k, v]) => [v, `TPM2_${k}`]));

/** TPM_ST, Part 2 §6.9. */
export const TPM_ST = {
  RSP_COMMAND: 0x00c4,
  NULL: 0x8000,
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_NV: 0x8014,
  ATTEST_COMMAND_AUDIT: 0x8015,
  ATTEST_SESSION_AUDIT: 0x8016,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_TIME: 0x8019,
  ATTEST_CREATION: 0x801a,
  ATTEST_NV_DIGEST: 0x801c,
  CREATION: 0x8021,
  VERIFIED: 0x8022,
  AUTH_SECRET: 0x8023,
  HASHCHECK: 0x8024,
  AUTH_SIGNED: 0x8025,
} as const;

/** TPM_SU, Part 2 §6.10. */
export const TPM_SU = { CLEAR: 0x0000, STATE: 0x0001 } as const;

/** TPM_SE, Part 2 §6.11. */
export const TPM_SE = { HMAC: 0x00, POLICY: 0x01, TRIAL: 0x03 } as const;

/** TPM_CAP, Part 2 §6.12. */
export const TPM_CAP = {
  ALGS: 0x00000000,
  HANDLES: 0x00000001,
  COMMANDS: 0x00000002,
  PP_COMMANDS: 0x00000003,
  AUDIT_COMMANDS: 0x00000004,
  PCRS: 0x00000005,
  TPM_PROPERTIES: 0x00000006,
  PCR_PROPERTIES: 0x00000007,
  ECC_CURVES: 0x00000008,
} as const;

/** TPM_PT, Part 2 §6.13 (fixed properties, then the variable ones bootkey reads). */
export const TPM_PT = {
  FAMILY_INDICATOR: 0x100,
  LEVEL: 0x101,
  REVISION: 0x102,
  DAY_OF_YEAR: 0x103,
  YEAR: 0x104,
  MANUFACTURER: 0x105,
  VENDOR_STRING_1: 0x106,
  VENDOR_STRING_2: 0x107,
  VENDOR_STRING_3: 0x108,
  VENDOR_STRING_4: 0x109,
  VENDOR_TPM_TYPE: 0x10a,
  FIRMWARE_VERSION_1: 0x10b,
  FIRMWARE_VERSION_2: 0x10c,
  INPUT_BUFFER: 0x10d,
  MAX_DIGEST: 0x120,
  PCR_COUNT: 0x112,
  NV_BUFFER_MAX: 0x12c,
  MAX_COMMAND_SIZE: 0x11e,
  MAX_RESPONSE_SIZE: 0x11f,
  /** PT_VAR + 0: TPMA_PERMANENT (bit 9 inLockout). */
  PERMANENT: 0x200,
  /** PT_VAR + 14..17: the dictionary-attack state (TPM2_DictionaryAttackParameters). */
  LOCKOUT_COUNTER: 0x20e,
  MAX_AUTH_FAIL: 0x20f,
  LOCKOUT_INTERVAL: 0x210,
  LOCKOUT_RECOVERY: 0x211,
} as const;

/** TPMA_PERMANENT bits, Part 2 §8.6. */
export const TPMA_PERMANENT = { inLockout: 1 << 9 } as const;

/** TPM_RH / TPM_RS handles, Part 2 §7.4. */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  PW: 0x40000009, // TPM_RS_PW
  LOCKOUT: 0x4000000a,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

/** TPM_HT handle types (most significant octet), Part 2 §7.2. */
export const TPM_HT = {
  PCR: 0x00,
  NV_INDEX: 0x01,
  HMAC_SESSION: 0x02,
  POLICY_SESSION: 0x03,
  PERMANENT: 0x40,
  TRANSIENT: 0x80,
  PERSISTENT: 0x81,
} as const;

/** TPMA_OBJECT bits, Part 2 §8.3. */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18, // also sign_encrypt
  x509sign: 1 << 19,
} as const;

/** TPMA_SESSION bits, Part 2 §8.4. */
export const TPMA_SESSION = {
  continueSession: 0x01,
  auditExclusive: 0x02,
  auditReset: 0x04,
  decrypt: 0x20,
  encrypt: 0x40,
  audit: 0x80,
} as const;

/** TPMA_NV bits used to interpret NV_ReadPublic, Part 2 §13.4. */
export const TPMA_NV = { WRITTEN: 1 << 29 } as const;

/** TPM_GENERATED_VALUE, Part 2 §6.2: the magic of every TPMS_ATTEST. */
export const TPM_GENERATED_VALUE = 0xff544347;

/** TCG EK Credential Profile §2.2.1.5: NV indices of EK certificates, and the persistent EK handle. */
export const EK_CERT_NV_RSA = 0x01c00002;
export const EK_CERT_NV_ECC = 0x01c0000a;
export const EK_NONCE_NV_RSA = 0x01c00003;
export const EK_TEMPLATE_NV_RSA = 0x01c00004;
export const EK_NONCE_NV_ECC = 0x01c0000b;
export const EK_TEMPLATE_NV_ECC = 0x01c0000c;
export const EK_PERSISTENT_HANDLE = 0x81010001;
export const EK_PERSISTENT_HANDLE_ECC = 0x81010002;

/** Hash algorithm ↔ node:crypto name and digest size. */
export const HASH_INFO: ReadonlyMap<number, { name: string; bank: string; size: number }> = new Map([
  [TPM_ALG.SHA1, { name: 'sha1', bank: 'sha1', size: 20 }],
  [TPM_ALG.SHA256, { name: 'sha256', bank: 'sha256', size: 32 }],
  [TPM_ALG.SHA384, { name: 'sha384', bank: 'sha384', size: 48 }],
  [TPM_ALG.SHA512, { name: 'sha512', bank: 'sha512', size: 64 }],
  [TPM_ALG.SM3_256, { name: 'sm3', bank: 'sm3_256', size: 32 }],
]);

export function algName(alg: number): string {
  for (const [k, v] of Object.entries(TPM_ALG)) if (v === alg) return `TPM_ALG_${k}`;
  return `TPM_ALG_0x${alg.toString(16).padStart(4, '0')}`;
}
