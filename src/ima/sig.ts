/**
 * IMA's digital signatures (issue 12 §2): the `security.ima` xattr an `ima-sig` entry carries, and
 * the appended PKCS#7 of an `ima-modsig` entry, verified with the runtime policy's keys.
 *
 * The xattr (linux security/integrity/integrity.h, `struct signature_v2_hdr`, big endian):
 *
 *   type (1) = 0x03 EVM_IMA_XATTR_DIGSIG | 0x05 EVM_XATTR_PORTABLE_DIGSIG | 0x06 IMA_VERITY_DIGSIG
 *   version (1) = 2 | 3
 *   hash_algo (1)   linux include/uapi/linux/hash_info.h (4 = sha256, ...)
 *   keyid (4)       last 4 bytes of the key's X.509 Subject Key Identifier, or of SHA-1 over the
 *                   public key (RSA: PKCS#1 RSAPublicKey DER; EC: the uncompressed point) —
 *                   ima-evm-utils' calc_keyid_v2 and Keylime's _get_keyidv2
 *   sig_size (2)    then sig_size bytes: RSA PKCS#1 v1.5 or DER ECDSA
 *
 * Version 2 signs the file digest itself. Version 3 ("sigv3") signs H(ima_file_id), where
 * `struct ima_file_id { u8 hash_type; u8 hash_algorithm; u8 hash[digest size] }` (only the used
 * part is hashed) and hash_type is the xattr type — the kernel's calc_file_id_hash.
 *
 * Checklist of {@link verifyImaSignature}: (1) header well formed, sizes exact; (2) the signature's
 * hash algorithm is the entry digest's; (3) a policy (or learned) key has the keyid; (4) the RSA or
 * ECDSA signature verifies over the digest (v2) or H(ima_file_id) (v3) with one such key.
 * Keylime verifies only v2 (type 3 or 5); v3 is an addition (a valid v3 signature passes here where
 * Keylime would fall back to the digest list).
 * @module
 */
import { createHash, createPublicKey, publicDecrypt, constants, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ContentInfo, SignedData, type SignerInfo } from '@peculiar/asn1-cms';
import { Certificate, SubjectKeyIdentifier, id_ce_subjectKeyIdentifier } from '@peculiar/asn1-x509';
import { BootkeyError } from '../errors.ts';
import { CURVES, ecdsaVerifyDigest } from './_ecdsa.ts';

