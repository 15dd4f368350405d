/**
 * TPM 2.0 structures bootkey needs, with marshal/unmarshal pairs (Part 2: Structures).
 * Names follow the spec: TPMT_PUBLIC → TPMTPublic, fields keep the spec's names.
 * Unmarshallers throw only TpmError('MARSHAL').
 * @module
 */
import { TPM_ALG, TPM_ST, HASH_INFO } from './constants.ts';
import { Reader, Writer, marshal, unmarshal } from './marshal.ts';
import { TpmError } from './errors.ts';

// ---------- Part 2 §11.1.6 TPMT_SYM_DEF_OBJECT / §11.1.5 TPMT_SYM_DEF ----------

export interface TPMTSymDef {
  algorithm: number;
  keyBits: number; // for XOR: the hash algorithm
  mode: number; // TPM_ALG_CFB, ...; absent (0) for XOR
}
export const SYM_NULL: TPMTSymDef = { algorithm: TPM_ALG.NULL, keyBits: 0, mode: 0 };
export const SYM_AES128_CFB: TPMTSymDef = { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB };

export function writeSymDef(w: Writer, s: TPMTSymDef): void {
  w.u16(s.algorithm);
  if (s.algorithm === TPM_ALG.NULL) return;
  w.u16(s.keyBits);
  if (s.algorithm !== TPM_ALG.XOR) w.u16(s.mode);
}
export function readSymDef(r: Reader): TPMTSymDef {
  const algorithm = r.u16('TPMT_SYM_DEF.algorithm');
  if (algorithm === TPM_ALG.NULL) return { ...SYM_NULL };
  const keyBits = r.u16('TPMT_SYM_DEF.keyBits');
  const mode = algorithm === TPM_ALG.XOR ? 0 : r.u16('TPMT_SYM_DEF.mode');
  return { algorithm, keyBits, mode };
}

// ---------- schemes: §11.2.5.5 TPMT_RSA_SCHEME, §11.2.5.6 TPMT_ECC_SCHEME, §11.2.3 TPMT_KDF_SCHEME ----------

export interface TPMTScheme {
  scheme: number;
  hashAlg: number; // TPM_ALG_NULL when the scheme is NULL or has no hash (RSAES)
  count?: number; // ECDAA only
}
export const SCHEME_NULL: TPMTScheme = { scheme: TPM_ALG.NULL, hashAlg: TPM_ALG.NULL };

function schemeHasHash(scheme: number): boolean {
  return scheme !== TPM_ALG.NULL && scheme !== TPM_ALG.RSAES;
}
export function writeScheme(w: Writer, s: TPMTScheme): void {
  w.u16(s.scheme);
  if (!schemeHasHash(s.scheme)) return;
  w.u16(s.hashAlg);
  if (s.scheme === TPM_ALG.ECDAA) w.u16(s.count ?? 0);
}
export function readScheme(r: Reader, what: string): TPMTScheme {
  const scheme = r.u16(`${what}.scheme`);
  if (!schemeHasHash(scheme)) return { scheme, hashAlg: TPM_ALG.NULL };
  const hashAlg = r.u16(`${what}.details.hashAlg`);
  if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg, count: r.u16(`${what}.details.count`) };
  return { scheme, hashAlg };
}
/** TPMT_KEYEDHASH_SCHEME, §11.1.23: HMAC(hash) or XOR(hash, kdf). */
export function writeKeyedHashScheme(w: Writer, s: TPMTScheme & { kdf?: number }): void {
  w.u16(s.scheme);
  if (s.scheme === TPM_ALG.HMAC) w.u16(s.hashAlg);
  else if (s.scheme === TPM_ALG.XOR) w.u16(s.hashAlg).u16(s.kdf ?? TPM_ALG.KDF1_SP800_108);
}
export function readKeyedHashScheme(r: Reader): TPMTScheme & { kdf?: number } {
  const scheme = r.u16('TPMT_KEYEDHASH_SCHEME.scheme');
  if (scheme === TPM_ALG.HMAC) return { scheme, hashAlg: r.u16('TPMS_SCHEME_HMAC.hashAlg') };
  if (scheme === TPM_ALG.XOR) return { scheme, hashAlg: r.u16('TPMS_SCHEME_XOR.hashAlg'), kdf: r.u16('TPMS_SCHEME_XOR.kdf') };
  if (scheme !== TPM_ALG.NULL) r.fail('TPMT_KEYEDHASH_SCHEME', `unknown scheme 0x${scheme.toString(16)}`);
  return { scheme, hashAlg: TPM_ALG.NULL };
}

