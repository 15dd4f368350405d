/**
 * Software verification of a TPM2_Quote (Part 3 §18.4) — pure: bytes in, verdict out.
 *
 * Checklist, in order (the first failure throws a TpmError naming it):
 * 1. AK attributes (when the AK is a TPMT_PUBLIC): `checkAKAttributes` → VERIFY_AK_ATTRIBUTES.
 *    Only a restricted signing key guarantees that the TPM itself produced a TPMS_ATTEST
 *    starting with TPM_GENERATED_VALUE (Part 1 §25.2.4); an unrestricted key signs anything.
 *    A bare KeyObject (e.g. from PEM) cannot be checked: `akAttributesChecked` is false then.
 * 2. Signature hash policy: SHA-1 refused unless `allowSHA1`; `requireHash` → VERIFY_HASH.
 * 3. Signature (RSASSA-PKCS1-v1_5, RSASSA-PSS with any salt length — swtpm/libtpms uses the
 *    digest length, some TPMs the maximum —, ECDSA r‖s) over the
 *    TPMS_ATTEST bytes with the signature's hash, with the scheme the AK allows → VERIFY_SIGNATURE.
 * 4. magic = TPM_GENERATED_VALUE → VERIFY_MAGIC; 5. type = TPM_ST_ATTEST_QUOTE → VERIFY_TYPE.
 * 6. extraData = nonce (constant time) → VERIFY_NONCE.
 * 7. pcrDigest = H_sig(PCR values in selection order: banks in TPML order, PCRs ascending),
 *    the hash being the signing scheme's (Part 3 §18.4.1), constant time; every selected PCR
 *    must be given → VERIFY_PCR_DIGEST. Without `pcrs`, the digest is not checked
 *    (`pcrsVerified` false) and no PCR values are returned. Values given for PCRs the quote
 *    does not select are not verified: only `result.pcrs` is; they are listed in `unquoted`.
 * 8. Optionally qualifiedSigner = `qualifiedSigner` → VERIFY_SIGNER.
 *
 * Not checked: clock/resetCount freshness, firmwareVersion (returned for policy).
 * @module
 */
import { KeyObject, verify as cryptoVerify, constants as cryptoConstants } from 'node:crypto';
import { TPM_ALG, TPM_ECC, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT, HASH_INFO, algName } from './constants.ts';
import { TpmError } from './errors.ts';
import {
  unmarshalAttest,
  unmarshalSignature,
  type TPMSAttest,
  type TPMSPCRSelection,
  type TPMTPublic,
  type TPMTSignature,
} from './structures.ts';
import { constantTimeEqual, eccCurve, fixedSize, hash, publicKeyFromTPMT } from './crypto.ts';
import type { BankName, PcrValues } from '../pcrs.ts';

export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export interface VerifyQuoteOptions {
  /** The AK: its public area (attributes checked) or a bare public key (attributes not checked). */
  akPublic: TPMTPublic | KeyObject;
  /** TPMS_ATTEST bytes as signed (tpm2_quote -m). */
  message: Buffer;
  /** TPMT_SIGNATURE bytes (tpm2_quote -s) or parsed. */
  signature: Buffer | TPMTSignature;
  /** The verifier's nonce; must equal extraData. */
  nonce: Buffer;
  /** PCR values; when given, every quoted PCR must be present and the digest must match. */
  pcrs?: PcrValues;
  /** Require this signature hash (→ VERIFY_HASH otherwise). */
  requireHash?: HashName;
  /** Accept SHA-1 signatures (refused by default). */
  allowSHA1?: boolean;
  /** Accept an AK that fails checkAKAttributes (never do this for attestation). */
  allowUnrestrictedAK?: boolean;
  /** The expected qualified name of the AK (TPMS_ATTEST.qualifiedSigner). */
  qualifiedSigner?: Buffer;
}

export interface VerifiedQuote {
  attest: TPMSAttest;
  /** The quoted selection (banks in TPML order). */
  pcrSelect: TPMSPCRSelection[];
  pcrDigest: Buffer;
  /** The signature scheme and hash (TPM_ALG_*), and the hash's name. */
  sigAlg: number;
  hashAlg: number;
  hashName: string;
  /** True when the AK public area was checked by checkAKAttributes. */
  akAttributesChecked: boolean;
  /** True when the PCR digest was recomputed from `pcrs` and matched. */
  pcrsVerified: boolean;
  /** The PCR values the quote covers (only the selected ones), when pcrsVerified. */
  pcrs?: PcrValues;
  /** PCRs given in `pcrs` that the quote does not select: NOT verified (e.g. "sha256:8"). */
  unquoted: string[];
}

