/**
 * EfiError: the one error class of the EFI-file layer (`layer: 'efi'`): PE/COFF images,
 * Authenticode signatures, UKIs.
 *
 * Every error carries the byte `offset` in the file where the problem was found and says it
 * in its message, e.g. `at byte 280: section 3 raw data (0x1000 bytes at 0x9000) runs past the end of the file`.
 * @module
 */
import { BootkeyError } from '../errors.ts';

/** Stable codes of the EFI layer. */
export type EfiErrorCode =
  | 'TRUNCATED' // a header or table runs past the end of the file
  | 'NOT_PE' // no MZ / PE\0\0 signature
  | 'BAD_HEADER' // an impossible header field (optional-header magic or size, SizeOfHeaders, ...)
  | 'BAD_SECTION' // a section whose raw data lies outside the file, or overlapping the headers
  | 'BAD_CERT_TABLE' // the certificate-table directory entry or a WIN_CERTIFICATE is malformed
  | 'BAD_SIGNATURE' // a PKCS#7 SignedData / SpcIndirectDataContent that cannot be decoded
  | 'BAD_UKI' // a UKI section systemd-stub could not use
  | 'TOO_LARGE'; // a file beyond the size limit

export class EfiError extends BootkeyError {
  readonly layer = 'efi';
  /** Byte offset in the file of the offending field. */
  readonly offset: number;

  constructor(code: EfiErrorCode, message: string, offset: number, options?: { cause?: unknown }) {
    super(code, `at byte ${offset}: ${message}`);
    this.offset = offset;
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}
