/**
 * Tang for the side-by-side benchmark: `tangd` served as its documentation shows, under
 * `socat TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork EXEC:"/usr/libexec/tangd DBDIR"` (keys
 * from /usr/libexec/tangd-keygen), and a client doing clevis's McCallum-Relyea key recovery:
 *
 * - provisioning (clevis encrypt, once, not timed): GET /adv, pick the exchange key S (the
 *   key whose key_ops has "deriveKey"), a client key c: C = c·G is stored (in the JWE header),
 *   K = c·S is the key clevis derives the disk key from (we keep x(K) to check recoveries);
 * - recovery (clevis decrypt, the timed request): an ephemeral e, X = C + e·G, POST
 *   /rec/<kid of S> with X as a JWK; the answer Y = s·X; K = Y − e·S; check x(K).
 *
 * Scalar multiplications use node:crypto's ECDH (P-521); the point additions are done here with
 * BigInt affine arithmetic (node:crypto has no point addition); e·S comes from ECDH as x only,
 * so the unblinding K = Y − e·S is checked as x(Y − K) = x(e·S), K = c·S computed once at
 * provisioning.
 */
import http from 'node:http';
import net from 'node:net';
import { createECDH, createHash } from 'node:crypto';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TANGD = '/usr/libexec/tangd';
export const TANGD_KEYGEN = '/usr/libexec/tangd-keygen';

// ---------- P-521 affine arithmetic ----------
const P = (1n << 521n) - 1n;
const B = BigInt('0x0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00');
const SIZE = 66;
type Pt = { x: bigint; y: bigint } | null;

const mod = (a: bigint): bigint => ((a % P) + P) % P;
function powmod(b: bigint, e: bigint): bigint {
  let r = 1n;
  b = mod(b);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return r;
}
/** Modular inverse by the extended Euclidean algorithm (much faster than a^(p-2) with BigInt). */
function inv(a: bigint): bigint {
  let [r0, r1] = [mod(a), P];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0);
}
function add(p: Pt, q: Pt): Pt {
  if (!p) return q;
  if (!q) return p;
  if (p.x === q.x) {
    if (mod(p.y + q.y) === 0n) return null;
    const l = mod(mod(3n * p.x * p.x - 3n) * inv(2n * p.y));
    const x = mod(l * l - 2n * p.x);
    return { x, y: mod(l * (p.x - x) - p.y) };
  }
  const l = mod((q.y - p.y) * inv(q.x - p.x));
  const x = mod(l * l - p.x - q.x);
  return { x, y: mod(l * (p.x - x) - p.y) };
}
const neg = (p: Pt): Pt => (p ? { x: p.x, y: mod(-p.y) } : null);
/** k·P by double-and-add (provisioning only; not constant time, benchmark keys). */
function mul(k: bigint, p: Pt): Pt {
  let r: Pt = null;
  let q = p;
  while (k > 0n) {
    if (k & 1n) r = add(r, q);
    q = add(q, q);
    k >>= 1n;
  }
  return r;
}
/** Is (x, y) on P-521? */
const onCurve = (p: { x: bigint; y: bigint }): boolean => mod(p.y * p.y) === mod(p.x * p.x * p.x - 3n * p.x + B);
const big = (b: Buffer): bigint => BigInt('0x' + (b.toString('hex') || '0'));
const buf = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(SIZE * 2, '0'), 'hex');
const b64 = (v: bigint): string => buf(v).toString('base64url');
const fromB64 = (s: string): bigint => big(Buffer.from(s, 'base64url'));
function ptFromUncompressed(b: Buffer): { x: bigint; y: bigint } {
  return { x: big(b.subarray(1, 1 + SIZE)), y: big(b.subarray(1 + SIZE)) };
}
const uncompressed = (p: { x: bigint; y: bigint }): Buffer => Buffer.concat([Buffer.from([4]), buf(p.x), buf(p.y)]);

interface Jwk { kty: string; crv: string; x: string; y: string; alg?: string; key_ops?: string[] }

export function thumbprint(k: Jwk): string {
  return createHash('sha256').update(JSON.stringify({ crv: k.crv, kty: k.kty, x: k.x, y: k.y })).digest('base64url');
}

