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
  let okm: Buffer | undefined;
  try {
    okm = Buffer.from(hkdfSync('sha256', ikm, Buffer.from(machineId, 'utf8'), Buffer.from(KEY_INFO, 'utf8'), 32));
    return base64Bytes(okm);
  } finally {
    ikm.fill(0);
    okm?.fill(0);
  }
}

const B64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'ascii');

/** RFC 4648 §4 base64 (with padding) straight into a Buffer: the key never becomes a JS string, which could not be zeroed. */
export function base64Bytes(b: Uint8Array): Buffer {
  const out = Buffer.alloc(Math.ceil(b.length / 3) * 4);
  let o = 0;
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i] << 16) | ((i + 1 < b.length ? b[i + 1] : 0) << 8) | (i + 2 < b.length ? b[i + 2] : 0);
    out[o++] = B64[(n >>> 18) & 63];
    out[o++] = B64[(n >>> 12) & 63];
    out[o++] = i + 1 < b.length ? B64[(n >>> 6) & 63] : 0x3d;
    out[o++] = i + 2 < b.length ? B64[n & 63] : 0x3d;
  }
  return out;
}