function fail(code: string, msg: string): never {
  throw new TpmError(code, msg);
}

/**
 * Checks that a public area is a usable attestation key (TCG: restricted signing key):
 * restricted, fixedTPM, fixedParent, sensitiveDataOrigin, sign, not decrypt, RSA ≥ 2048 bits
 * or ECC ≥ P-256, and a signing scheme (RSASSA/RSAPSS/ECDSA) with a hash.
 * @throws TpmError('VERIFY_AK_ATTRIBUTES') naming the first missing/forbidden attribute.
 */
export function checkAKAttributes(pub: TPMTPublic): void {
  const a = pub.objectAttributes;
  const must: [keyof typeof TPMA_OBJECT, boolean][] = [
    ['restricted', true],
    ['sign', true],
    ['decrypt', false],
    ['fixedTPM', true],
    ['fixedParent', true],
    ['sensitiveDataOrigin', true],
  ];
  for (const [name, want] of must) {
    const has = (a & TPMA_OBJECT[name]) !== 0;
    if (has !== want) fail('VERIFY_AK_ATTRIBUTES', `AK attributes: ${want ? 'missing' : 'forbidden'} ${name} (objectAttributes 0x${(a >>> 0).toString(16)})`);
  }
  if (pub.type === TPM_ALG.RSA) {
    const bits = pub.unique.rsa.length * 8;
    if (pub.parameters.keyBits < 2048 || bits < 2048) fail('VERIFY_AK_ATTRIBUTES', `AK attributes: RSA key size ${Math.min(pub.parameters.keyBits, bits)} bits is below 2048`);
    const s = pub.parameters.scheme.scheme;
    if (s !== TPM_ALG.RSASSA && s !== TPM_ALG.RSAPSS) fail('VERIFY_AK_ATTRIBUTES', `AK attributes: no RSA signing scheme (scheme ${algName(s)})`);
  } else if (pub.type === TPM_ALG.ECC) {
    const c = pub.parameters.curveID;
    if (c !== TPM_ECC.NIST_P256 && c !== TPM_ECC.NIST_P384 && c !== TPM_ECC.NIST_P521) fail('VERIFY_AK_ATTRIBUTES', `AK attributes: ECC curve 0x${c.toString(16)} is not NIST P-256/P-384/P-521`);
    const s = pub.parameters.scheme.scheme;
    if (s !== TPM_ALG.ECDSA) fail('VERIFY_AK_ATTRIBUTES', `AK attributes: no ECDSA signing scheme (scheme ${algName(s)})`);
  } else {
    fail('VERIFY_AK_ATTRIBUTES', `AK attributes: object type ${algName((pub as { type: number }).type)} is not RSA or ECC`);
  }
  const sh = pub.parameters.scheme.hashAlg;
  if (!HASH_INFO.has(sh)) fail('VERIFY_AK_ATTRIBUTES', `AK attributes: signing scheme hash ${algName(sh)} unknown`);
}

function parseSignature(sig: Buffer | TPMTSignature): TPMTSignature {
  if (!Buffer.isBuffer(sig)) return sig;
  try {
    return unmarshalSignature(sig, 'quote signature (TPMT_SIGNATURE)');
  } catch (e) {
    if (e instanceof TpmError) throw new TpmError('VERIFY_SIGNATURE', `signature: cannot parse: ${e.message}`);
    throw e;
  }
}

/**
 * Verifies a TPMT_SIGNATURE over `message` with `key` (RSASSA, RSAPSS with any salt length —
 * TPMs use either the digest length or the maximum —, ECDSA). Pure; no hash policy here.
 * @throws TpmError('VERIFY_SIGNATURE').
 */
