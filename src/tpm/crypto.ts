/**
 * TPM 2.0 software cryptography (no TPM needed): the key derivation functions of
 * Part 1 §11.4.10, the TPM's AES-CFB, TPMT_PUBLIC → node:crypto KeyObject, object Names
 * (Part 1 §16) and secret-seed encryption to a storage/endorsement key (Part 1 Annex B.10.3
 * for RSA, Annex C.6.1 for ECC), which MakeCredential, Duplicate and salted sessions share.
 *
 * Every function throws only TpmError (`UNSUPPORTED` for algorithms bootkey does not handle,
 * `VERIFY_KEY` for a public key node:crypto rejects).
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPublicKey,
  publicEncrypt,
  randomBytes,
  timingSafeEqual,
  constants as cryptoConstants,
  type KeyObject,
} from 'node:crypto';
import { TPM_ALG, TPM_ECC } from './constants.ts';
import { TpmError } from './errors.ts';
import { marshal } from './marshal.ts';
import { hashInfo, marshalPublic, type TPMTPublic } from './structures.ts';

/** node:crypto hash name of a TPM hash algorithm (SHA-1/256/384/512; SM3 only where OpenSSL has it). */
export function hashName(hashAlg: number): string {
  return hashInfo(hashAlg).name;
}

/** Digest size in bytes of a TPM hash algorithm. */
export function digestSize(hashAlg: number): number {
  return hashInfo(hashAlg).size;
}

/** H_hashAlg(data...). */
export function hash(hashAlg: number, ...data: Uint8Array[]): Buffer {
  const h = createHash(hashName(hashAlg));
  for (const d of data) h.update(d);
  return h.digest();
}

/** HMAC_hashAlg(key, data...). */
export function hmac(hashAlg: number, key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const h = createHmac(hashName(hashAlg), key);
  for (const d of data) h.update(d);
  return h.digest();
}

/** Constant-time equality (lengths compared first, which leaks only the length). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** The label as the KDFs use it: its bytes with one terminating NUL (added unless present). */
function labelBytes(label: string): Buffer {
  const b = Buffer.from(label, 'utf8');
  return b.length > 0 && b[b.length - 1] === 0 ? b : Buffer.concat([b, Buffer.alloc(1)]);
}

function truncateBits(out: Buffer, bits: number): Buffer {
  const bytes = (bits + 7) >> 3;
  const r = out.subarray(0, bytes);
  // Part 1 §11.4.10.2: when bits is not a multiple of 8, the excess high-order bits are cleared.
  if (bits % 8 !== 0) r[0] &= (1 << (bits % 8)) - 1;
  return Buffer.from(r);
}

function checkBits(bits: number, fn: string): void {
  if (!Number.isInteger(bits) || bits <= 0 || bits > 65536) throw new TpmError('UNSUPPORTED', `${fn}: bad output size ${bits} bits`);
}

/**
 * KDFa, Part 1 §11.4.10.2: SP 800-108 KDF in counter mode with HMAC_hashAlg as the PRF.
 * K(i) = HMAC(key, [i]₃₂ ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ [bits]₃₂), i = 1, 2, …;
 * the output is the first `bits` bits.
 * @throws TpmError('UNSUPPORTED') for an unknown hash or a bad size.
 */
export function kdfa(hashAlg: number, key: Buffer, label: string, contextU: Buffer, contextV: Buffer, bits: number): Buffer {
  checkBits(bits, 'KDFa');
  const name = hashName(hashAlg);
  const lab = labelBytes(label);
  const tail = u32(bits);
  const out: Buffer[] = [];
  let len = 0;
  for (let i = 1; len * 8 < bits; i++) {
    const d = createHmac(name, key).update(u32(i)).update(lab).update(contextU).update(contextV).update(tail).digest();
    out.push(d);
    len += d.length;
  }
  return truncateBits(Buffer.concat(out), bits);
}

/**
 * KDFe, Part 1 §11.4.10.3: SP 800-56A §5.8.1 concatenation KDF.
 * K(i) = H([i]₃₂ ‖ Z ‖ label ‖ 0x00 ‖ partyUInfo ‖ partyVInfo), i = 1, 2, …
 * @throws TpmError('UNSUPPORTED') for an unknown hash or a bad size.
 */
export function kdfe(hashAlg: number, z: Buffer, label: string, partyUInfo: Buffer, partyVInfo: Buffer, bits: number): Buffer {
  checkBits(bits, 'KDFe');
  const name = hashName(hashAlg);
  const lab = labelBytes(label);
  const out: Buffer[] = [];
  let len = 0;
  for (let i = 1; len * 8 < bits; i++) {
    const d = createHash(name).update(u32(i)).update(z).update(lab).update(partyUInfo).update(partyVInfo).digest();
    out.push(d);
    len += d.length;
  }
  return truncateBits(Buffer.concat(out), bits);
}

