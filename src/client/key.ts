/**
 * The LUKS key: passphrase = base64(HKDF-SHA256(ikm = serverShare ‖ diskShare,
 * salt = utf8(machine id), info = "bootkey luks key v1", L = 32)) — RFC 5869.
 *
 * Text (base64) so that systemd's ask-password protocol can carry it. Both 32-byte shares are
 * needed: the disk (its bootkey token) holds only the disk share, the server's database only
 * the server share, and the server releases its share only to the enrolled TPM in a good boot.
 * The result lives in a Buffer (never a JS string) so the caller can zero it after use.
 * @module
 */
import { hkdfSync } from 'node:crypto';
import { BootkeyError } from '../errors.ts';

export const KEY_INFO = 'bootkey luks key v1';
export const SHARE_SIZE = 32;

export class KeyError extends BootkeyError {
  readonly layer = 'key';
}

/**
 * The LUKS passphrase as base64 text bytes (44 ASCII bytes).
 * @throws KeyError('BAD_SHARE') for a share that is not 32 bytes, ('BAD_MACHINE') for an empty machine id.
 */
export function deriveLuksKey(serverShare: Uint8Array, diskShare: Uint8Array, machineId: string): Buffer {
  if (serverShare.length !== SHARE_SIZE) throw new KeyError('BAD_SHARE', `the server share has ${serverShare.length} bytes, expected ${SHARE_SIZE}`);
  if (diskShare.length !== SHARE_SIZE) throw new KeyError('BAD_SHARE', `the disk share has ${diskShare.length} bytes, expected ${SHARE_SIZE}`);
  if (!machineId) throw new KeyError('BAD_MACHINE', 'the machine id is empty');
  const ikm = Buffer.concat([serverShare, diskShare]);
  const okm = Buffer.from(hkdfSync('sha256', ikm, Buffer.from(machineId, 'utf8'), Buffer.from(KEY_INFO, 'utf8'), 32));
  const text = Buffer.from(okm.toString('base64'), 'ascii');
  ikm.fill(0);
  okm.fill(0);
  return text;
}
