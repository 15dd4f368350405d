/**
 * The bootkey LUKS2 token: what the initrd client needs to unlock, stored in the LUKS2 header.
 *
 * ```json
 * {"type": "bootkey", "keyslots": ["1"], "servers": ["https://host:8443"], "ca": "<PEM>",
 *  "machine": "<id>", "ek": "<base64 TPM2B_PUBLIC>", "share": "<base64 32-byte disk share>",
 *  "ek_alg": "rsa", "ak_alg": "ecc", "ak_template": "v2", "released_pcr": 15}
 * ```
 *
 * `ak_template` names the AK template the machine was enrolled with (src/tpm/templates.ts):
 * "v2" has noDA; tokens written before it existed have no `ak_template` and mean "v1".
 *
 * The header is not secret: an attacker with the disk has the disk share but not the
 * server's share. The EK public is PINNED here: every session that carries a secret from the
 * TPM is salted to it, never to an EK read back from the TPM at boot.
 * @module
 */
import { BootkeyError } from '../errors.ts';
import { unmarshalPublic2B, type TPMTPublic } from '../tpm/structures.ts';
import type { Luks2Metadata, Luks2Token } from '../luks/cryptsetup.ts';
import { SHARE_SIZE } from './key.ts';
import type { AKTemplateVersion } from '../tpm/templates.ts';

export const TOKEN_TYPE = 'bootkey';

export interface BootkeyToken extends Luks2Token {
  type: 'bootkey';
  keyslots: string[];
  servers: string[];
  ca: string;
  machine: string;
  ek: string;
  share: string;
  ek_alg: 'rsa' | 'ecc';
  ak_alg: 'rsa' | 'ecc';
  /** Absent in tokens written before AK template v2: read it with {@link tokenAKTemplate}. */
  ak_template?: AKTemplateVersion;
  released_pcr: number;
}

export class TokenError extends BootkeyError {
  readonly layer = 'token';
}

function need(cond: unknown, what: string): asserts cond {
  if (!cond) throw new TokenError('BAD_TOKEN', `bootkey token: ${what}`);
}

/** Checks a token read from a header. @throws TokenError('BAD_TOKEN') naming the field. */
export function validateToken(t: unknown): BootkeyToken {
  need(typeof t === 'object' && t !== null && !Array.isArray(t), 'not a JSON object');
  const o = t as Record<string, unknown>;
  need(o.type === TOKEN_TYPE, `type is ${JSON.stringify(o.type)}, not "bootkey"`);
  need(Array.isArray(o.keyslots) && o.keyslots.length >= 1 && o.keyslots.every((k) => typeof k === 'string' && /^\d{1,2}$/.test(k)), 'keyslots must be ["N", ...]');
  need(Array.isArray(o.servers) && o.servers.length >= 1 && o.servers.length <= 16 && o.servers.every((s) => typeof s === 'string' && /^https:\/\/[^/\s]+$/.test(s)), 'servers must be ["https://HOST:PORT", ...]');
  need(typeof o.ca === 'string' && o.ca.includes('-----BEGIN CERTIFICATE-----'), 'ca must be a PEM certificate');
  need(typeof o.machine === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(o.machine), 'machine must be an id');
  need(typeof o.ek === 'string' && o.ek.length > 0, 'ek missing');
  try {
    unmarshalPublic2B(Buffer.from(o.ek, 'base64'));
  } catch (e) {
    throw new TokenError('BAD_TOKEN', `bootkey token: ek is not a TPM2B_PUBLIC (${(e as Error).message})`);
  }
  need(typeof o.share === 'string' && Buffer.from(o.share, 'base64').length === SHARE_SIZE, `share must be ${SHARE_SIZE} bytes in base64`);
  need(o.ek_alg === 'rsa' || o.ek_alg === 'ecc', 'ek_alg must be rsa or ecc');
  need(o.ak_alg === 'rsa' || o.ak_alg === 'ecc', 'ak_alg must be rsa or ecc');
  need(o.ak_template === undefined || o.ak_template === 'v1' || o.ak_template === 'v2', 'ak_template must be "v1" or "v2"');
  need(typeof o.released_pcr === 'number' && Number.isInteger(o.released_pcr) && o.released_pcr >= 0 && o.released_pcr <= 23, 'released_pcr must be 0..23');
  return o as BootkeyToken;
}

/** The pinned EK public of a token. */
export function tokenEK(t: BootkeyToken): TPMTPublic {
  return unmarshalPublic2B(Buffer.from(t.ek, 'base64'));
}

/** The AK template the token's machine was enrolled with ("v1" when the token predates the field). */
export function tokenAKTemplate(t: BootkeyToken): AKTemplateVersion {
  return t.ak_template ?? 'v1';
}

/** The disk share of a token. */
export function tokenShare(t: BootkeyToken): Buffer {
  return Buffer.from(t.share, 'base64');
}

/** The bootkey tokens of a header, by id (only ids whose type is "bootkey"). */
export function findTokens(m: Luks2Metadata): { id: number; token: BootkeyToken }[] {
  const out: { id: number; token: BootkeyToken }[] = [];
  for (const [id, t] of Object.entries(m.tokens)) {
    if (t && t.type === TOKEN_TYPE) out.push({ id: Number(id), token: validateToken(t) });
  }
  return out.sort((a, b) => a.id - b.id);
}
