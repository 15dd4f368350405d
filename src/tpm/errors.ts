/**
 * TpmError: the one error class of the TPM layer. `code` is stable:
 * - `TPM_RC`: the TPM answered an error response code (`rc`, `rcName`, `command`)
 * - `MARSHAL`: malformed/truncated bytes (from the TPM, a file or the network), with offset
 * - `TRANSPORT`: the device or socket failed
 * - `UNSUPPORTED`: an algorithm or structure bootkey does not handle
 * - `VERIFY_*`: software verification failures (quote, AK attributes, credential), e.g.
 *   `VERIFY_SIGNATURE`, `VERIFY_MAGIC`, `VERIFY_TYPE`, `VERIFY_NONCE`, `VERIFY_PCR_DIGEST`,
 *   `VERIFY_AK_ATTRIBUTES`, `VERIFY_HASH`
 * @module
 */
import { BootkeyError } from '../errors.ts';
import { decodeRC, formatRC } from './rc.ts';

export class TpmError extends BootkeyError {
  readonly layer = 'tpm';
  /** The raw response code, for code TPM_RC. */
  readonly rc?: number;
  /** The response code with subject bits cleared (compare with TPM_RC.*). */
  readonly rcBase?: number;
  readonly command?: string;

  constructor(code: string, message: string, extra: { rc?: number; command?: string } = {}) {
    super(code, message);
    if (extra.rc !== undefined) {
      this.rc = extra.rc;
      this.rcBase = decodeRC(extra.rc).base;
    }
    this.command = extra.command;
  }

  static fromRC(command: string, rc: number): TpmError {
    return new TpmError('TPM_RC', `${command}: TPM returned ${formatRC(rc)}`, { rc, command });
  }

  /** True when this is a TPM response code error with that base code (index ignored, as go-tpm's Is). */
  is(rcBase: number): boolean {
    return this.code === 'TPM_RC' && this.rcBase === rcBase;
  }
}