export function verifySignature(key: KeyObject, message: Buffer, sig: TPMTSignature): void {
  if (sig.sigAlg === TPM_ALG.NULL || sig.sigAlg === TPM_ALG.HMAC) fail('VERIFY_SIGNATURE', `signature: algorithm ${algName(sig.sigAlg)} is not an asymmetric signature`);
  const info = HASH_INFO.get(sig.hash);
  if (!info || sig.hash === TPM_ALG.SM3_256) return fail('VERIFY_SIGNATURE', `signature: unsupported hash ${algName(sig.hash)}`);
  const kt = key.asymmetricKeyType;
  let ok = false;
  try {
    if (sig.sigAlg === TPM_ALG.RSASSA || sig.sigAlg === TPM_ALG.RSAPSS) {
      if (kt !== 'rsa') fail('VERIFY_SIGNATURE', `signature: ${algName(sig.sigAlg)} signature but the AK is ${kt}`);
      const pss = sig.sigAlg === TPM_ALG.RSAPSS;
      ok = cryptoVerify(
        info.name,
        message,
        pss ? { key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: cryptoConstants.RSA_PSS_SALTLEN_AUTO } : { key, padding: cryptoConstants.RSA_PKCS1_PADDING },
        sig.sig,
      );
    } else if (sig.sigAlg === TPM_ALG.ECDSA) {
      if (kt !== 'ec') fail('VERIFY_SIGNATURE', `signature: ECDSA signature but the AK is ${kt}`);
      const crv = key.asymmetricKeyDetails?.namedCurve;
      const size = crv === 'prime256v1' ? 32 : crv === 'secp384r1' ? 48 : crv === 'secp521r1' ? 66 : 0;
      if (!size) fail('VERIFY_SIGNATURE', `signature: unsupported ECC curve ${crv}`);
      const rs = Buffer.concat([fixedSize(sig.signatureR, size, 'ECDSA r'), fixedSize(sig.signatureS, size, 'ECDSA s')]);
      ok = cryptoVerify(info.name, message, { key, dsaEncoding: 'ieee-p1363' }, rs);
    }
  } catch (e) {
    if (e instanceof TpmError) throw new TpmError('VERIFY_SIGNATURE', `signature: ${e.message}`);
    fail('VERIFY_SIGNATURE', `signature: does not verify (${(e as Error).message})`);
  }
  if (!ok) fail('VERIFY_SIGNATURE', `signature: ${algName(sig.sigAlg)}/${info.name} signature does not verify with the AK`);
}

/**
 * The PCR digest a quote covers: H(PCR values concatenated in selection order).
 * @throws TpmError('VERIFY_PCR_DIGEST') when a selected PCR (or bank) is missing or the wrong size.
 */
export function quotePcrDigest(hashAlg: number, selection: TPMSPCRSelection[], pcrs: PcrValues): { digest: Buffer; covered: PcrValues } {
  const parts: Buffer[] = [];
  const covered: PcrValues = new Map();
  for (const s of selection) {
    const info = HASH_INFO.get(s.hash);
    if (!info) return fail('VERIFY_PCR_DIGEST', `PCR digest: the quote selects an unknown bank ${algName(s.hash)}`);
    const bank = pcrs.get(info.bank as BankName);
    const out = covered.get(info.bank as BankName) ?? new Map<number, Buffer>();
    for (const i of s.pcrs) {
      const v = bank?.get(i);
      if (!v) fail('VERIFY_PCR_DIGEST', `PCR digest: no value given for quoted PCR ${info.bank}:${i}`);
      if (v!.length !== info.size) fail('VERIFY_PCR_DIGEST', `PCR digest: ${info.bank}:${i} has ${v!.length} bytes, expected ${info.size}`);
      parts.push(v!);
      out.set(i, v!);
    }
    covered.set(info.bank as BankName, out);
  }
  return { digest: hash(hashAlg, ...parts), covered };
}

/**
 * Verifies a quote; see the module checklist.
 * @throws TpmError with code VERIFY_AK_ATTRIBUTES, VERIFY_HASH, VERIFY_SIGNATURE, VERIFY_MAGIC,
 *   VERIFY_TYPE, VERIFY_NONCE, VERIFY_PCR_DIGEST or VERIFY_SIGNER, or MARSHAL when the signed
 *   message is not a TPMS_ATTEST.
 */
