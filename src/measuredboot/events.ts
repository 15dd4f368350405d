/**
 * Decoding of event data, per TCG PC Client Platform Firmware Profile (PFP) 1.05 §10.4
 * ("Event Descriptions") and §10.2.x (UEFI structures). Pure; bounded; a decode failure
 * throws EventLogError, which the parser turns into `{kind: 'raw'}` plus a warning.
 * @module
 */
import { Reader } from './reader.ts';
import { devicePathToText } from './devicepath.ts';
import { GUIDS, TABLE_NAMES, ascii, guidToString, looksAscii, looksUcs2, parseSignatureLists, readGuid, ucs2, x509Subject } from './efi.ts';
import * as EV from './eventtypes.ts';
import { BANK_NAMES, type BankName } from '../pcrs.ts';
import type { DecodedEvent, SpecIdInfo } from './types.ts';

/**
 * Linux EFI stub tagged-event ids (drivers/firmware/efi/libstub/efistub.h: INITRD_EVENT_TAG_ID,
 * LOAD_OPTIONS_EVENT_TAG_ID; systemd-stub uses the same). The digest is of the initrd / the
 * load options, the tagged data only names them ("Linux initrd", "LOADED_IMAGE::LoadOptions").
 */
export const EVENT_TAGS: Record<number, string> = {
  0x8f3b22ec: 'LINUX_EFISTUB_INITRD',
  0x8f3b22ed: 'LINUX_EFISTUB_LOAD_OPTIONS',
};

const ALG_NAMES = new Map<number, BankName>(BANK_NAMES.map((n) => [EV.TPM_ALG[n], n]));

/** TCG_EfiSpecIdEvent — PFP §10.4.5.1 (Spec ID Event03). */
export function decodeSpecId03(data: Buffer, base: number): SpecIdInfo {
  const r = new Reader(data, base);
  r.skip(16, 'Signature');
  const platformClass = r.u32('platformClass');
  const minor = r.u8('specVersionMinor');
  const major = r.u8('specVersionMajor');
  const errata = r.u8('specErrata');
  const uintnSize = r.u8('uintnSize');
  const nAlgAt = r.pos;
  const n = r.u32('numberOfAlgorithms');
  if (n === 0 || n * 4 > r.remaining) r.fail('BAD_HEADER', `Spec ID event declares ${n} algorithms, which do not fit in the event`, nAlgAt);
  const algorithms: SpecIdInfo['algorithms'] = [];
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    const algId = r.u16('algorithmId');
    const digestSize = r.u16('digestSize');
    if (algorithms.some((a) => a.algId === algId)) r.fail('BAD_HEADER', `Spec ID event declares algorithm 0x${algId.toString(16)} twice`, at);
    const name = ALG_NAMES.get(algId);
    const expected = name ? { sha1: 20, sha256: 32, sha384: 48, sha512: 64, sm3_256: 32 }[name] : undefined;
    if (expected !== undefined && digestSize !== expected) r.fail('BAD_HEADER', `Spec ID event gives ${name} a digest size of ${digestSize}, not ${expected}`, at + 2);
    if (digestSize === 0 || digestSize > 512) r.fail('BAD_HEADER', `Spec ID event gives algorithm 0x${algId.toString(16)} an implausible digest size ${digestSize}`, at + 2);
    algorithms.push(name ? { algId, name, digestSize } : { algId, digestSize });
  }
  const vSize = r.u8('vendorInfoSize');
  const vendorInfo = r.bytes(vSize, 'vendorInfo');
  return { platformClass, specVersion: `${major}.${minor}.${errata}`, uintnSize, algorithms, vendorInfo };
}

function noAction(data: Buffer, base: number): DecodedEvent {
  const sig = data.length >= 16 ? ascii(data.subarray(0, 16)) : undefined;
  if (sig === 'Spec ID Event03') return { kind: 'spec-id', specId: decodeSpecId03(data, base) };
  if (sig === 'StartupLocality' && data.length >= 17) return { kind: 'startup-locality', locality: data[data.length - 1] };
  if (sig !== undefined && sig.startsWith('SP800-155 Event')) return { kind: 'sp800-155', text: sp800155(data, base, sig) };
  return sig !== undefined && looksAscii(data.subarray(0, 16)) ? { kind: 'no-action', signature: sig } : { kind: 'no-action' };
}

