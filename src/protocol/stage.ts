/**
 * The staging request's binding (issue 11 §3): the quote of a `stage-finish` is over
 * nonce = SHA-256(random ‖ requestHash), where `random` is the server's (stage-challenge) and
 * requestHash = SHA-256("bootkey stage v1" ‖ 0 ‖ len32(prediction) ‖ prediction ‖ len32(label) ‖ label)
 * (UTF-8, big-endian lengths). The server issued the nonce for the hash announced in
 * stage-begin; it recomputes both from stage-finish, so a quote made for one request cannot
 * stage another (the nonce differs: NONCE).
 * @module
 */
import { createHash } from 'node:crypto';

const DOMAIN = Buffer.from('bootkey stage v1\0', 'utf8');

function lv(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]);
}

export function stageRequestHash(prediction: string, label = ''): Buffer {
  return createHash('sha256').update(DOMAIN).update(lv(prediction)).update(lv(label)).digest();
}

export function stageNonce(random: Uint8Array, requestHash: Uint8Array): Buffer {
  return createHash('sha256').update(random).update(requestHash).digest();
}