export function verifyQuote(o: VerifyQuoteOptions): VerifiedQuote {
  let key: KeyObject;
  let akAttributesChecked = false;
  let akScheme: { scheme: number; hashAlg: number } | undefined;
  if (o.akPublic instanceof KeyObject) {
    if (o.akPublic.type !== 'public') fail('VERIFY_SIGNATURE', 'AK: a public key is required');
    key = o.akPublic;
  } else {
    if (!o.allowUnrestrictedAK) {
      checkAKAttributes(o.akPublic);
      akAttributesChecked = true;
    }
    if (o.akPublic.type === TPM_ALG.RSA || o.akPublic.type === TPM_ALG.ECC) akScheme = o.akPublic.parameters.scheme;
    key = publicKeyFromTPMT(o.akPublic);
  }

  const sig = parseSignature(o.signature);
  if (sig.sigAlg === TPM_ALG.NULL || sig.sigAlg === TPM_ALG.HMAC) return fail('VERIFY_SIGNATURE', `signature: algorithm ${algName(sig.sigAlg)} is not an asymmetric signature`);
  const hinfo = HASH_INFO.get(sig.hash);
  if (!hinfo) return fail('VERIFY_HASH', `signature hash: unsupported ${algName(sig.hash)}`);
  if (sig.hash === TPM_ALG.SHA1 && !o.allowSHA1) fail('VERIFY_HASH', 'signature hash: SHA-1 signatures are refused (allowSHA1 not set)');
  if (o.requireHash && hinfo.name !== o.requireHash) fail('VERIFY_HASH', `signature hash: ${hinfo.name} used, ${o.requireHash} required`);
  if (akScheme && akScheme.scheme !== TPM_ALG.NULL) {
    if (sig.sigAlg !== akScheme.scheme || sig.hash !== akScheme.hashAlg) {
      fail('VERIFY_SIGNATURE', `signature: scheme ${algName(sig.sigAlg)}/${hinfo.name} differs from the AK's ${algName(akScheme.scheme)}/${HASH_INFO.get(akScheme.hashAlg)?.name ?? algName(akScheme.hashAlg)}`);
    }
  }
  verifySignature(key, o.message, sig);

  // The signature is good: from here on the bytes are what the TPM produced.
  const attest = unmarshalAttest(o.message, 'quote message (TPMS_ATTEST)');
  if (attest.magic !== TPM_GENERATED_VALUE) fail('VERIFY_MAGIC', `magic: 0x${attest.magic.toString(16)} is not TPM_GENERATED_VALUE 0xff544347`);
  if (attest.type !== TPM_ST.ATTEST_QUOTE || !('pcrSelect' in attest.attested)) fail('VERIFY_TYPE', `type: 0x${attest.type.toString(16)} is not TPM_ST_ATTEST_QUOTE 0x8018`);
  if (!constantTimeEqual(attest.extraData, o.nonce)) {
    fail('VERIFY_NONCE', attest.extraData.length !== o.nonce.length ? `nonce: extraData has ${attest.extraData.length} bytes, the nonce ${o.nonce.length}` : 'nonce: extraData differs from the nonce');
  }
  if (o.qualifiedSigner && !constantTimeEqual(attest.qualifiedSigner, o.qualifiedSigner)) fail('VERIFY_SIGNER', 'signer: qualifiedSigner differs from the expected AK qualified name');
  const q = attest.attested as { pcrSelect: TPMSPCRSelection[]; pcrDigest: Buffer };

  const result: VerifiedQuote = {
    attest,
    pcrSelect: q.pcrSelect,
    pcrDigest: q.pcrDigest,
    sigAlg: sig.sigAlg,
    hashAlg: sig.hash,
    hashName: hinfo.name,
    akAttributesChecked,
    pcrsVerified: false,
    unquoted: [],
  };
  if (o.pcrs) {
    const { digest, covered } = quotePcrDigest(sig.hash, q.pcrSelect, o.pcrs);
    if (!constantTimeEqual(digest, q.pcrDigest)) fail('VERIFY_PCR_DIGEST', `PCR digest: the quoted digest does not match the ${hinfo.name} digest of the given PCR values`);
    result.pcrsVerified = true;
    result.pcrs = covered;
    for (const [bank, m] of o.pcrs) for (const i of m.keys()) if (!covered.get(bank)?.has(i)) result.unquoted.push(`${bank}:${i}`);
  }
  return result;
}
