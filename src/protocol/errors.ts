/**
 * ProtocolError: the one error class of the wire protocol. Codes are stable and travel to
 * the peer in an `error` message:
 * - `BAD_MESSAGE` malformed CBOR, wrong field type, missing field, unknown type
 * - `TOO_LARGE` a frame or field over its limit
 * - `BAD_VERSION` an unsupported protocol version
 * - `TIMEOUT` the peer was too slow
 * - `CLOSED` the connection ended
 * Refusals of the server (a failed check) use the check's own code, e.g. `NONCE`, `POLICY`;
 * see src/server/ for that list.
 * @module
 */
import { BootkeyError } from '../errors.ts';

export class ProtocolError extends BootkeyError {
  readonly layer = 'protocol';
}