// ---------- §12.2.4 TPMT_PUBLIC ----------

export interface RSAParms {
  symmetric: TPMTSymDef;
  scheme: TPMTScheme;
  keyBits: number;
  exponent: number; // 0 = 65537
}
export interface ECCParms {
  symmetric: TPMTSymDef;
  scheme: TPMTScheme;
  curveID: number;
  kdf: TPMTScheme;
}
export interface KeyedHashParms {
  scheme: TPMTScheme & { kdf?: number };
}
export interface SymCipherParms {
  sym: TPMTSymDef;
}

export type TPMTPublic =
  | { type: typeof TPM_ALG.RSA; nameAlg: number; objectAttributes: number; authPolicy: Buffer; parameters: RSAParms; unique: { rsa: Buffer } }
  | { type: typeof TPM_ALG.ECC; nameAlg: number; objectAttributes: number; authPolicy: Buffer; parameters: ECCParms; unique: { x: Buffer; y: Buffer } }
  | { type: typeof TPM_ALG.KEYEDHASH; nameAlg: number; objectAttributes: number; authPolicy: Buffer; parameters: KeyedHashParms; unique: { digest: Buffer } }
  | { type: typeof TPM_ALG.SYMCIPHER; nameAlg: number; objectAttributes: number; authPolicy: Buffer; parameters: SymCipherParms; unique: { digest: Buffer } };

export function writePublic(w: Writer, p: TPMTPublic): void {
  w.u16(p.type).u16(p.nameAlg).u32(p.objectAttributes).tpm2b(p.authPolicy);
  switch (p.type) {
    case TPM_ALG.RSA:
      writeSymDef(w, p.parameters.symmetric);
      writeScheme(w, p.parameters.scheme);
      w.u16(p.parameters.keyBits).u32(p.parameters.exponent);
      w.tpm2b(p.unique.rsa);
      break;
    case TPM_ALG.ECC:
      writeSymDef(w, p.parameters.symmetric);
      writeScheme(w, p.parameters.scheme);
      w.u16(p.parameters.curveID);
      writeScheme(w, p.parameters.kdf);
      w.tpm2b(p.unique.x).tpm2b(p.unique.y);
      break;
    case TPM_ALG.KEYEDHASH:
      writeKeyedHashScheme(w, p.parameters.scheme);
      w.tpm2b(p.unique.digest);
      break;
    case TPM_ALG.SYMCIPHER:
      writeSymDef(w, p.parameters.sym);
      w.tpm2b(p.unique.digest);
      break;
  }
}

export function readPublic(r: Reader): TPMTPublic {
  const type = r.u16('TPMT_PUBLIC.type');
  const nameAlg = r.u16('TPMT_PUBLIC.nameAlg');
  const objectAttributes = r.u32('TPMT_PUBLIC.objectAttributes');
  const authPolicy = r.tpm2b('TPMT_PUBLIC.authPolicy', 64);
  switch (type) {
    case TPM_ALG.RSA: {
      const symmetric = readSymDef(r);
      const scheme = readScheme(r, 'TPMS_RSA_PARMS.scheme');
      const keyBits = r.u16('TPMS_RSA_PARMS.keyBits');
      const exponent = r.u32('TPMS_RSA_PARMS.exponent');
      const rsa = r.tpm2b('TPMT_PUBLIC.unique.rsa', 512);
      return { type, nameAlg, objectAttributes, authPolicy, parameters: { symmetric, scheme, keyBits, exponent }, unique: { rsa } };
    }
    case TPM_ALG.ECC: {
      const symmetric = readSymDef(r);
      const scheme = readScheme(r, 'TPMS_ECC_PARMS.scheme');
      const curveID = r.u16('TPMS_ECC_PARMS.curveID');
      const kdf = readScheme(r, 'TPMS_ECC_PARMS.kdf');
      const x = r.tpm2b('TPMT_PUBLIC.unique.ecc.x', 128);
      const y = r.tpm2b('TPMT_PUBLIC.unique.ecc.y', 128);
      return { type, nameAlg, objectAttributes, authPolicy, parameters: { symmetric, scheme, curveID, kdf }, unique: { x, y } };
    }
    case TPM_ALG.KEYEDHASH: {
      const scheme = readKeyedHashScheme(r);
      const digest = r.tpm2b('TPMT_PUBLIC.unique.keyedHash', 64);
      return { type, nameAlg, objectAttributes, authPolicy, parameters: { scheme }, unique: { digest } };
    }
    case TPM_ALG.SYMCIPHER: {
      const sym = readSymDef(r);
      const digest = r.tpm2b('TPMT_PUBLIC.unique.sym', 64);
      return { type, nameAlg, objectAttributes, authPolicy, parameters: { sym }, unique: { digest } };
    }
    default:
      return r.fail('TPMT_PUBLIC.type', `unsupported object type 0x${type.toString(16)}`);
  }
}

