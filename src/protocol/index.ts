/** The wire protocol shared by the bootkey client and the key-release server. @module */
export { ProtocolError } from './errors.ts';
export { MAX_FRAME, frame, Deframer, encodeCbor, decodeCbor } from './codec.ts';
export { PROTOCOL_VERSION, LIMITS, parseMessage, encodeMessage, pcrValuesToWire } from './messages.ts';
export type { Message, MessageType, MessageOf, PcrSelection, ImportBlobWire, RuntimeResultState } from './messages.ts';
export { Connection } from './connection.ts';
