/**
 * The bootkey LUKS2 token: what the initrd client needs to unlock, stored in the LUKS2 header.
 *
 * ```json
 * {"type": "bootkey", "keyslots": ["1"], "servers": ["https://host:8443"], "ca": "<PEM>",
 *  "machine": "<id>", "ek": "<base64 TPM2B_PUBLIC>", "share": "<base64 32-byte disk share>",
 *  "ek_alg": "rsa", "ak_alg": "ecc", "ak_template": "v2", "released_pcr": 15, "sig": "<base64 Ed25519 signature>"}
 * ```
 *
 * `ak_template` names the AK template the machine was enrolled with (src/tpm/templates.ts):
 * "v2" has noDA; tokens written before it existed have no `ak_template` and mean "v1".
 *
 * `sig` is the server's Ed25519 signature (its token-signing key, STATE/token-signing.key) over
 * {@link tokenStatement}: the machine id, the pinned EK's Name and the released PCR. The header
 * is writable by whoever holds the disk, so the client trusts none of these fields on its own:
 * it sends the pinned EK Name and the released PCR to the server with every attest request (the
 * server refuses TOKEN_EK / TOKEN_RELEASED_PCR when they are not the enrolled ones), and before
 * it uses the pinned EK it checks `sig` with the token-signing public key that the server sent
 * in attest-challenge over TLS authenticated by the pinned CA (TOKEN_SIGNATURE). See
 * docs/THREATS.md ("Rewritten LUKS2 header").
 *
 * The header is not secret: an attacker with the disk has the disk share but not the
 * server's share. The EK public is PINNED here: every session that carries a secret from the
 * TPM is salted to it, never to an EK read back from the TPM at boot.
 * @module
 */
import { createPublicKey, verify as verifySig } from 'node:crypto';
import { BootkeyError } from '../errors.ts';
import { unmarshalPublic2B, type TPMTPublic } from '../tpm/structures.ts';
import { objectName } from '../tpm/crypto.ts';
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
  /** base64 Ed25519 signature over tokenStatement(machine, EK Name, released_pcr). */
  sig: string;
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
  need(typeof o.sig === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(o.sig) && Buffer.from(o.sig, 'base64').length === 64, 'sig must be a 64-byte signature in base64 (enrolled by an older bootkey? re-enrol)');
  return o as BootkeyToken;
}

/** What the server signs at enrolment: the fields the initrd trusts from the token (see the module doc). */
export function tokenStatement(machine: string, ekName: Uint8Array, releasedPcr: number): Buffer {
  return Buffer.from(JSON.stringify(['bootkey-token-v1', machine, Buffer.from(ekName).toString('hex'), releasedPcr]), 'utf8');
}

/** The Name of the token's pinned EK. */
export function tokenEkName(t: BootkeyToken): Buffer {
  return objectName(tokenEK(t));
}

/**
 * Checks the token's `sig` with the server's token-signing key (SPKI DER, Ed25519, as sent in
 * attest-challenge). @throws TokenError TOKEN_SIGNATURE
 */
export function verifyTokenSignature(t: BootkeyToken, keySpki: Uint8Array): void {
  let ok = false;
  try {
    const key = createPublicKey({ key: Buffer.from(keySpki), format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType} key`);
    ok = verifySig(null, tokenStatement(t.machine, tokenEkName(t), t.released_pcr), key, Buffer.from(t.sig, 'base64'));
  } catch (e) {
    throw new TokenError('TOKEN_SIGNATURE', `the server's token-signing key is unusable (${(e as Error).message})`);
  }
  if (!ok) throw new TokenError('TOKEN_SIGNATURE', 'the bootkey token (machine, pinned EK, released PCR) is not as the server signed it at enrolment: the LUKS2 header was altered');
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
