/**
 * `bootkey eventlog ...` subcommands: `replay` (PCR values a log implies) and `show`
 * (the decoded events). Parsing errors are EventLogErrors: one `bootkey:` line, exit 1.
 * @module
 */
import { type Command, type Parsed, flag, printJson, readInput } from './command.ts';
import { parseEventLog, replay } from '../measuredboot/index.ts';
import type { DecodedEvent, EventLog, TcgEvent } from '../measuredboot/index.ts';
import { BANK_NAMES, pcrValuesToJson } from '../pcrs.ts';

const DEFAULT_LOG = '/sys/kernel/security/tpm0/binary_bios_measurements';

/** Makes a value JSON-friendly: Buffers → hex, bigints → decimal strings, Maps → objects. */
export function jsonable(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), jsonable(x)]));
  if (Array.isArray(v)) return v.map(jsonable);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonable(x)]));
  return v;
}

function loadLog(path: string): EventLog {
  // Display only: events missing a bank's digest are shown with a warning (a verdict refuses them).
  return parseEventLog(readInput(path, 'event log'), { allowMissingDigests: true });
}

const replayCmd: Command = {
  path: ['eventlog', 'replay'],
  summary: 'replay a TCG event log into the PCR values it implies',
  help: `usage: bootkey eventlog replay FILE [--json]

Parses the TCG event log FILE (crypto-agile or legacy SHA-1; '-' reads stdin) and replays
it: prints every PCR the log extends or initialises, in every bank the log has.
EV_NO_ACTION events never extend; a StartupLocality event or a leading H-CRTM event sets
PCR0's starting locality; PCRs 17-22 start all-ones.

  --json   print {"format": ..., "events": N, "pcrs": {"sha256": {"0": "<hex>", ...}, ...}}
           (events counts every event, the header included)

The values are only what the log claims: compare them with quoted PCRs before trusting them.
Exit status: 0 ok, 1 the file is not a valid event log (the message gives the byte offset), 2 usage.`,
  options: { json: { type: 'boolean' } },
  positionals: [1, 1],
  run(args: Parsed): number {
    const log = loadLog(args.positionals[0]);
    const pcrs = pcrValuesToJson(replay(log));
    if (flag(args, 'json')) {
      printJson({ format: log.format, events: log.events.length, pcrs });
      return 0;
    }
    const lines = [`format: ${log.format}, ${log.events.length} events, banks: ${log.banks.join(', ')}`];
    for (const [bank, values] of Object.entries(pcrs)) {
      lines.push('', `${bank}:`);
      for (const [i, hex] of Object.entries(values)) lines.push(`  PCR ${i.padStart(2)}: ${hex}`);
    }
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

/** One-line summary of an event's decoded data. */
export function describe(d: DecodedEvent): string {
  switch (d.kind) {
    case 'spec-id':
      return `Spec ID Event03: spec ${d.specId.specVersion}, platform class ${d.specId.platformClass}, uintn size ${d.specId.uintnSize}, algorithms ${d.specId.algorithms.map((a) => `${a.name ?? `0x${a.algId.toString(16)}`}(${a.digestSize})`).join(' ')}${d.specId.vendorInfo.length ? `, vendor info ${d.specId.vendorInfo.toString('hex')}` : ''}`;
    case 'startup-locality':
      return `StartupLocality: ${d.locality}`;
    case 'sp800-155':
      return d.text;
    case 'no-action':
      return d.signature ?? '';
    case 'separator':
      return `separator (${d.value})`;
    case 'efi-variable': {
      let v = `${d.name} {${d.guid}}`;
      if (d.bool !== undefined) v += ` = ${d.bool ? 1 : 0}`;
      else if (d.signatureLists) v += `: ${d.signatureLists.reduce((n, l) => n + l.signatures.length, 0)} signature(s) in ${d.signatureLists.length} list(s)`;
      else if (d.text !== undefined) v += `: ${JSON.stringify(d.text)}`;
      else if (d.bootOrder) v += `: ${d.bootOrder.map((n) => n.toString(16).toUpperCase().padStart(4, '0')).join(',')}`;
      else if (d.loadOption) v += `: ${JSON.stringify(d.loadOption.description)} ${d.loadOption.devicePath}`;
      else v += ` (${d.data.length} bytes)`;
      if (d.authority?.subject) v += `: ${d.authority.subject}`;
      return v;
    }
    case 'efi-image':
      return `${d.devicePath} (${d.imageLength} bytes at 0x${d.imageLocation.toString(16)})`;
    case 'string':
      return JSON.stringify(d.text);
    case 'ipl':
      return JSON.stringify(d.text) + (d.encoding === 'utf16le' ? ' (UCS-2)' : '');
    case 'event-tag':
      return `tag 0x${d.tagId.toString(16).padStart(8, '0')}${d.tagName ? ` ${d.tagName}` : ''}${d.text !== undefined ? ` ${JSON.stringify(d.text)}` : ` (${d.data.length} bytes)`}`;
    case 'firmware-blob':
      return `${d.description ? `${JSON.stringify(d.description)} ` : ''}base 0x${d.base.toString(16)} length 0x${d.length.toString(16)}`;
    case 'gpt':
      return `disk ${d.diskGuid}, ${d.partitions.length} partition(s)${d.partitions.map((p) => ` [${p.name || p.typeGuid} ${p.startLba}-${p.endLba}]`).join('')}`;
    case 'handoff-tables':
      return d.tables.map((t) => t.name ?? t.guid).join(', ');
    case 'raw':
      return '';
  }
}

function eventText(e: TcgEvent): string {
  const pcr = e.pcr === 0xffffffff ? '-1' : String(e.pcr);
  const head = `#${e.index} PCR ${pcr} ${e.typeName} (${e.data.length} bytes at byte ${e.offset})${e.digestCheck === 'mismatch' ? ' [DIGEST MISMATCH]' : ''}`;
  const lines = [head];
  const what = describe(e.decoded);
  // Text is a fact only when the digest covers it; say so when it does not.
  const note = e.digestCheck === 'mismatch' ? ' [unverified: does not hash to the digest]'
    : e.digestCheck === 'not-applicable' && e.type !== 3 && what ? ' [not covered by the digest: display only]' : '';
  if (what) lines.push(`    ${what}${note}`);
  if (e.decodeError) lines.push(`    (not decoded: ${e.decodeError})`);
  for (const bank of BANK_NAMES) {
    const d = e.digests.get(bank);
    if (d) lines.push(`    ${bank}: ${d.toString('hex')}`);
  }
  for (const o of e.otherDigests ?? []) lines.push(`    alg 0x${o.algId.toString(16).padStart(4, '0')}: ${o.digest.toString('hex')}`);
  return lines.join('\n');
}

const showCmd: Command = {
  path: ['eventlog', 'show'],
  summary: 'list the events of a TCG event log, decoded',
  help: `usage: bootkey eventlog show [FILE] [--json]

Lists the events of the TCG event log FILE (default ${DEFAULT_LOG};
'-' reads stdin), decoded: UEFI variables and signature lists, image loads with device
paths, separators, grub / kernel command lines, tagged events, GPT, firmware blobs, ...
Each event says whether its digest matches its data where the spec ties the two; text the digest
does not cover (device paths, tagged-event descriptions) or does not match is marked as such.
Events missing a declared bank's digest are shown with a MISSING_DIGEST warning (a verdict
refuses such a log).

  --json   print {"format", "banks", "length", "specId", "events": [...], "warnings": [...]}
           (byte strings as lowercase hex, 64-bit numbers as decimal strings)

Nothing shown is trusted: the events mean something only once replayed against quoted PCRs.
Exit status: 0 ok, 1 the file is not a valid event log (the message gives the byte offset), 2 usage.`,
  options: { json: { type: 'boolean' } },
  positionals: [0, 1],
  run(args: Parsed): number {
    const log = loadLog(args.positionals[0] ?? DEFAULT_LOG);
    if (flag(args, 'json')) {
      printJson({
        format: log.format,
        banks: log.banks,
        length: log.length,
        ...(log.specId ? { specId: jsonable(log.specId) } : {}),
        events: log.events.map((e) => ({
          index: e.index,
          offset: e.offset,
          pcr: e.pcr,
          type: e.type,
          typeName: e.typeName,
          digests: jsonable(e.digests),
          ...(e.otherDigests ? { otherDigests: jsonable(e.otherDigests) } : {}),
          digestCheck: e.digestCheck,
          dataSize: e.data.length,
          data: e.data.toString('hex'),
          decoded: jsonable(e.decoded),
          ...(e.decodeError ? { decodeError: e.decodeError } : {}),
        })),
        warnings: log.warnings ?? [],
      });
      return 0;
    }
    const out = [`format: ${log.format}, banks: ${log.banks.join(', ')}, ${log.events.length} events, ${log.length} bytes`, ''];
    for (const e of log.events) out.push(eventText(e));
    for (const w of log.warnings ?? []) out.push(`warning: ${w.message}`);
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  },
};

export const eventlogCommands: Command[] = [replayCmd, showCmd];