export const marshalPublic = (p: TPMTPublic): Buffer => marshal((w) => writePublic(w, p));
/** Parses a bare TPMT_PUBLIC. */
export const unmarshalPublic = (b: Uint8Array, ctx = 'TPMT_PUBLIC'): TPMTPublic => unmarshal(b, ctx, readPublic);
/** TPM2B_PUBLIC (what tpm2_createak -u / tpm2_createek -u write). */
export const marshalPublic2B = (p: TPMTPublic): Buffer => marshal((w) => w.tpm2b(marshalPublic(p)));
export const unmarshalPublic2B = (b: Uint8Array, ctx = 'TPM2B_PUBLIC'): TPMTPublic =>
  unmarshal(b, ctx, (r) => r.sized('TPM2B_PUBLIC', readPublic));

// ---------- §10.6 TPMS_PCR_SELECTION / §10.9.7 TPML_PCR_SELECTION ----------

export interface TPMSPCRSelection {
  hash: number;
  /** Selected PCR indices, ascending. */
  pcrs: number[];
}

export function writePCRSelection(w: Writer, sel: TPMSPCRSelection[]): void {
  w.u32(sel.length);
  for (const s of sel) {
    const size = Math.max(3, Math.ceil((Math.max(-1, ...s.pcrs) + 1) / 8));
    const bits = Buffer.alloc(size);
    for (const p of s.pcrs) bits[p >> 3] |= 1 << (p & 7);
    w.u16(s.hash).u8(size).bytes(bits);
  }
}
export function readPCRSelection(r: Reader): TPMSPCRSelection[] {
  const n = r.count('TPML_PCR_SELECTION', 16);
  const out: TPMSPCRSelection[] = [];
  for (let i = 0; i < n; i++) {
    const hash = r.u16('TPMS_PCR_SELECTION.hash');
    const size = r.u8('TPMS_PCR_SELECTION.sizeofSelect');
    if (size > 32) r.fail('TPMS_PCR_SELECTION.sizeofSelect', `${size} is too large`);
    const bits = r.bytes(size, 'TPMS_PCR_SELECTION.pcrSelect');
    const pcrs: number[] = [];
    for (let p = 0; p < size * 8; p++) if (bits[p >> 3] & (1 << (p & 7))) pcrs.push(p);
    out.push({ hash, pcrs });
  }
  return out;
}

/** TPML_DIGEST, §10.9.3 (PCR_Read's values; at most 8). */
export function readDigestList(r: Reader): Buffer[] {
  const n = r.count('TPML_DIGEST', 8);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) out.push(r.tpm2b('TPML_DIGEST.digests', 64));
  return out;
}
export function writeDigestList(w: Writer, d: Uint8Array[]): void {
  w.u32(d.length);
  for (const x of d) w.tpm2b(x);
}

// ---------- §10.12 TPMS_ATTEST ----------

export interface TPMSClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

export type TPMUAttest =
  | { type: typeof TPM_ST.ATTEST_QUOTE; pcrSelect: TPMSPCRSelection[]; pcrDigest: Buffer }
  | { type: typeof TPM_ST.ATTEST_CERTIFY; name: Buffer; qualifiedName: Buffer }
  | { type: typeof TPM_ST.ATTEST_CREATION; objectName: Buffer; creationHash: Buffer }
  | { type: number; raw: Buffer };

export interface TPMSAttest {
  magic: number;
  type: number;
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clockInfo: TPMSClockInfo;
  firmwareVersion: bigint;
  attested: TPMUAttest;
}

