/**
 * ImaParseError: the one error class of the IMA list parser (`layer: 'ima'`). Every message says
 * where: "at byte N" (binary list) or "line N" (ASCII list), and the entry index when known.
 * @module
 */
import { BootkeyError } from '../errors.ts';

/** Stable codes of the IMA list parser. */
export type ImaParseErrorCode =
  | 'EMPTY' // no entry at all
  | 'TRUNCATED' // the input ends inside an entry
  | 'BAD_PCR' // a PCR index above 23
  | 'BAD_TEMPLATE_NAME' // template name empty, too long or not printable
  | 'BAD_LENGTH' // a length field that runs past its entry or over a bound
  | 'BAD_FIELD' // a template field that does not decode (d-ng without "algo:" NUL, ...)
  | 'BAD_LINE' // an ASCII line that is not "PCR HASH TEMPLATE FIELDS..."
  | 'BAD_SIZE' // the template-digest size cannot be told (binary list without --bank)
  | 'TOO_MANY'; // more entries than maxEntries

export class ImaParseError extends BootkeyError {
  readonly layer = 'ima';
  /** Byte offset (binary) or 1-based line (ASCII) of the entry at fault. */
  readonly offset: number;
  constructor(code: ImaParseErrorCode, message: string, where: { byte?: number; line?: number; entry?: number }) {
    const at = where.line !== undefined ? `line ${where.line}` : `at byte ${where.byte ?? 0}`;
    super(code, `IMA list: ${where.entry === undefined ? '' : `entry ${where.entry} `}${at}: ${message}`);
    this.offset = where.line ?? where.byte ?? 0;
  }
}
