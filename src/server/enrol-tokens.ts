/**
 * Enrolment tokens: what an enrolling host presents instead of the admin token. A token string
 * is `bkenrol.<id>.<secret>` where id is "t-" + 16 hex digits (public, used to find the row) and
 * secret is 32 random bytes in base64url. The store keeps SHA-256 of the whole string only (the
 * secret has 256 bits, so a slow hash adds nothing); the server compares digests in constant
 * time. Scope: enroll-begin/-finish/-commit/-abort only; every admin operation refuses it
 * (TOKEN_SCOPE). Limits: a number of uses (one per enroll-begin) and an expiry; `admin token
 * revoke` ends it at once.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { sha256 } from './secrets.ts';

export const ENROL_TOKEN_PREFIX = 'bkenrol';
const TOKEN_RE = /^bkenrol\.(t-[0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
export const DEFAULT_TOKEN_USES = 1;
export const DEFAULT_TOKEN_TTL_S = 24 * 3600;
export const MAX_TOKEN_TTL_S = 366 * 86400;

export interface NewEnrolToken {
  id: string;
  /** The secret string, shown once. */
  token: string;
  hash: Buffer;
}

export function newEnrolToken(): NewEnrolToken {
  const id = 't-' + randomBytes(8).toString('hex');
  const token = `${ENROL_TOKEN_PREFIX}.${id}.${randomBytes(32).toString('base64url')}`;
  return { id, token, hash: enrolTokenHash(token) };
}

/** The token's id, or undefined when the string is not an enrolment token. */
export function enrolTokenId(s: string): string | undefined {
  return TOKEN_RE.exec(s)?.[1];
}

export function enrolTokenHash(s: string): Buffer {
  return sha256('bootkey enrolment token v1\0', s);
}

/** "24h", "30m", "7d", "90s" or plain seconds → seconds. @throws Error with the reason */
export function parseDuration(s: string): number {
  const m = /^(\d{1,9})([smhd]?)$/.exec(s.trim());
  if (!m) throw new Error(`"${s}" is not a duration (e.g. 90s, 30m, 24h, 7d)`);
  const n = Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as const)[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  if (n < 60 || n > MAX_TOKEN_TTL_S) throw new Error(`"${s}" must be between 1 minute and ${MAX_TOKEN_TTL_S / 86400} days`);
  return n;
}
