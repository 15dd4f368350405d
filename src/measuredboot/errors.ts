/**
 * EventLogError: the one error class of the event-log layer (`layer: 'eventlog'`).
 *
 * Every error carries the byte `offset` in the log where the problem was found and says
 * it in its message, e.g. `event 12 at byte 4711: event size 1073741824 exceeds the 16 MiB limit`.
 * @module
 */
import { BootkeyError } from '../errors.ts';

/** Stable codes of the event-log layer. */
export type EventLogErrorCode =
  | 'EMPTY' // no bytes, or only padding
  | 'TRUNCATED' // a field runs past the end of the log
  | 'BAD_HEADER' // not an event log / bad Spec ID event
  | 'TOO_LARGE' // an event size beyond the per-event limit
  | 'BAD_SIZE' // a size field inconsistent with its container
  | 'BAD_PCR' // a PCR index that is neither 0-23 nor 0xFFFFFFFF
  | 'BAD_DIGEST_COUNT' // more digests than the Spec ID event declares
  | 'UNKNOWN_ALG' // a digest whose algorithm the Spec ID event did not declare
  | 'MISSING_DIGEST' // an event (not EV_NO_ACTION) without a digest for a bank the Spec ID event declares
  | 'BAD_SPEC_VERSION' // a Spec ID Event03 whose specVersion is not 2.0
  | 'DUPLICATE_SEPARATOR' // (warning code) a second EV_SEPARATOR in one PCR
  | 'DECODE'; // (warning code) event data that could not be decoded

export class EventLogError extends BootkeyError {
  readonly layer = 'eventlog';
  /** Byte offset in the log of the offending field. */
  readonly offset: number;
  /** Index of the event being read, when the error is inside one. */
  readonly eventIndex?: number;

  constructor(code: EventLogErrorCode, message: string, offset: number, eventIndex?: number) {
    super(code, `${eventIndex === undefined ? '' : `event ${eventIndex} `}at byte ${offset}: ${message}`);
    this.offset = offset;
    this.eventIndex = eventIndex;
  }
}