/** A verification key, a signature or a key buffer that cannot be used. */
export class ImaSigError extends BootkeyError {
  readonly layer = 'ima';
  constructor(code: 'BAD_SIGNATURE' | 'BAD_KEY' | 'UNSUPPORTED_KEY' | 'TOO_LARGE', message: string, options?: { cause?: unknown }) {
    super(code, message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

export const EVM_IMA_XATTR_DIGSIG = 0x03;
export const EVM_XATTR_PORTABLE_DIGSIG = 0x05;
export const IMA_VERITY_DIGSIG = 0x06;

/** linux include/uapi/linux/hash_info.h, the algorithms a signature may name. */
export const HASH_ALGO: Readonly<Record<number, string>> = {
  1: 'md5', 2: 'sha1', 4: 'sha256', 5: 'sha384', 6: 'sha512', 7: 'sha224', 17: 'sm3', 18: 'streebog256', 19: 'streebog512', 20: 'sha3-256', 21: 'sha3-384', 22: 'sha3-512',
};
const HASH_SIZE: Readonly<Record<string, number>> = { md5: 16, sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64 };
/** Algorithms verified here (md5, sm3, streebog and sha3 are refused). */
const VERIFIABLE = new Set(['sha1', 'sha224', 'sha256', 'sha384', 'sha512']);

/** Largest signature accepted (an RSA-16384 signature is 2 KiB; PKCS#7 of a module with a chain stays far below). */
export const MAX_SIG_SIZE = 64 * 1024;
/** Largest key or certificate accepted. */
export const MAX_KEY_SIZE = 64 * 1024;

/** The parsed security.ima signature header. */
export interface ImaSignature {
  readonly type: number;
  readonly version: 2 | 3;
  readonly hashAlgoId: number;
  /** Name (sha256, ...) or `algo#N` when unknown. */
  readonly hashAlgo: string;
  readonly keyid: Buffer;
  readonly signature: Buffer;
}

/**
 * Parses a security.ima digital signature (v2 or v3).
 * @throws ImaSigError BAD_SIGNATURE naming the byte offset
 */
export function parseImaSignature(bytes: Uint8Array): ImaSignature {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (off: number, msg: string): never => {
    throw new ImaSigError('BAD_SIGNATURE', `IMA signature: ${msg} (byte ${off})`);
  };
  if (b.length > MAX_SIG_SIZE) throw new ImaSigError('TOO_LARGE', `IMA signature: ${b.length} bytes exceeds the ${MAX_SIG_SIZE}-byte limit`);
  if (b.length < 9) fail(b.length, `${b.length} bytes, shorter than the 9-byte header`);
  const type = b[0];
  if (type !== EVM_IMA_XATTR_DIGSIG && type !== EVM_XATTR_PORTABLE_DIGSIG && type !== IMA_VERITY_DIGSIG) {
    fail(0, `type 0x${type.toString(16).padStart(2, '0')} is not a digital signature (0x03, 0x05 or 0x06)`);
  }
  const version = b[1];
  if (version !== 2 && version !== 3) fail(1, `version ${version} is not 2 or 3`);
  if (type === IMA_VERITY_DIGSIG && version !== 3) fail(1, 'an fs-verity signature (type 0x06) must be version 3');
  if (type === EVM_XATTR_PORTABLE_DIGSIG && version !== 2) fail(1, 'a portable signature (type 0x05) must be version 2');
  const hashAlgoId = b[2];
  const sigSize = b.readUInt16BE(7);
  if (9 + sigSize !== b.length) fail(7, `sig_size ${sigSize} but ${b.length - 9} bytes follow the header`);
  if (sigSize === 0) fail(7, 'empty signature');
  return {
    type,
    version: version as 2 | 3,
    hashAlgoId,
    hashAlgo: HASH_ALGO[hashAlgoId] ?? `algo#${hashAlgoId}`,
    keyid: Buffer.from(b.subarray(3, 7)),
    signature: Buffer.from(b.subarray(9)),
  };
}

/**
 * The structural rule Keylime's parser applies to every `sig` field (ast.Signature): at least the
 * 9-byte header, and exactly sig_size bytes after it. A field that breaks it is refused outright
 * (even on an excluded or listed path); one that keeps it but does not verify just does not help.
 */
export function sigFieldWellFormed(sig: Uint8Array): boolean {
  return sig.length >= 9 && 9 + ((sig[7] << 8) | sig[8]) === sig.length;
}

/** A public key the runtime policy trusts for signatures. */
export interface VerificationKey {
  readonly key: KeyObject;
  readonly type: 'rsa' | 'ec';
  /** EC curve (JWK name) or RSA modulus size. */
  readonly detail: string;
  /** The keyids (8 hex digits) signatures may name it by: SKID-derived first, then SHA-1 of the key. */
  readonly keyids: readonly string[];
  /** SubjectPublicKeyInfo DER (its SHA-256 identifies the key in messages and `show`). */
  readonly spki: Buffer;
  /** Set when the key came as an X.509 certificate. */
  readonly cert?: { readonly subject: string; readonly skid?: Buffer; readonly issuerDer: Buffer; readonly serial: Buffer };
  /** For EC: the public point. */
  readonly point?: readonly [bigint, bigint];
}

function strip0(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** keyidv2 from the public key: SHA-1 over PKCS#1 (RSA) or the uncompressed point (EC), last 4 bytes. */
function computedKeyid(key: KeyObject): { keyid: string; point?: [bigint, bigint]; detail: string } {
  if (key.asymmetricKeyType === 'rsa') {
    const der = key.export({ type: 'pkcs1', format: 'der' });
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    return { keyid: createHash('sha1').update(der).digest().subarray(16).toString('hex'), detail: `RSA-${bits}` };
  }
  const jwk = key.export({ format: 'jwk' });
  const curve = jwk.crv ? CURVES[jwk.crv] : undefined;
  if (!curve || !jwk.x || !jwk.y) throw new ImaSigError('UNSUPPORTED_KEY', `EC curve ${jwk.crv ?? '?'} is not supported (P-256, P-384, P-521, secp256k1)`);
  const x = Buffer.from(jwk.x, 'base64url');
  const y = Buffer.from(jwk.y, 'base64url');
  const point = Buffer.concat([Buffer.from([4]), Buffer.alloc(curve.size - x.length), x, Buffer.alloc(curve.size - y.length), y]);
  return {
    keyid: createHash('sha1').update(point).digest().subarray(16).toString('hex'),
    point: [BigInt('0x' + x.toString('hex')), BigInt('0x' + y.toString('hex'))],
    detail: curve.name,
  };
}

function fromKeyObject(key: KeyObject, cert?: VerificationKey['cert']): VerificationKey {
  const t = key.asymmetricKeyType;
  if (t !== 'rsa' && t !== 'ec') throw new ImaSigError('UNSUPPORTED_KEY', `a ${t ?? 'unknown'} key: only RSA and ECDSA keys verify IMA signatures`);
  if (t === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new ImaSigError('UNSUPPORTED_KEY', `an RSA key of ${key.asymmetricKeyDetails?.modulusLength} bits: at least 2048 are required`);
  }
  const c = computedKeyid(key);
  const keyids: string[] = [];
  if (cert?.skid && cert.skid.length >= 4) keyids.push(cert.skid.subarray(cert.skid.length - 4).toString('hex'));
  if (!keyids.includes(c.keyid)) keyids.push(c.keyid);
  return { key, type: t, detail: c.detail, keyids, spki: key.export({ type: 'spki', format: 'der' }), cert, point: c.point };
}

function certDetails(der: Buffer, x: X509Certificate): VerificationKey['cert'] {
  const c = AsnConvert.parse(der, Certificate);
  const ext = c.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
  let skid: Buffer | undefined;
  if (ext) skid = Buffer.from(AsnConvert.parse(ext.extnValue.buffer, SubjectKeyIdentifier).buffer);
  return {
    subject: x.subject.replace(/\n/g, ', '),
    skid,
    issuerDer: Buffer.from(AsnConvert.serialize(c.tbsCertificate.issuer)),
    serial: strip0(Buffer.from(c.tbsCertificate.serialNumber)),
  };
}

/**
 * Reads one key from what a policy or an `ima-buf` entry holds: an X.509 certificate (DER or PEM)
 * or a SubjectPublicKeyInfo (DER or PEM) — the forms Keylime's get_pubkey accepts, private keys
 * excepted (a policy has no business holding one).
 * Returns undefined when the bytes are none of those; throws when they are a key that cannot be
 * used (DSA, Ed25519, a short RSA key, an unknown curve).
 * @throws ImaSigError UNSUPPORTED_KEY, TOO_LARGE
 */
export function tryLoadKey(bytes: Uint8Array | string): VerificationKey | undefined {
  const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length > MAX_KEY_SIZE) throw new ImaSigError('TOO_LARGE', `a key of ${buf.length} bytes exceeds the ${MAX_KEY_SIZE}-byte limit`);
  if (buf.length === 0) return undefined;
  const text = buf.toString('latin1');
  if (text.includes('-----BEGIN CERTIFICATE-----')) {
    const m = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(text);
    let x: X509Certificate;
    try {
      x = new X509Certificate(m ? m[0] : text);
    } catch {
      return undefined;
    }
    return fromKeyObject(x.publicKey, certDetails(x.raw, x));
  }
  if (text.includes('-----BEGIN PUBLIC KEY-----')) {
    let k: KeyObject;
    try {
      k = createPublicKey({ key: text, format: 'pem' });
    } catch {
      return undefined;
    }
    return fromKeyObject(k);
  }
  if (buf[0] !== 0x30) return undefined;
  try {
    const x = new X509Certificate(buf);
    if (!x.raw.equals(buf)) return undefined;
    return fromKeyObject(x.publicKey, certDetails(x.raw, x));
  } catch (e) {
    if (e instanceof ImaSigError) throw e;
  }
  try {
    const k = createPublicKey({ key: buf, format: 'der', type: 'spki' });
    return fromKeyObject(k);
  } catch (e) {
    if (e instanceof ImaSigError) throw e;
    return undefined;
  }
}

/** Like {@link tryLoadKey}, but a clear error when the bytes hold no key. @throws ImaSigError BAD_KEY */
export function loadVerificationKey(bytes: Uint8Array | string, name = 'key'): VerificationKey {
  let k: VerificationKey | undefined;
  try {
    k = tryLoadKey(bytes);
  } catch (e) {
    if (e instanceof ImaSigError) throw new ImaSigError(e.code as 'BAD_KEY', `${name}: ${e.message}`, { cause: e });
    throw e;
  }
  if (!k) throw new ImaSigError('BAD_KEY', `${name}: not a PEM or DER public key or X.509 certificate`);
  return k;
}

/** Short identity of a key for messages: `1a2b3c4d (RSA-2048, CN=...)`. */
export function describeKey(k: VerificationKey): string {
  return `${k.keyids[0]} (${k.detail}${k.cert ? `, ${k.cert.subject}` : ''})`;
}

/** DigestInfo prefixes (RFC 8017 §9.2 note 1) for RSA PKCS#1 v1.5 over a given digest. */
const DIGEST_INFO: Readonly<Record<string, string>> = {
  sha1: '3021300906052b0e03021a05000414',
  sha224: '302d300d06096086480165030402040500041c',
  sha256: '3031300d060960864801650304020105000420',
  sha384: '3041300d060960864801650304020205000430',
  sha512: '3051300d060960864801650304020305000440',
};

/** RSA PKCS#1 v1.5 or ECDSA over an already computed digest. Never throws on bad signatures. */
export function verifyDigest(k: VerificationKey, algo: string, digest: Buffer, sig: Buffer): boolean {
  if (!VERIFIABLE.has(algo) || digest.length !== HASH_SIZE[algo]) return false;
  if (k.type === 'rsa') {
    const bytes = (k.key.asymmetricKeyDetails?.modulusLength ?? 0) / 8;
    if (sig.length !== bytes) return false;
    let em: Buffer;
    try {
      em = publicDecrypt({ key: k.key, padding: constants.RSA_PKCS1_PADDING }, sig);
    } catch {
      return false;
    }
    return em.equals(Buffer.concat([Buffer.from(DIGEST_INFO[algo], 'hex'), digest]));
  }
  const curve = CURVES[k.detail];
  if (!curve || !k.point) return false;
  return ecdsaVerifyDigest(curve, k.point[0], k.point[1], digest, sig);
}

export type SigFailureCode = 'MALFORMED_SIGNATURE' | 'ALGO_MISMATCH' | 'UNSUPPORTED_ALGO' | 'UNKNOWN_KEY' | 'BAD_SIGNATURE';

export type SigResult =
  | { readonly ok: true; readonly key: VerificationKey; readonly keyid: string; readonly version: number }
  | { readonly ok: false; readonly code: SigFailureCode; readonly keyid?: string; readonly message: string };

/** Looks keys up by keyid (hex). */
export interface KeyLookup {
  byKeyid(keyid: string): readonly VerificationKey[];
}

export function keyIndex(keys: Iterable<VerificationKey>): KeyLookup & { readonly all: readonly VerificationKey[] } {
  const m = new Map<string, VerificationKey[]>();
  const all: VerificationKey[] = [];
  for (const k of keys) {
    all.push(k);
    for (const id of k.keyids) {
      const l = m.get(id) ?? [];
      if (!l.includes(k)) l.push(k);
      m.set(id, l);
    }
  }
  return { all, byKeyid: (id) => m.get(id) ?? [] };
}

/**
 * Verifies an `ima-sig` entry's signature (the security.ima xattr) over the entry's file digest.
 * Never throws on attacker bytes: a malformed signature is a failed result.
 */
export function verifyImaSignature(sigBytes: Uint8Array, digestAlgo: string, digest: Buffer, keys: KeyLookup, digestType?: string): SigResult {
  let sig: ImaSignature;
  try {
    sig = parseImaSignature(sigBytes);
  } catch (e) {
    return { ok: false, code: 'MALFORMED_SIGNATURE', message: (e as Error).message };
  }
  const keyid = sig.keyid.toString('hex');
  // An fs-verity digest (d-ngv2 "verity:") is signed only as such (type 0x06), and a type 0x06
  // signature only covers an fs-verity digest: no reading one kind of digest as the other.
  if ((sig.type === IMA_VERITY_DIGSIG) !== (digestType === 'verity')) {
    return { ok: false, code: 'MALFORMED_SIGNATURE', keyid, message: `signature by key ${keyid}: a ${sig.type === IMA_VERITY_DIGSIG ? 'fs-verity' : 'file'} signature on a ${digestType === 'verity' ? 'fs-verity' : 'file'} digest` };
  }
  if (sig.hashAlgo !== digestAlgo) {
    return { ok: false, code: 'ALGO_MISMATCH', keyid, message: `signature by key ${keyid} is over ${sig.hashAlgo}, the entry's digest is ${digestAlgo}` };
  }
  if (!VERIFIABLE.has(sig.hashAlgo) || digest.length !== HASH_SIZE[sig.hashAlgo]) {
    return { ok: false, code: 'UNSUPPORTED_ALGO', keyid, message: `signature by key ${keyid}: hash algorithm ${sig.hashAlgo} is not verified here` };
  }
  const candidates = keys.byKeyid(keyid);
  if (candidates.length === 0) return { ok: false, code: 'UNKNOWN_KEY', keyid, message: `signature by key ${keyid}: no such key in the policy` };
  let signed = digest;
  if (sig.version === 3) {
    // struct ima_file_id, only its used part: hash_type, hash_algorithm, the digest.
    signed = createHash(sig.hashAlgo).update(Buffer.concat([Buffer.from([sig.type, sig.hashAlgoId]), digest])).digest();
  }
  for (const k of candidates) {
    if (verifyDigest(k, sig.hashAlgo, signed, sig.signature)) return { ok: true, key: k, keyid, version: sig.version };
  }
  return { ok: false, code: 'BAD_SIGNATURE', keyid, message: `signature by key ${keyid} does not verify` };
}

const OID_DATA = '1.2.840.113549.1.7.1';
const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_CONTENT_TYPE = '1.2.840.113549.1.9.3';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';
const DIGEST_OIDS: Readonly<Record<string, string>> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
/** Signature algorithm OIDs: the key type they need and the digest they imply (undefined: the SignerInfo's). */
const SIG_OIDS: Readonly<Record<string, { type: 'rsa' | 'ec'; digest?: string }>> = {
  '1.2.840.113549.1.1.1': { type: 'rsa' },
  '1.2.840.113549.1.1.5': { type: 'rsa', digest: 'sha1' },
  '1.2.840.113549.1.1.14': { type: 'rsa', digest: 'sha224' },
  '1.2.840.113549.1.1.11': { type: 'rsa', digest: 'sha256' },
  '1.2.840.113549.1.1.12': { type: 'rsa', digest: 'sha384' },
  '1.2.840.113549.1.1.13': { type: 'rsa', digest: 'sha512' },
  '1.2.840.10045.2.1': { type: 'ec' },
  '1.2.840.10045.4.1': { type: 'ec', digest: 'sha1' },
  '1.2.840.10045.4.3.1': { type: 'ec', digest: 'sha224' },
  '1.2.840.10045.4.3.2': { type: 'ec', digest: 'sha256' },
  '1.2.840.10045.4.3.3': { type: 'ec', digest: 'sha384' },
  '1.2.840.10045.4.3.4': { type: 'ec', digest: 'sha512' },
};

function derOf(bytes: ArrayBuffer): asn1js.AsnType | undefined {
  const r = asn1js.fromBER(bytes);
  return r.offset === -1 ? undefined : r.result;
}

/** The policy keys a SignerInfo may name: by issuer+serial or SKID when certificates say so, else every key. */
function signerCandidates(si: SignerInfo, keys: readonly VerificationKey[]): VerificationKey[] {
  const ias = si.sid.issuerAndSerialNumber;
  const skid = si.sid.subjectKeyIdentifier;
  const named = keys.filter((k) => {
    if (!k.cert) return false;
    if (ias) return k.cert.serial.equals(strip0(Buffer.from(ias.serialNumber))) && k.cert.issuerDer.equals(Buffer.from(AsnConvert.serialize(ias.issuer)));
    if (skid) return !!k.cert.skid && k.cert.skid.equals(Buffer.from(skid.buffer));
    return false;
  });
  return named.length > 0 ? named : keys.filter((k) => !k.cert);
}

/**
 * Verifies an `ima-modsig` entry's appended signature: a detached PKCS#7/CMS SignedData (id-data,
 * no content) over the file without its signature, whose digest is the entry's d-modsig. Kernel
 * modules are signed without signed attributes (sign-file's CMS_NOATTR): the signature is then over
 * the content digest itself; with signed attributes, messageDigest must equal d-modsig and the
 * signature covers the attributes' DER SET. The signer is a policy key: the certificate the
 * SignerInfo names (issuer and serial, or SKID), else any bare public key of the policy.
 */
export function verifyModsig(pkcs7: Uint8Array, digestAlgo: string, digest: Buffer, keys: readonly VerificationKey[]): SigResult {
  const bad = (message: string): SigResult => ({ ok: false, code: 'MALFORMED_SIGNATURE', message: `appended signature: ${message}` });
  if (pkcs7.byteLength > MAX_SIG_SIZE) return bad(`${pkcs7.byteLength} bytes exceeds the ${MAX_SIG_SIZE}-byte limit`);
  let sd: SignedData;
  try {
    const buf = Buffer.from(pkcs7.buffer, pkcs7.byteOffset, pkcs7.byteLength);
    const ci = AsnConvert.parse(buf, ContentInfo);
    if (ci.contentType !== OID_SIGNED_DATA) return bad(`content type ${ci.contentType} is not SignedData`);
    sd = AsnConvert.parse(ci.content, SignedData);
    if (!Buffer.from(AsnConvert.serialize(ci)).equals(buf)) return bad('not DER (its re-encoding differs)');
  } catch (e) {
    return bad(`PKCS#7 does not decode: ${(e as Error)?.message ?? e}`);
  }
  if (sd.encapContentInfo.eContentType !== OID_DATA) return bad(`content type ${sd.encapContentInfo.eContentType} is not id-data`);
  if (sd.encapContentInfo.eContent) return bad('not detached (it carries content)');
  if (sd.signerInfos.length === 0) return bad('no SignerInfo');
  let last: SigResult = { ok: false, code: 'UNKNOWN_KEY', message: 'appended signature: no policy key matches its signer' };
  for (const si of sd.signerInfos) {
    const dAlg = DIGEST_OIDS[si.digestAlgorithm.algorithm];
    if (!dAlg) return { ok: false, code: 'UNSUPPORTED_ALGO', message: `appended signature: digest algorithm ${si.digestAlgorithm.algorithm} not supported` };
    if (dAlg !== digestAlgo) return { ok: false, code: 'ALGO_MISMATCH', message: `appended signature is over ${dAlg}, the entry's d-modsig is ${digestAlgo}` };
    const sAlg = SIG_OIDS[si.signatureAlgorithm.algorithm];
    if (!sAlg || (sAlg.digest && sAlg.digest !== dAlg)) return { ok: false, code: 'UNSUPPORTED_ALGO', message: `appended signature: signature algorithm ${si.signatureAlgorithm.algorithm} not supported with ${dAlg}` };
    const sig = Buffer.from(si.signature.buffer);
    let check: (k: VerificationKey) => boolean;
    if (si.signedAttrs && si.signedAttrs.length > 0) {
      const md = si.signedAttrs.filter((a) => a.attrType === OID_MESSAGE_DIGEST);
      const ct = si.signedAttrs.filter((a) => a.attrType === OID_CONTENT_TYPE);
      const mdv = md.length === 1 && md[0].attrValues.length === 1 ? derOf(md[0].attrValues[0]) : undefined;
      const ctv = ct.length === 1 && ct[0].attrValues.length === 1 ? derOf(ct[0].attrValues[0]) : undefined;
      if (!(mdv instanceof asn1js.OctetString) || !Buffer.from(mdv.valueBlock.valueHexView).equals(digest)) {
        last = { ok: false, code: 'BAD_SIGNATURE', message: 'appended signature: its messageDigest is not the entry\'s d-modsig' };
        continue;
      }
      if (!(ctv instanceof asn1js.ObjectIdentifier) || ctv.valueBlock.toString() !== OID_DATA) {
        last = { ok: false, code: 'BAD_SIGNATURE', message: 'appended signature: its contentType attribute is not id-data' };
        continue;
      }
      // RFC 5652 §5.4: the signature covers the DER SET OF the attributes.
      const set = new asn1js.Set({ value: si.signedAttrs.map((a) => derOf(AsnConvert.serialize(a))!) });
      const signed = Buffer.from(set.toBER(false));
      check = (k) => {
        try {
          return cryptoVerify(dAlg, signed, k.key, sig);
        } catch {
          return false;
        }
      };
    } else {
      check = (k) => verifyDigest(k, dAlg, digest, sig);
    }
    const cands = signerCandidates(si, keys).filter((k) => k.type === sAlg.type);
    if (cands.length === 0) continue;
    for (const k of cands) if (check(k)) return { ok: true, key: k, keyid: k.keyids[0], version: 0 };
    last = { ok: false, code: 'BAD_SIGNATURE', keyid: cands[0].keyids[0], message: `appended signature by key ${cands[0].keyids[0]} does not verify` };
  }
  return last;
}
