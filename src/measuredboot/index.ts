/** The public API of the measured-boot layer. @module */
export { parseEventLog, MAX_EVENT_SIZE } from './eventlog.ts';
export { replay } from './replay.ts';
export { EventLogError } from './errors.ts';
export type { EventLogErrorCode } from './errors.ts';
export type * from './types.ts';
