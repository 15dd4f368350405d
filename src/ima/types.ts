/**
 * The shapes shared by the IMA room (issue 12): the parser (list.ts), the replay and its binding to
 * a quoted PCR 10 (replay.ts, trusted.ts), the runtime policy (policy.ts) and the agent/verifier.
 *
 * Trust, as for the boot log (src/measuredboot/trusted.ts): a parsed list is attacker text. Only
 * entries whose template hashes replay to the QUOTED PCR 10 (from a verified running state) may
 * shape a verdict, and the runtime policy reads only `TrustedImaEntries`, which only
 * `bindImaToQuote` makes. An entry's fields (path, digest, signature, buffer) are bound because the
 * template hash of the quoted bank is recomputed from the template data during binding (for the
 * list's own bank: the recorded hash must equal H(template data), except the `ima` template's own
 * rule and violations, which bind nothing of the entry's data).
 * @module
 */
import type { BankName } from '../pcrs.ts';

export type ImaTemplateName = 'ima' | 'ima-ng' | 'ima-sig' | 'ima-buf' | 'ima-modsig' | (string & {});

/** One measurement-list entry as parsed: NOT trusted. */
export interface ImaEntry {
  /** 0-based position in the whole list (entry 0 is boot_aggregate). */
  readonly index: number;
  /** Byte offset (binary list) or 1-based line number (ASCII list), for messages. */
  readonly offset: number;
  /** Which kind of list the entry came from (says what `offset` counts). */
  readonly format?: 'binary' | 'ascii';
  readonly pcr: number;
  /** The template hash recorded in the list, in the list's bank (`ImaList.bank`). */
  readonly templateHash: Buffer;
  readonly templateName: ImaTemplateName;
  /** The template data as the kernel hashes it (rebuilt as length-prefixed fields for ASCII). */
  readonly templateData: Buffer;
  /** All-zero recorded template hash: every bank is extended with all 0xFF. */
  readonly violation: boolean;
  /** Decoded fields (absent when the template does not carry them). */
  readonly digestAlgo?: string;      // 'sha1', 'sha256', ... ('sha1' for template `ima`)
  readonly digest?: Buffer;          // d / d-ng
  readonly path?: string;            // n / n-ng (ima-buf: the buffer's name, e.g. '.ima' or 'kexec-cmdline')
  readonly sig?: Buffer;             // ima-sig: the security.ima xattr (may be empty)
  readonly buf?: Buffer;             // ima-buf
  readonly modsigDigestAlgo?: string; // ima-modsig: d-modsig
  readonly modsigDigest?: Buffer;
  readonly modsig?: Buffer;          // ima-modsig: the appended PKCS#7
  /** d-ngv2 (ima-ngv2, ima-sigv2): the digest type before the algorithm ('ima' or 'verity'). */
  readonly digestType?: string;
  /**
   * ASCII line of a template this parser does not know: its template data cannot be rebuilt, so
   * `templateData` is empty and only the recorded hash (list's bank) is known; `fieldsText` keeps
   * the line's fields as they were.
   */
  readonly opaque?: boolean;
  readonly fieldsText?: string;
}

export interface ImaList {
  readonly format: 'binary' | 'ascii';
  /** The bank of the recorded template hashes (sha1 for the classic files, sha256 for ..._sha256). */
  readonly bank: BankName;
  readonly entries: readonly ImaEntry[];
  /** Entries whose template this parser does not decode (kept raw, never fatal). */
  readonly unknownTemplates: number;
}

/** Where a verified chain stands: what the server stores per machine to continue incrementally. */
export interface ImaRunningState {
  /** Entries verified so far (the next expected entry index). */
  readonly count: number;
  /** PCR 10's running value per bank after `count` entries (hex). */
  readonly pcr10: Readonly<Partial<Record<BankName, string>>>;
}
