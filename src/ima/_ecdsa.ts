/**
 * ECDSA verification over a GIVEN digest (SEC 1 v2 §4.1.4), for IMA signatures: the kernel and
 * evmctl sign the file digest itself, and node:crypto can only verify ECDSA over a message it
 * hashes itself. Public data only (no secret), so plain BigInt arithmetic is fine.
 *
 * R = u1·G + u2·Q is computed with OpenSSL's scalar multiplications (node:crypto ECDH: u1·G in
 * full from getPublicKey, x(u2·Q) and x((u2+1)·Q) from computeSecret, y(u2·Q) recovered by a
 * square root and its sign chosen so that u2·Q + Q has the x OpenSSL gave) and one affine
 * addition in BigInt; any degenerate case falls back to the plain BigInt double-and-add (Jacobian
 * coordinates, Shamir's trick), which the tests also use as the oracle.
 * The curve constants are checked by test/ima/policy-sig.test.ts against node:crypto (k·G of
 * createECDH for several k).
 * @module
 */
import { createECDH } from 'node:crypto';

export interface Curve {
  readonly name: string;
  /** OpenSSL's name (node:crypto createECDH). */
  readonly openssl: string;
  readonly p: bigint;
  readonly a: bigint;
  readonly b: bigint;
  readonly gx: bigint;
  readonly gy: bigint;
  readonly n: bigint;
  /** Field element size in bytes. */
  readonly size: number;
}

const P256_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const P384_P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn;
const P521_P = (1n << 521n) - 1n;

/** The curves IMA keys use, by their JWK `crv` names. */
export const CURVES: Readonly<Record<string, Curve>> = {
  'P-256': {
    name: 'P-256', openssl: 'prime256v1', p: P256_P, a: P256_P - 3n,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
    gx: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
    gy: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    size: 32,
  },
  'P-384': {
    name: 'P-384', openssl: 'secp384r1', p: P384_P, a: P384_P - 3n,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
    gx: 0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7n,
    gy: 0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5fn,
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    size: 48,
  },
  'P-521': {
    name: 'P-521', openssl: 'secp521r1', p: P521_P, a: P521_P - 3n,
    b: 0x0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00n,
    gx: 0x00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66n,
    gy: 0x011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650n,
    n: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
    size: 66,
  },
  secp256k1: {
    name: 'secp256k1', openssl: 'secp256k1', p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn, a: 0n, b: 7n,
    gx: 0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
    gy: 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n,
    n: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
    size: 32,
  },
};

/** Jacobian point (X/Z², Y/Z³); Z = 0 is the point at infinity. */
type J = [bigint, bigint, bigint];

function mod(x: bigint, m: bigint): bigint {
  const r = x % m;
  return r < 0n ? r + m : r;
}

/** Modular inverse by the extended Euclidean algorithm (m prime, a ≠ 0 mod m). */
export function inv(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('inv: not invertible');
  return mod(s0, m);
}

function dbl(c: Curve, [x, y, z]: J): J {
  const p = c.p;
  if (z === 0n || y === 0n) return [0n, 1n, 0n];
  const yy = (y * y) % p;
  const s = (4n * x * yy) % p;
  const zz = (z * z) % p;
  const m = (3n * x * x + (c.a === 0n ? 0n : c.a * ((zz * zz) % p))) % p;
  const x3 = mod(m * m - 2n * s, p);
  const y3 = mod(m * (s - x3) - 8n * ((yy * yy) % p), p);
  const z3 = (2n * y * z) % p;
  return [x3, y3, z3];
}

function add(c: Curve, a: J, b: J): J {
  const p = c.p;
  if (a[2] === 0n) return b;
  if (b[2] === 0n) return a;
  const z1z1 = (a[2] * a[2]) % p;
  const z2z2 = (b[2] * b[2]) % p;
  const u1 = (a[0] * z2z2) % p;
  const u2 = (b[0] * z1z1) % p;
  const s1 = (((a[1] * b[2]) % p) * z2z2) % p;
  const s2 = (((b[1] * a[2]) % p) * z1z1) % p;
  const h = mod(u2 - u1, p);
  const r = mod(s2 - s1, p);
  if (h === 0n) return r === 0n ? dbl(c, a) : [0n, 1n, 0n];
  const hh = (h * h) % p;
  const hhh = (hh * h) % p;
  const v = (u1 * hh) % p;
  const x3 = mod(r * r - hhh - 2n * v, p);
  const y3 = mod(r * (v - x3) - s1 * hhh, p);
  const z3 = (((a[2] * b[2]) % p) * h) % p;
  return [x3, y3, z3];
}

function affineX(c: Curve, q: J): bigint | undefined {
  if (q[2] === 0n) return undefined;
  const zi = inv(q[2], c.p);
  return (q[0] * ((zi * zi) % c.p)) % c.p;
}

/** k·P (tests; and u1·G + u2·Q by Shamir's trick in verify). */
export function mulAdd(c: Curve, u1: bigint, p1: readonly [bigint, bigint], u2: bigint, p2: readonly [bigint, bigint]): bigint | undefined {
  const A: J = [p1[0], p1[1], 1n];
  const B: J = [p2[0], p2[1], 1n];
  const AB = add(c, A, B);
  let r: J = [0n, 1n, 0n];
  const bits = Math.max(u1.toString(2).length, u2.toString(2).length);
  for (let i = bits - 1; i >= 0; i--) {
    r = dbl(c, r);
    const b1 = (u1 >> BigInt(i)) & 1n;
    const b2 = (u2 >> BigInt(i)) & 1n;
    if (b1 && b2) r = add(c, r, AB);
    else if (b1) r = add(c, r, A);
    else if (b2) r = add(c, r, B);
  }
  return affineX(c, r);
}

