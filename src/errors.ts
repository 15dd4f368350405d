/**
 * The error base class every layer derives from. Each layer has exactly one subclass
 * (TpmError, EventLogError, PolicyError, ...) and a set of stable string codes, so that
 * callers match on `code`, never on message text.
 * @module
 */

export abstract class BootkeyError extends Error {
  /** Stable, machine-readable code, e.g. `TPM_RC`, `TRUNCATED`, `BAD_NONCE`. */
  readonly code: string;
  /** The layer that raised it: `tpm`, `eventlog`, `policy`, `usage`, ... */
  abstract readonly layer: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad command-line usage: the CLI exits with status 2. */
export class UsageError extends BootkeyError {
  readonly layer = 'usage';
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** Bad input given by the user (a file that is not what it should be, ...): exit status 1. */
export class InputError extends BootkeyError {
  readonly layer = 'input';
}
