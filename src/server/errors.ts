/**
 * ServerError: the one error class of the key-release server. Its `code` is a stable string
 * that travels to the client in an `error` message (see docs/SERVER.md for the list), and
 * `failures` lists every failed policy rule for POLICY refusals.
 * @module
 */
import { BootkeyError } from '../errors.ts';

export class ServerError extends BootkeyError {
  readonly layer = 'server';
  readonly failures?: string[];
  constructor(code: string, message: string, failures?: string[]) {
    super(code, message);
    if (failures) this.failures = failures;
  }
}

/**
 * Refusal codes of the attestation pipeline, in the order the checks run, then those of
 * enrolment and of the admin interface. Stable: clients and operators match on them.
 */
export const REFUSAL_CODES = [
  'UNKNOWN_MACHINE', 'REVOKED', 'PENDING', 'AK_MISMATCH', 'SIGNATURE', 'MAGIC', 'TYPE',
  'NONCE', 'NONCE_USED', 'NONCE_EXPIRED', 'PCR_DIGEST', 'SELECTION', 'COUNTERS', 'EVENTLOG',
  'REPLAY', 'ALREADY_RELEASED', 'POLICY',
  // enrolment
  'AUTH', 'TOKEN_SCOPE', 'TOKEN_REVOKED', 'TOKEN_EXPIRED', 'TOKEN_USED_UP', 'EK_REVOKED',
  'BAD_KEY', 'AK_ATTRIBUTES', 'EK_CERT', 'UNKNOWN_ENROLLMENT', 'ENROLLMENT_EXPIRED', 'CREDENTIAL', 'BAD_RELEASED_PCR',
  // boot-time: the LUKS2 token's fields checked against the record (before the per-machine budget)
  'TOKEN_EK', 'TOKEN_RELEASED_PCR',
  // boot-time: the runtime (IMA) attestation gate (runtime.ts), after the quote verified
  'RUNTIME_FAILED', 'RUNTIME_STALE',
  // runtime attestation (runtime-begin / -entries / -report; docs/PROTOCOL.md)
  'RUNTIME_OFF', 'IMA_FROM', 'IMA_LIST', 'IMA_TOO_LARGE', 'IMA_NO_BEGIN',
  // admin
  'PERMISSIVE_POLICY', 'NOT_REVOKED', 'UNKNOWN_TOKEN', 'BAD_RUNTIME_POLICY',
  // transport and service
  'RATE_LIMITED', 'BAD_REQUEST', 'INTERNAL', 'BUSY', 'UNAVAILABLE',
] as const;