export function onCurve(c: Curve, x: bigint, y: bigint): boolean {
  if (x < 0n || x >= c.p || y < 0n || y >= c.p) return false;
  return mod(y * y - (x * x * x + c.a * x + c.b), c.p) === 0n;
}

function toBig(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b).toString('hex'));
}

/** Decodes a DER ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } strictly; undefined if malformed. */
export function parseDerSig(sig: Uint8Array): [bigint, bigint] | undefined {
  let i = 0;
  const len = (): number | undefined => {
    if (i >= sig.length) return undefined;
    const l = sig[i++];
    if (l < 0x80) return l;
    if (l === 0x81 && i < sig.length && sig[i] >= 0x80) return sig[i++];
    return undefined;
  };
  if (sig[i++] !== 0x30) return undefined;
  const total = len();
  if (total === undefined || i + total !== sig.length) return undefined;
  const ints: bigint[] = [];
  for (let k = 0; k < 2; k++) {
    if (sig[i++] !== 0x02) return undefined;
    const l = len();
    if (l === undefined || l === 0 || i + l > sig.length) return undefined;
    const v = sig.subarray(i, i + l);
    if (v[0] & 0x80) return undefined; // negative
    if (l > 1 && v[0] === 0 && !(v[1] & 0x80)) return undefined; // not minimal
    ints.push(toBig(v));
    i += l;
  }
  return i === sig.length ? [ints[0], ints[1]] : undefined;
}

function modpow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

function fixed(v: bigint, size: number): Buffer {
  return Buffer.from(v.toString(16).padStart(size * 2, '0'), 'hex');
}

/** Affine P + R (P ≠ ±R), or undefined when degenerate. */
function affineAdd(c: Curve, x1: bigint, y1: bigint, x2: bigint, y2: bigint): [bigint, bigint] | undefined {
  if (x1 === x2) return undefined;
  const l = mod((y2 - y1) * inv(x2 - x1, c.p), c.p);
  const x3 = mod(l * l - x1 - x2, c.p);
  return [x3, mod(l * (x1 - x3) - y1, c.p)];
}

/** x(u1·G + u2·Q) with OpenSSL's scalar multiplications; undefined when a case is degenerate. */
export function mulAddNative(c: Curve, u1: bigint, u2: bigint, qx: bigint, qy: bigint): bigint | undefined {
  if (u1 === 0n || u2 === 0n || u2 + 1n >= c.n) return undefined;
  const q = Buffer.concat([Buffer.from([4]), fixed(qx, c.size), fixed(qy, c.size)]);
  const e1 = createECDH(c.openssl);
  e1.setPrivateKey(fixed(u1, c.size));
  const a = e1.getPublicKey();
  const ax = toBig(a.subarray(1, 1 + c.size));
  const ay = toBig(a.subarray(1 + c.size));
  const e2 = createECDH(c.openssl);
  e2.setPrivateKey(fixed(u2, c.size));
  const bx = toBig(e2.computeSecret(q));
  const e3 = createECDH(c.openssl);
  e3.setPrivateKey(fixed(u2 + 1n, c.size));
  const bqx = toBig(e3.computeSecret(q));
  const ysq = mod(bx * bx * bx + c.a * bx + c.b, c.p);
  let by = modpow(ysq, (c.p + 1n) / 4n, c.p); // p ≡ 3 (mod 4) on every curve here
  if ((by * by) % c.p !== ysq) return undefined;
  const plus = affineAdd(c, bx, by, qx, qy);
  if (!plus) return undefined;
  if (plus[0] !== bqx) {
    by = c.p - by;
    const minus = affineAdd(c, bx, by, qx, qy);
    if (!minus || minus[0] !== bqx) return undefined;
  }
  const r = affineAdd(c, ax, ay, bx, by);
  return r ? r[0] : undefined;
}

/**
 * Verifies a DER ECDSA signature over `digest` (already hashed) with public point (qx, qy).
 * False for anything malformed (never throws on attacker bytes).
 */
export function ecdsaVerifyDigest(c: Curve, qx: bigint, qy: bigint, digest: Uint8Array, derSig: Uint8Array, opts: { native?: boolean } = {}): boolean {
  const rs = parseDerSig(derSig);
  if (!rs) return false;
  const [r, s] = rs;
  if (r <= 0n || r >= c.n || s <= 0n || s >= c.n) return false;
  if (!onCurve(c, qx, qy)) return false;
  // bits2int: the leftmost bitlen(n) bits of the digest.
  const nBits = c.n.toString(2).length;
  let e = toBig(digest);
  const dBits = digest.length * 8;
  if (dBits > nBits) e >>= BigInt(dBits - nBits);
  const w = inv(s, c.n);
  const u1 = (e * w) % c.n;
  const u2 = (r * w) % c.n;
  let x: bigint | undefined;
  if (opts.native !== false) {
    try {
      x = mulAddNative(c, u1, u2, qx, qy);
    } catch {
      x = undefined;
    }
  }
  if (x === undefined) x = mulAdd(c, u1, [c.gx, c.gy], u2, [qx, qy]);
  return x !== undefined && x % c.n === r;
}
