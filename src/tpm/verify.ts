/**
 * The software (TPM-less) side of bootkey's TPM layer, for the key-release server:
 * crypto primitives, MakeCredential, quote verification, software Duplicate, policy digests
 * and tpm2-tools file formats. Re-exported here so the lead can merge it into src/tpm/index.ts.
 * @module
 */
export {
  kdfa,
  kdfe,
  aesCfbEncrypt,
  aesCfbDecrypt,
  publicKeyFromTPMT,
  objectName,
  encryptSeed,
  symKeyBits,
  hash,
  hmac,
  constantTimeEqual,
  type EncryptedSeed,
} from './crypto.ts';
export {
  makeCredential,
  marshalCredentialFile,
  unmarshalCredentialFile,
  ekPublicFromKey,
  EK_POLICY_A_SHA256,
  EK_ATTRIBUTES,
  CREDENTIAL_FILE_MAGIC,
  type Credential,
} from './credential.ts';
export { verifyQuote, checkAKAttributes, verifySignature, quotePcrDigest, type VerifyQuoteOptions, type VerifiedQuote, type HashName } from './quote.ts';
export { createImportBlob, sealedObjectPublic, MAX_SEALED_SECRET, type ImportBlob, type ImportBlobOptions } from './duplicate.ts';
export { policyZero, policyPCR, policyPCRDigest, policyOR, policyCommandCode, policySecret, concatPcrValues } from './policydigest.ts';
export { parsePcrsSerialized, parsePcrsValues, parseTpm2ToolsPcrs } from './pcrfile.ts';