/** TCG_Sp800_155_PlatformId_Event(2/3) — PFP §10.4.5.3/§10.4.5.4 (best effort). */
function sp800155(data: Buffer, base: number, sig: string): string {
  const r = new Reader(data, base);
  r.skip(16);
  const parts: string[] = [sig];
  try {
    parts.push(`platformManufacturerId=${r.u32()}`);
    parts.push(`referenceManifestGuid=${readGuid(r)}`);
    const str = (name: string) => parts.push(`${name}=${ascii(r.bytes(r.u8(), name))}`);
    str('platformManufacturer');
    str('platformModel');
    str('platformVersion');
    str('firmwareManufacturer');
    parts.push(`firmwareManufacturerId=${r.u32()}`);
    str('firmwareVersion');
    if (sig !== 'SP800-155 Event') {
      parts.push(`rimLocatorType=${r.u32()}`);
      parts.push(`rimLocator=${ascii(r.bytes(r.u32(), 'RIMLocator'))}`);
      parts.push(`platformCertLocatorType=${r.u32()}`);
      parts.push(`platformCertLocator=${ascii(r.bytes(r.u32(), 'PlatformCertLocator'))}`);
    }
  } catch {
    parts.push('(truncated)');
  }
  return parts.join(' ');
}

function separator(data: Buffer): DecodedEvent {
  if (data.length === 4) {
    const v = data.readUInt32LE(0);
    if (v === 0) return { kind: 'separator', value: 'zero' };
    if (v === 0xffffffff) return { kind: 'separator', value: 'error' };
    if (data.toString('latin1') === 'WBCL') return { kind: 'separator', value: 'wbcl' };
  }
  return { kind: 'separator', value: 'other' };
}

/** ASCII or UCS-2 text, or undefined when the data is neither. */
function text(data: Buffer): { text: string; encoding: 'ascii' | 'utf16le' } | undefined {
  if (looksUcs2(data)) return { text: ucs2(data), encoding: 'utf16le' };
  if (looksAscii(data)) return { text: ascii(data), encoding: 'ascii' };
  return undefined;
}

const SIGLIST_VARS = new Set(['PK', 'KEK', 'db', 'dbx', 'dbt', 'dbr', 'MokList', 'MokListX', 'MokListRT', 'MokListXRT', 'PKDefault', 'KEKDefault', 'dbDefault', 'dbxDefault']);
const BOOL_VARS = new Set(['SecureBoot', 'SetupMode', 'AuditMode', 'DeployedMode', 'MokListTrusted', 'MokSBState', 'SbatPolicy']);

/** UEFI_VARIABLE_DATA — PFP §10.2.6 (EV_EFI_VARIABLE_*). */
function variable(type: number, data: Buffer, base: number): DecodedEvent {
  const r = new Reader(data, base);
  const guid = readGuid(r, 'VariableName');
  const nameLen = r.len64('UnicodeNameLength', 2);
  const dataLenAt = r.pos;
  const dataLenBig = r.u64('VariableDataLength');
  const name = r.bytes(nameLen * 2, 'UnicodeName').toString('utf16le').replace(/\0+$/, '');
  let note: string | undefined;
  let vdata: Buffer;
  if (dataLenBig === BigInt(r.remaining)) vdata = r.rest();
  else if (dataLenBig < BigInt(r.remaining)) {
    vdata = r.bytes(Number(dataLenBig));
    note = `${r.remaining} bytes after VariableData ignored`;
  } else {
    // Tolerated: shim's EV_EFI_VARIABLE_AUTHORITY events claim more data than they carry.
    if (type !== EV.EV_EFI_VARIABLE_AUTHORITY) r.fail('BAD_SIZE', `VariableDataLength ${dataLenBig} exceeds the ${r.remaining} bytes left`, dataLenAt);
    note = `VariableDataLength ${dataLenBig} exceeds the ${r.remaining} bytes present (shim quirk); used what is present`;
    vdata = r.rest();
  }
  const out: Extract<DecodedEvent, { kind: 'efi-variable' }> = { kind: 'efi-variable', guid, name, data: vdata };
  if (note) out.note = note;
  const vbase = base + (data.length - r.remaining) - vdata.length;
  if (type === EV.EV_EFI_VARIABLE_AUTHORITY) {
    out.authority = authority(vdata);
  } else if (BOOL_VARS.has(name)) {
    if (vdata.length === 1) out.bool = vdata[0] !== 0;
  } else if (SIGLIST_VARS.has(name)) {
    out.signatureLists = parseSignatureLists(vdata, vbase);
  } else if (name === 'SbatLevel' || name === 'SbatLevelRT') {
    out.text = ascii(vdata);
  } else if (name === 'BootOrder' && guid === GUIDS.EFI_GLOBAL_VARIABLE) {
    const order: number[] = [];
    for (let i = 0; i + 1 < vdata.length; i += 2) order.push(vdata.readUInt16LE(i));
    out.bootOrder = order;
  } else if (/^(Boot|Driver|SysPrep)[0-9A-Fa-f]{4}$/.test(name) && guid === GUIDS.EFI_GLOBAL_VARIABLE) {
    out.loadOption = loadOption(vdata, vbase);
  }
  return out;
}