function aesCfbName(key: Buffer, iv: Buffer): string {
  if (iv.length !== 16) throw new TpmError('UNSUPPORTED', `AES-CFB: IV must be 16 bytes, got ${iv.length}`);
  switch (key.length) {
    case 16:
      return 'aes-128-cfb';
    case 24:
      return 'aes-192-cfb';
    case 32:
      return 'aes-256-cfb';
    default:
      throw new TpmError('UNSUPPORTED', `AES-CFB: key must be 16, 24 or 32 bytes, got ${key.length}`);
  }
}

/** AES-CFB encryption as the TPM does it (Part 1 §11.4.6: full-block CFB128, no padding). */
export function aesCfbEncrypt(key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const c = createCipheriv(aesCfbName(key, iv), key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

/** AES-CFB decryption (the inverse of aesCfbEncrypt). */
export function aesCfbDecrypt(key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const c = createDecipheriv(aesCfbName(key, iv), key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

/** TPM_ECC_CURVE → node:crypto / JWK names and coordinate size. */
export const ECC_CURVES: ReadonlyMap<number, { jwk: string; openssl: string; size: number }> = new Map([
  [TPM_ECC.NIST_P256, { jwk: 'P-256', openssl: 'prime256v1', size: 32 }],
  [TPM_ECC.NIST_P384, { jwk: 'P-384', openssl: 'secp384r1', size: 48 }],
  [TPM_ECC.NIST_P521, { jwk: 'P-521', openssl: 'secp521r1', size: 66 }],
]);

export function eccCurve(curveID: number): { jwk: string; openssl: string; size: number } {
  const c = ECC_CURVES.get(curveID);
  if (!c) throw new TpmError('UNSUPPORTED', `unsupported ECC curve 0x${curveID.toString(16)}`);
  return c;
}

/** Left-pads (or strips leading zeros of) a big-endian integer to exactly `size` bytes. */
export function fixedSize(b: Buffer, size: number, what: string): Buffer {
  let v = b;
  while (v.length > size && v[0] === 0) v = v.subarray(1);
  if (v.length > size) throw new TpmError('VERIFY_KEY', `${what} is ${v.length} bytes, longer than ${size}`);
  return v.length === size ? Buffer.from(v) : Buffer.concat([Buffer.alloc(size - v.length), v]);
}

const b64u = (b: Buffer): string => b.toString('base64url');

/**
 * The public key of an RSA or ECC TPMT_PUBLIC as a node:crypto KeyObject (via JWK).
 * RSA exponent 0 means 65537 (Part 2 §12.2.3.5).
 * @throws TpmError('UNSUPPORTED') for other object types/curves, ('VERIFY_KEY') for an invalid key.
 */
export function publicKeyFromTPMT(p: TPMTPublic): KeyObject {
  // A KeyObject depends on the public numbers only: import each key once (the server verifies a
  // quote of the same enrolled AK at every boot; importing costs more than the verify).
  const id = keyId(p);
  const hit = id ? keyCache.get(id) : undefined;
  if (hit) return hit;
  const k = importPublic(p);
  if (id) {
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(id, k);
  }
  return k;
}

const KEY_CACHE_MAX = 4096;
const keyCache = new Map<string, KeyObject>();
function keyId(p: TPMTPublic): string | undefined {
  if (p.type === TPM_ALG.ECC) return `ecc:${p.parameters.curveID}:${p.unique.x.toString('hex')}:${p.unique.y.toString('hex')}`;
  if (p.type === TPM_ALG.RSA) return `rsa:${p.parameters.exponent}:${p.unique.rsa.toString('hex')}`;
  return undefined;
}

function importPublic(p: TPMTPublic): KeyObject {
  try {
    if (p.type === TPM_ALG.RSA) {
      if (p.unique.rsa.length === 0) throw new TpmError('VERIFY_KEY', 'RSA public key has an empty modulus');
      const e = p.parameters.exponent === 0 ? 65537 : p.parameters.exponent;
      const eb = Buffer.from(u32(e));
      let i = 0;
      while (i < 3 && eb[i] === 0) i++;
      return createPublicKey({ key: { kty: 'RSA', n: b64u(p.unique.rsa), e: b64u(eb.subarray(i)) }, format: 'jwk' });
    }
    if (p.type === TPM_ALG.ECC) {
      const c = eccCurve(p.parameters.curveID);
      const x = fixedSize(p.unique.x, c.size, 'ECC public x');
      const y = fixedSize(p.unique.y, c.size, 'ECC public y');
      return createPublicKey({ key: { kty: 'EC', crv: c.jwk, x: b64u(x), y: b64u(y) }, format: 'jwk' });
    }
  } catch (e) {
    if (e instanceof TpmError) throw e;
    throw new TpmError('VERIFY_KEY', `invalid public key: ${(e as Error).message}`);
  }
  throw new TpmError('UNSUPPORTED', `no public key for object type 0x${(p as { type: number }).type.toString(16)}`);
}

/**
 * The Name of an object, Part 1 §16: nameAlg (UINT16) ‖ H_nameAlg(TPMT_PUBLIC).
 * @throws TpmError('UNSUPPORTED') when nameAlg is not a hash bootkey knows (TPM_ALG_NULL names are handles).
 */
export function objectName(p: TPMTPublic): Buffer {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(p.nameAlg);
  return Buffer.concat([alg, hash(p.nameAlg, marshalPublic(p))]);
}

/** The symmetric key size (bits) of a storage key's TPMT_SYM_DEF_OBJECT; AES only. */
export function symKeyBits(pub: TPMTPublic): number {
  const sym = pub.type === TPM_ALG.RSA || pub.type === TPM_ALG.ECC ? pub.parameters.symmetric : pub.type === TPM_ALG.SYMCIPHER ? pub.parameters.sym : undefined;
  if (!sym || sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB) {
    throw new TpmError('UNSUPPORTED', 'the parent/EK must have an AES-CFB symmetric definition (a storage key)');
  }
  if (sym.keyBits !== 128 && sym.keyBits !== 192 && sym.keyBits !== 256) throw new TpmError('UNSUPPORTED', `AES key size ${sym.keyBits}`);
  return sym.keyBits;
}

/** The seed and its encryption to a key, what TPM2B_ENCRYPTED_SECRET carries (without its size). */
export interface EncryptedSeed {
  seed: Buffer;
  encryptedSecret: Buffer;
}

/**
 * Creates a random seed and encrypts it to `pub` (an RSA or ECC storage key, e.g. an EK):
 * - RSA, Part 1 Annex B.10.3: seed = random(digest size of nameAlg); encryptedSecret =
 *   RSAES-OAEP(pub, hash = nameAlg, label = label ‖ 0x00).
 * - ECC, Part 1 Annex C.6.1: an ephemeral key on pub's curve; Z = x of ECDH(ephemeral, pub);
 *   seed = KDFe(nameAlg, Z, label, ephemeral.x, pub.x, digest bits); encryptedSecret =
 *   TPMS_ECC_POINT {x TPM2B, y TPM2B} of the ephemeral public key.
 * `label` is 'IDENTITY' (MakeCredential), 'DUPLICATE' (Duplicate/Import), 'SECRET' (salted sessions).
 * @throws TpmError('UNSUPPORTED' | 'VERIFY_KEY').
 */
export function encryptSeed(pub: TPMTPublic, label: 'SECRET' | 'IDENTITY' | 'DUPLICATE' | 'INTEGRITY' | string): EncryptedSeed {
  const size = digestSize(pub.nameAlg);
  if (pub.type === TPM_ALG.RSA) {
    const seed = randomBytes(size);
    const key = publicKeyFromTPMT(pub);
    let encryptedSecret: Buffer;
    try {
      encryptedSecret = publicEncrypt({ key, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: hashName(pub.nameAlg), oaepLabel: labelBytes(label) }, seed);
    } catch (e) {
      throw new TpmError('VERIFY_KEY', `RSA-OAEP encryption of the seed failed: ${(e as Error).message}`);
    }
    return { seed, encryptedSecret };
  }
  if (pub.type === TPM_ALG.ECC) return _eccEncryptSeed(pub, label);
  throw new TpmError('UNSUPPORTED', `cannot encrypt a seed to object type 0x${(pub as { type: number }).type.toString(16)}`);
}

/**
 * The ECC branch of encryptSeed (Part 1 Annex C.6.1), with an optional given ephemeral private
 * key (for known-answer tests only; production always uses a fresh random one).
 * @internal
 */
export function _eccEncryptSeed(pub: Extract<TPMTPublic, { type: typeof TPM_ALG.ECC }>, label: string, ephemeralPrivate?: Buffer): EncryptedSeed {
  const c = eccCurve(pub.parameters.curveID);
  const px = fixedSize(pub.unique.x, c.size, 'ECC public x');
  const py = fixedSize(pub.unique.y, c.size, 'ECC public y');
  const ecdh = createECDH(c.openssl);
  let z: Buffer;
  try {
    if (ephemeralPrivate) ecdh.setPrivateKey(ephemeralPrivate);
    else ecdh.generateKeys();
    z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), px, py]));
  } catch (e) {
    throw new TpmError('VERIFY_KEY', `ECDH with the ECC public key failed: ${(e as Error).message}`);
  }
  const eph = ecdh.getPublicKey(); // 04 ‖ x ‖ y
  const ex = eph.subarray(1, 1 + c.size);
  const ey = eph.subarray(1 + c.size);
  const seed = kdfe(pub.nameAlg, z, label, ex, pub.unique.x, digestSize(pub.nameAlg) * 8);
  z.fill(0);
  return { seed, encryptedSecret: marshal((w) => w.tpm2b(ex).tpm2b(ey)) };
}