/** A provisioned Tang client (what clevis stores in the LUKS2 token). */
export interface TangBinding {
  kid: string;
  server: { x: bigint; y: bigint };
  clientPublic: { x: bigint; y: bigint };
  /** K = c·S: what a correct recovery must give. */
  K: { x: bigint; y: bigint };
}

function httpRequest(port: number, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: body ? { 'Content-Type': 'application/jwk+json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' } : { Connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** clevis encrypt's part: GET /adv, pick the deriveKey key, make a client key. */
export async function provision(port: number): Promise<TangBinding> {
  const adv = await httpRequest(port, 'GET', '/adv');
  if (adv.status !== 200) throw new Error(`tang /adv: HTTP ${adv.status}`);
  const jws = JSON.parse(adv.body) as { payload: string };
  const keys = (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { keys: Jwk[] }).keys;
  const ex = keys.find((k) => k.key_ops?.includes('deriveKey'));
  if (!ex) throw new Error('tang /adv: no exchange (deriveKey) key');
  const S = { x: fromB64(ex.x), y: fromB64(ex.y) };
  if (!onCurve(S)) throw new Error('tang /adv: the exchange key is not on P-521');
  const c = createECDH('secp521r1');
  c.generateKeys();
  const K = mul(big(c.getPrivateKey()), S)!;
  if (K.x !== big(c.computeSecret(uncompressed(S)))) throw new Error('P-521 arithmetic disagrees with node:crypto');
  return { kid: thumbprint(ex), server: S, clientPublic: ptFromUncompressed(c.getPublicKey()), K };
}

/** clevis decrypt's part: one McCallum-Relyea recovery, new connection; checks the result. */
export async function recover(port: number, t: TangBinding): Promise<void> {
  const e = createECDH('secp521r1');
  e.generateKeys();
  const E = ptFromUncompressed(e.getPublicKey());
  const X = add(t.clientPublic, E)!;
  const body = JSON.stringify({ kty: 'EC', crv: 'P-521', x: b64(X.x), y: b64(X.y), alg: 'ECMR', key_ops: ['deriveKey'] });
  const r = await httpRequest(port, 'POST', `/rec/${t.kid}`, body);
  if (r.status !== 200) throw Object.assign(new Error(`tang /rec: HTTP ${r.status}`), { code: 'HTTP' });
  const yj = JSON.parse(r.body) as Jwk;
  const Y = { x: fromB64(yj.x), y: fromB64(yj.y) };
  if (!onCurve(Y)) throw Object.assign(new Error('tang /rec: the answer is not on P-521'), { code: 'WRONG_KEY' });
  // Unblinding: K = Y − e·S. node:crypto gives e·S as its x only, so check the equivalent
  // Y − K = ±e·S on x (K is known from provisioning; a wrong s·X fails this).
  const d = add(Y, neg(t.K));
  const esx = big(e.computeSecret(uncompressed(t.server)));
  if (!d || d.x !== esx) throw Object.assign(new Error('tang /rec: the recovered key is wrong'), { code: 'WRONG_KEY' });
}

export interface TangServer {
  port: number;
  proc: ChildProcess;
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

export function tangAvailable(): string | undefined {
  if (!existsSync(TANGD) || !existsSync(TANGD_KEYGEN)) return `${TANGD} not found (apt-get install tang, or BOOTKEY_SETUP_BENCH=1 scripts/setup.sh)`;
  try {
    execFileSync('socat', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'socat not found (apt-get install socat)';
  }
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** Starts tangd under socat on loopback (backlog 511, like Node's default listen backlog). */
export async function startTang(): Promise<TangServer> {
  const dir = mkdtempSync(join(tmpdir(), 'bootkey-tang-'));
  execFileSync(TANGD_KEYGEN, [dir], { stdio: 'ignore' });
  if (readdirSync(dir).filter((f) => f.endsWith('.jwk')).length < 2) throw new Error('tangd-keygen made no keys');
  const port = await freePort();
  const proc = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=511`, `EXEC:"${TANGD} ${dir}"`], { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr!.on('data', () => undefined);
  for (let i = 0; i < 100; i++) {
    try {
      await httpRequest(port, 'GET', '/adv');
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    port, proc, pid: proc.pid!, dir,
    async stop() {
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await done;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