/** The EFI_SIGNATURE_DATA of an authority event; tolerates a bare DER certificate (shim). */
function authority(d: Buffer): { owner: string; data: Buffer; subject?: string } {
  if (d.length >= 4 && d[0] === 0x30 && d[1] === 0x82 && d.readUInt16BE(2) + 4 === d.length) {
    const subject = x509Subject(d);
    return subject ? { owner: '00000000-0000-0000-0000-000000000000', data: d, subject } : { owner: '00000000-0000-0000-0000-000000000000', data: d };
  }
  if (d.length < 16) return { owner: '00000000-0000-0000-0000-000000000000', data: d };
  const owner = guidToString(d);
  const cert = d.subarray(16);
  const subject = x509Subject(cert);
  return subject ? { owner, data: cert, subject } : { owner, data: cert };
}

/** EFI_LOAD_OPTION — UEFI 2.10 §3.1.3. */
function loadOption(d: Buffer, base: number) {
  const r = new Reader(d, base);
  const attributes = r.u32('Attributes');
  const fplLen = r.u16('FilePathListLength');
  let end = r.pos;
  while (end + 1 < d.length && (d[end] !== 0 || d[end + 1] !== 0)) end += 2;
  const description = d.toString('utf16le', r.pos, end);
  r.skip(end + 2 - r.pos, 'Description');
  const fpl = r.bytes(fplLen, 'FilePathList');
  return { attributes, description, devicePath: devicePathToText(fpl).text, optionalData: r.rest() };
}

/** UEFI_IMAGE_LOAD_EVENT — PFP §10.2.3. */
function imageLoad(data: Buffer, base: number): DecodedEvent {
  const r = new Reader(data, base);
  const imageLocation = r.u64('ImageLocationInMemory');
  const imageLength = r.u64('ImageLengthInMemory');
  const linkTimeAddress = r.u64('ImageLinkTimeAddress');
  const dpLen = r.len64('LengthOfDevicePath');
  const dp = devicePathToText(r.bytes(dpLen, 'DevicePath'));
  const out: DecodedEvent = { kind: 'efi-image', imageLocation, imageLength, linkTimeAddress, devicePath: dp.text };
  if (dp.filePath !== undefined) out.filePath = dp.filePath;
  return out;
}

/** UEFI_PLATFORM_FIRMWARE_BLOB(2) — PFP §10.2.4/§10.2.5. */
function blob(data: Buffer, base: number, v2: boolean): DecodedEvent {
  const r = new Reader(data, base);
  let description: string | undefined;
  if (v2) description = ascii(r.bytes(r.u8('BlobDescriptionSize'), 'BlobDescription'));
  const b = r.u64('BlobBase');
  const length = r.u64('BlobLength');
  return description === undefined ? { kind: 'firmware-blob', base: b, length } : { kind: 'firmware-blob', base: b, length, description };
}

/** UEFI_GPT_DATA — PFP §10.2.8 (header is UEFI 2.10 §5.3.2, entries §5.3.3). */
function gpt(data: Buffer, base: number): DecodedEvent {
  const r = new Reader(data, base);
  const sig = r.bytes(8, 'Signature');
  if (sig.toString('latin1') !== 'EFI PART') r.fail('DECODE', 'GPT header signature is not "EFI PART"', 0);
  r.skip(4 + 4 + 4 + 4 + 8 + 8 + 8 + 8, 'GPT header');
  const diskGuid = readGuid(r, 'DiskGUID');
  r.skip(8 + 4, 'GPT header');
  const entrySizeAt = r.pos;
  const entrySize = r.u32('SizeOfPartitionEntry');
  r.skip(4, 'PartitionEntryArrayCRC32');
  if (entrySize < 128) r.fail('BAD_SIZE', `SizeOfPartitionEntry ${entrySize} is below 128`, entrySizeAt);
  // Some firmware (HP, TPM 1.2 era) logs the 92-byte header padded to 96 before NumberOfPartitions.
  if (r.remaining >= 12 && r.buf.readUInt32LE(r.pos) === 0 && r.buf.readBigUInt64LE(r.pos) * BigInt(entrySize) > BigInt(r.remaining - 8)) {
    const padded = r.buf.readBigUInt64LE(r.pos + 4);
    if (padded * BigInt(entrySize) <= BigInt(r.remaining - 12)) r.skip(4);
  }
  const n = r.len64('NumberOfPartitions', entrySize);
  const partitions = [];
  for (let i = 0; i < n; i++) {
    const e = new Reader(r.bytes(entrySize, 'partition entry'), r.offset - entrySize);
    const typeGuid = readGuid(e);
    const uniqueGuid = readGuid(e);
    const startLba = e.u64();
    const endLba = e.u64();
    e.skip(8);
    partitions.push({ typeGuid, uniqueGuid, startLba, endLba, name: ucs2(e.bytes(72, 'PartitionName')) });
  }
  return { kind: 'gpt', diskGuid, partitions };
}

