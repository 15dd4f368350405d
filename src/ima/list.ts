/**
 * IMA measurement-list parser (binary and ASCII). SKELETON by the lead: wt-ima-list implements it.
 * @module
 */
import type { BankName } from '../pcrs.ts';
import type { ImaList } from './types.ts';

export interface ParseImaOptions {
  /** The bank of the template hashes when the caller knows it (from the file name). */
  bank?: BankName;
  /** Upper bound on entries (default 1,000,000). */
  maxEntries?: number;
}

/** @throws ImaParseError (code and byte offset / line in the message) */
export function parseImaList(bytes: Uint8Array, opts: ParseImaOptions = {}): ImaList {
  void bytes; void opts;
  throw new Error('parseImaList: not implemented yet');
}
