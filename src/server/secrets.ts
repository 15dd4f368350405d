/**
 * Secrets at rest and constant-time comparisons.
 *
 * Server shares are encrypted with AES-256-GCM under a 32-byte master key kept apart from the
 * database: `STATE/master.key` (mode 0600) or the environment variable BOOTKEY_MASTER_KEY (64
 * hex digits or base64 of 32 bytes; it wins over the file). The additional authenticated data
 * is the machine id, so a ciphertext copied onto another machine's row does not decrypt.
 * Sealed form: version byte 1 ‖ 12-byte IV ‖ ciphertext ‖ 16-byte tag.
 * @module
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServerError } from './errors.ts';

export const MASTER_KEY_FILE = 'master.key';
export const MASTER_KEY_ENV = 'BOOTKEY_MASTER_KEY';
const VERSION = 1;

/** Constant-time equality of two byte strings (false, without timing leaks of content, on a length mismatch). */
export function ctEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** Constant-time comparison of two secrets of any length: compares their SHA-256 digests. */
export function ctEqualSecret(a: Uint8Array | string, b: Uint8Array | string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

export function sha256(...parts: (Uint8Array | string)[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function randomId(prefix: string): string {
  return prefix + randomBytes(8).toString('hex');
}

/** Parses a master key given as 64 hex digits or base64 of 32 bytes. */
export function parseMasterKey(s: string): Buffer {
  const t = s.trim();
  let k: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) k = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) k = Buffer.from(t, 'base64');
  if (!k || k.length !== 32) throw new ServerError('MASTER_KEY', `${MASTER_KEY_ENV}: expected 32 bytes as 64 hex digits or base64`);
  return k;
}

/** Creates `DIR/master.key` (32 random bytes, mode 0600) unless it exists. */
export function createMasterKeyFile(dir: string): string {
  const p = join(dir, MASTER_KEY_FILE);
  if (!existsSync(p)) writeFileSync(p, randomBytes(32), { mode: 0o600, flag: 'wx' });
  return p;
}

/** The master key: BOOTKEY_MASTER_KEY if set, else `DIR/master.key` (32 raw bytes, or hex/base64 text). */
export function loadMasterKey(dir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const e = env[MASTER_KEY_ENV];
  if (e) return parseMasterKey(e);
  const p = join(dir, MASTER_KEY_FILE);
  let b: Buffer;
  try {
    b = readFileSync(p);
  } catch (err) {
    throw new ServerError('MASTER_KEY', `cannot read the master key ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (run \`bootkey server init\` or set ${MASTER_KEY_ENV})`);
  }
  if ((statSync(p).mode & 0o077) !== 0) throw new ServerError('MASTER_KEY', `${p} is readable by group or others; chmod 600 it`);
  if (b.length === 32) return b;
  return parseMasterKey(b.toString('utf8'));
}

/** AES-256-GCM encryption of secrets stored in the database (see the module doc). */
export class Vault {
  private readonly key: Buffer;
  constructor(key: Buffer) {
    if (key.length !== 32) throw new ServerError('MASTER_KEY', 'the master key must be 32 bytes');
    this.key = Buffer.from(key);
  }

  seal(plain: Buffer, aad: string): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, ct, c.getAuthTag()]);
  }

  /** @throws ServerError('DECRYPT') on a wrong master key, a wrong AAD or tampered bytes. */
  open(sealed: Buffer, aad: string): Buffer {
    if (sealed.length < 1 + 12 + 16 || sealed[0] !== VERSION) throw new ServerError('DECRYPT', `stored secret for ${aad}: unknown format`);
    const iv = sealed.subarray(1, 13);
    const tag = sealed.subarray(sealed.length - 16);
    const d = createDecipheriv('aes-256-gcm', this.key, iv);
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(tag);
    // the plaintext only in the returned Buffer (the caller zeroes it): the parts are zeroed
    const parts: Buffer[] = [];
    try {
      parts.push(d.update(sealed.subarray(13, sealed.length - 16)));
      parts.push(d.final());
      return Buffer.concat(parts);
    } catch {
      throw new ServerError('DECRYPT', `stored secret for ${aad} does not decrypt: wrong master key, or the database was tampered with`);
    } finally {
      for (const p of parts) p.fill(0);
    }
  }
}