/** UEFI_HANDOFF_TABLE_POINTERS(2) — PFP §10.2.7. */
function handoff(data: Buffer, base: number, v2: boolean): DecodedEvent {
  const r = new Reader(data, base);
  if (v2) r.skip(r.u8('TableDescriptionSize'), 'TableDescription');
  const n = r.len64('NumberOfTables', 24);
  const tables: { guid: string; name?: string }[] = [];
  for (let i = 0; i < n; i++) {
    const guid = readGuid(r, 'VendorGuid');
    r.skip(8, 'VendorTable');
    const name = Object.hasOwn(TABLE_NAMES, guid) ? TABLE_NAMES[guid] : undefined;
    tables.push(name ? { guid, name } : { guid });
  }
  return { kind: 'handoff-tables', tables };
}

/** TCG_PCClientTaggedEvent — PFP §10.4.2 (EV_EVENT_TAG). */
function eventTag(data: Buffer, base: number): DecodedEvent {
  const r = new Reader(data, base);
  const tagId = r.u32('taggedEventID');
  const size = r.u32('taggedEventDataSize');
  const d = r.bytes(size, 'taggedEventData');
  const out: DecodedEvent = { kind: 'event-tag', tagId, data: d };
  const name = Object.hasOwn(EVENT_TAGS, tagId) ? EVENT_TAGS[tagId] : undefined;
  if (name) out.tagName = name;
  const t = text(d);
  if (t) out.text = t.text;
  return out;
}

/** A string, or (for 16-byte binary data) a UEFI_PLATFORM_FIRMWARE_BLOB — PFP §10.4.1 EV_POST_CODE. */
function postCode(data: Buffer, base: number): DecodedEvent {
  const t = text(data);
  if (t) return { kind: 'string', text: t.text };
  if (data.length === 16) return blob(data, base, false);
  return { kind: 'raw' };
}

/**
 * Decodes one event's data by its type.
 * @throws EventLogError when the data is malformed (the caller falls back to raw)
 */
export function decodeEvent(type: number, data: Buffer, base: number): DecodedEvent {
  switch (type) {
    case EV.EV_NO_ACTION:
      return noAction(data, base);
    case EV.EV_SEPARATOR:
      return separator(data);
    case EV.EV_EFI_VARIABLE_DRIVER_CONFIG:
    case EV.EV_EFI_VARIABLE_BOOT:
    case EV.EV_EFI_VARIABLE_BOOT2:
    case EV.EV_EFI_VARIABLE_AUTHORITY:
      return variable(type, data, base);
    case EV.EV_EFI_BOOT_SERVICES_APPLICATION:
    case EV.EV_EFI_BOOT_SERVICES_DRIVER:
    case EV.EV_EFI_RUNTIME_SERVICES_DRIVER:
      return imageLoad(data, base);
    case EV.EV_EFI_ACTION:
    case EV.EV_ACTION:
    case EV.EV_OMIT_BOOT_DEVICE_EVENTS:
    case EV.EV_EFI_HCRTM_EVENT:
    case EV.EV_S_CRTM_VERSION: {
      const t = text(data);
      return t ? { kind: 'string', text: t.text } : { kind: 'raw' };
    }
    case EV.EV_IPL: {
      const t = text(data);
      return t ? { kind: 'ipl', text: t.text, encoding: t.encoding } : { kind: 'raw' };
    }
    case EV.EV_EVENT_TAG:
      return eventTag(data, base);
    case EV.EV_POST_CODE:
    case EV.EV_S_CRTM_CONTENTS:
      return postCode(data, base);
    case EV.EV_EFI_PLATFORM_FIRMWARE_BLOB:
      return blob(data, base, false);
    case EV.EV_EFI_PLATFORM_FIRMWARE_BLOB2:
      return blob(data, base, true);
    case EV.EV_EFI_GPT_EVENT:
    case EV.EV_EFI_GPT_EVENT2:
      return gpt(data, base);
    case EV.EV_EFI_HANDOFF_TABLES:
      return handoff(data, base, false);
    case EV.EV_EFI_HANDOFF_TABLES2:
      return handoff(data, base, true);
  }
  return { kind: 'raw' };
}