export function readAttest(r: Reader): TPMSAttest {
  const magic = r.u32('TPMS_ATTEST.magic');
  const type = r.u16('TPMS_ATTEST.type');
  const qualifiedSigner = r.tpm2b('TPMS_ATTEST.qualifiedSigner', 2 + 64);
  const extraData = r.tpm2b('TPMS_ATTEST.extraData', 64);
  const clock = r.u64('TPMS_CLOCK_INFO.clock');
  const resetCount = r.u32('TPMS_CLOCK_INFO.resetCount');
  const restartCount = r.u32('TPMS_CLOCK_INFO.restartCount');
  const safe = r.u8('TPMS_CLOCK_INFO.safe') !== 0;
  const firmwareVersion = r.u64('TPMS_ATTEST.firmwareVersion');
  let attested: TPMUAttest;
  switch (type) {
    case TPM_ST.ATTEST_QUOTE:
      attested = { type, pcrSelect: readPCRSelection(r), pcrDigest: r.tpm2b('TPMS_QUOTE_INFO.pcrDigest', 64) };
      break;
    case TPM_ST.ATTEST_CERTIFY:
      attested = { type, name: r.tpm2b('TPMS_CERTIFY_INFO.name', 66), qualifiedName: r.tpm2b('TPMS_CERTIFY_INFO.qualifiedName', 66) };
      break;
    case TPM_ST.ATTEST_CREATION:
      attested = { type, objectName: r.tpm2b('TPMS_CREATION_INFO.objectName', 66), creationHash: r.tpm2b('TPMS_CREATION_INFO.creationHash', 64) };
      break;
    default:
      attested = { type, raw: r.bytes(r.remaining, 'TPMS_ATTEST.attested') };
  }
  return { magic, type, qualifiedSigner, extraData, clockInfo: { clock, resetCount, restartCount, safe }, firmwareVersion, attested };
}
/** Parses TPMS_ATTEST bytes (tpm2_quote -m writes these). */
export const unmarshalAttest = (b: Uint8Array, ctx = 'TPMS_ATTEST'): TPMSAttest => unmarshal(b, ctx, readAttest);

// ---------- §11.3.4 TPMT_SIGNATURE ----------

export type TPMTSignature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hash: number; sig: Buffer }
  | { sigAlg: typeof TPM_ALG.ECDSA; hash: number; signatureR: Buffer; signatureS: Buffer }
  | { sigAlg: typeof TPM_ALG.HMAC; hash: number; digest: Buffer }
  | { sigAlg: typeof TPM_ALG.NULL };

export function readSignature(r: Reader): TPMTSignature {
  const sigAlg = r.u16('TPMT_SIGNATURE.sigAlg');
  switch (sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      return { sigAlg, hash: r.u16('TPMS_SIGNATURE_RSA.hash'), sig: r.tpm2b('TPMS_SIGNATURE_RSA.sig', 512) };
    case TPM_ALG.ECDSA:
      return { sigAlg, hash: r.u16('TPMS_SIGNATURE_ECC.hash'), signatureR: r.tpm2b('TPMS_SIGNATURE_ECC.signatureR', 128), signatureS: r.tpm2b('TPMS_SIGNATURE_ECC.signatureS', 128) };
    case TPM_ALG.HMAC: {
      const hash = r.u16('TPMT_HA.hashAlg');
      const info = HASH_INFO.get(hash);
      if (!info) r.fail('TPMT_HA.hashAlg', `unknown hash 0x${hash.toString(16)}`);
      return { sigAlg, hash, digest: r.bytes(info.size, 'TPMT_HA.digest') };
    }
    case TPM_ALG.NULL:
      return { sigAlg };
    default:
      return r.fail('TPMT_SIGNATURE.sigAlg', `unsupported signature algorithm 0x${sigAlg.toString(16)}`);
  }
}
export function writeSignature(w: Writer, s: TPMTSignature): void {
  w.u16(s.sigAlg);
  switch (s.sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      w.u16(s.hash).tpm2b(s.sig);
      break;
    case TPM_ALG.ECDSA:
      w.u16(s.hash).tpm2b(s.signatureR).tpm2b(s.signatureS);
      break;
    case TPM_ALG.HMAC:
      w.u16(s.hash).bytes(s.digest);
      break;
    case TPM_ALG.NULL:
      break;
  }
}
export const unmarshalSignature = (b: Uint8Array, ctx = 'TPMT_SIGNATURE'): TPMTSignature => unmarshal(b, ctx, readSignature);
export const marshalSignature = (s: TPMTSignature): Buffer => marshal((w) => writeSignature(w, s));

/** Helper: the digest size of a hash algorithm, or a TpmError('UNSUPPORTED'). */
export function hashInfo(alg: number): { name: string; bank: string; size: number } {
  const i = HASH_INFO.get(alg);
  if (!i) throw new TpmError('UNSUPPORTED', `unsupported hash algorithm 0x${alg.toString(16)}`);
  return i;
}
