/**
 * The parsed event-log model shared by the parser (eventlog.ts), replay (replay.ts),
 * boot-state extraction (bootstate.ts) and policies (policy.ts).
 *
 * Events are UNTRUSTED until replayed against quoted PCR values: nothing here is
 * verified by itself.
 * @module
 */
import type { BankName } from '../pcrs.ts';

export type LogFormat = 'crypto-agile' | 'sha1-legacy';

export interface SpecIdInfo {
  platformClass: number;
  specVersion: string; // "2.0.0"
  uintnSize: number;
  /** Banks and digest sizes declared by the Spec ID event, in order (unknown algorithms kept by id). */
  algorithms: { algId: number; name?: BankName; digestSize: number }[];
  vendorInfo: Buffer;
}

/** Decoded event data. Parsers may add fields; consumers switch on `kind`. */
export type DecodedEvent =
  | { kind: 'spec-id'; specId: SpecIdInfo }
  | { kind: 'startup-locality'; locality: number }
  | { kind: 'sp800-155'; text: string }
  | { kind: 'no-action'; signature?: string }
  | { kind: 'separator'; value: 'zero' | 'error' | 'wbcl' | 'other' }
  | {
      kind: 'efi-variable';
      /** Vendor GUID in canonical lowercase text form. */
      guid: string;
      /** Variable name, e.g. "SecureBoot", "db", "MokList". */
      name: string;
      data: Buffer;
      /** For SecureBoot/SetupMode/...: the single byte value, when data has length 1. */
      bool?: boolean;
      /** For PK/KEK/db/dbx/MokList/MokListX...: the EFI_SIGNATURE_LISTs. */
      signatureLists?: EfiSignatureList[];
      /** For EV_EFI_VARIABLE_AUTHORITY: the one EFI_SIGNATURE_DATA (owner + data), tolerating shim's malformed entries. */
      authority?: EfiSignature & { subject?: string };
      /** For SbatLevel and other text variables: the data as text. */
      text?: string;
      /** For Boot####: the decoded EFI_LOAD_OPTION. */
      loadOption?: { attributes: number; description: string; devicePath: string; optionalData: Buffer };
      /** For BootOrder: the Boot#### numbers. */
      bootOrder?: number[];
      /** Set when the data was malformed but tolerated (e.g. shim's AUTHORITY entries). */
      note?: string;
    }
  | {
      kind: 'efi-image';
      imageLocation: bigint;
      imageLength: bigint;
      linkTimeAddress: bigint;
      /** The device path rendered as text, like the UEFI shell does. */
      devicePath: string;
      /** The last file path node, e.g. "\EFI\BOOT\BOOTX64.EFI", when there is one. */
      filePath?: string;
    }
  | { kind: 'string'; text: string } // EV_EFI_ACTION, EV_ACTION, EV_S_CRTM_VERSION, EV_OMIT_BOOT_DEVICE_EVENTS, ...
  | { kind: 'ipl'; text: string; encoding: 'ascii' | 'utf16le' } // EV_IPL: grub commands, kernel command lines, systemd-stub
  | { kind: 'event-tag'; tagId: number; tagName?: string; data: Buffer; text?: string }
  | { kind: 'firmware-blob'; base: bigint; length: bigint; description?: string }
  | { kind: 'gpt'; diskGuid: string; partitions: { typeGuid: string; uniqueGuid: string; startLba: bigint; endLba: bigint; name: string }[] }
  | { kind: 'handoff-tables'; tables: { guid: string; name?: string }[] }
  | { kind: 'raw' };

export interface EfiSignature {
  owner: string; // GUID
  data: Buffer;
}

export interface EfiSignatureList {
  /** EFI_CERT_X509_GUID, EFI_CERT_SHA256_GUID, ... as text GUID. */
  type: string;
  typeName?: 'x509' | 'sha256' | 'sha1' | 'sha384' | 'sha512' | 'rsa2048' | string;
  signatures: (EfiSignature & { subject?: string })[];
}

/** How the event's digests relate to its data. */
export type DigestCheck = 'match' | 'mismatch' | 'not-applicable';

export interface TcgEvent {
  /** Position in the log, 0-based; the header (Spec ID) event is 0. */
  index: number;
  /** Byte offset of the event in the log. */
  offset: number;
  /** PCR index; 0xFFFFFFFF for Windows' AIK event (kept, extends nothing). */
  pcr: number;
  type: number;
  /** "EV_EFI_VARIABLE_DRIVER_CONFIG", ... or "EV_UNKNOWN_0x...". */
  typeName: string;
  /** One digest per bank the event carries. */
  digests: Map<BankName, Buffer>;
  data: Buffer;
  decoded: DecodedEvent;
  /** Whether the digests equal the hash of the data, where the spec says they should. */
  digestCheck: DigestCheck;
  /** Digests of algorithms bootkey has no bank name for (kept by TPM_ALG_ID). */
  otherDigests?: { algId: number; digest: Buffer }[];
  /** Why `decoded` fell back to `raw`, when decoding the data failed. */
  decodeError?: string;
}

/** Something odd but tolerated in the log (a decode failure, a duplicate separator, ...). */
export interface EventLogWarning {
  code: string;
  index: number;
  offset: number;
  message: string;
}

export interface EventLog {
  format: LogFormat;
  /** Banks present in the log (from the Spec ID event, or ['sha1'] for legacy logs). */
  banks: BankName[];
  specId?: SpecIdInfo;
  events: TcgEvent[];
  /** Byte length of the log that was consumed (trailing padding excluded). */
  length: number;
  /** Tolerated oddities, in log order. */
  warnings?: EventLogWarning[];
}
