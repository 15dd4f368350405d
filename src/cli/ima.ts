/**
 * `bootkey ima ...` subcommands: `show` (the decoded entries of an IMA measurement list) and
 * `replay` (the PCR 10 values it implies in every bank; with --pcrs, checked against a machine's
 * PCR values: boot_aggregate and PCR 10, naming the first entry that differs).
 * @module
 */
import { type Command, type Parsed, flag, opt, printJson, readInput, EXIT_OK, EXIT_REFUSED } from './command.ts';
import { InputError, UsageError } from '../errors.ts';
import { BANK_NAMES, isBankName, pcrValuesFromText, type BankName, type PcrValues } from '../pcrs.ts';
import { bankFromFileName, parseImaList } from '../ima/list.ts';
import { ImaParseError } from '../ima/errors.ts';
import { checkBootAggregate, checkTemplateHash, replayIma, type BootAggregateCheck } from '../ima/replay.ts';
import { bindImaToQuote, ImaBindError, where } from '../ima/trusted.ts';
import type { ImaEntry, ImaList } from '../ima/types.ts';

const DEFAULT_LIST = '/sys/kernel/security/ima/binary_runtime_measurements';

function bankArg(args: Parsed): BankName | undefined {
  const b = opt(args, 'bank');
  if (b === undefined) return undefined;
  if (!isBankName(b)) throw new UsageError(`--bank: "${b}" is not one of ${BANK_NAMES.join(', ')}`);
  return b;
}

/**
 * Parses FILE; the bank comes from --bank (strict), else from the file name (a hint: kernels name
 * the per-bank files `..._<bank>`, and the plain files are SHA-1), else from the data.
 */
export function loadImaList(path: string, bank?: BankName): ImaList {
  const bytes = readInput(path, 'IMA measurement list');
  if (bank) return parseImaList(bytes, { bank });
  const named = path === '-' ? undefined : bankFromFileName(path);
  if (named) {
    try {
      return parseImaList(bytes, { bank: named });
    } catch (e) {
      if (!(e instanceof ImaParseError)) throw e;
      // A renamed file: the data decides (and its error is the one reported).
    }
  }
  return parseImaList(bytes);
}

function short(b: Buffer, n = 32): string {
  const h = b.toString('hex');
  return h.length > n ? `${h.slice(0, n)}… (${b.length} bytes)` : h;
}

function entryText(e: ImaEntry, bank: BankName): string {
  const check = checkTemplateHash(e, bank);
  const flags = [e.violation ? ' [VIOLATION]' : '', check === 'mismatch' ? ' [TEMPLATE HASH MISMATCH]' : '', e.opaque ? ' [unknown template: fields not decoded]' : ''].join('');
  const L = [`#${e.index} PCR ${e.pcr} ${e.templateName} ${e.templateHash.toString('hex')} (${where(e)})${flags}`];
  if (e.digest) L.push(`    ${e.digestType ? `${e.digestType}:` : ''}${e.digestAlgo}:${e.digest.toString('hex')} ${JSON.stringify(e.path ?? '')}`);
  if (e.sig?.length) L.push(`    sig ${short(e.sig)}`);
  if (e.buf) L.push(`    buf ${short(e.buf)}`);
  if (e.modsigDigest) L.push(`    d-modsig ${e.modsigDigestAlgo}:${e.modsigDigest.toString('hex')}`);
  if (e.modsig?.length) L.push(`    modsig ${short(e.modsig)}`);
  if (e.opaque) L.push(`    fields: ${JSON.stringify(e.fieldsText)}`);
  else if (!e.digest) L.push(`    template data ${short(e.templateData, 64)}`);
  return L.join('\n');
}

function entryJson(e: ImaEntry, bank: BankName): Record<string, unknown> {
  const o: Record<string, unknown> = {
    index: e.index, offset: e.offset, pcr: e.pcr, templateName: e.templateName, templateHash: e.templateHash.toString('hex'),
    templateHashCheck: checkTemplateHash(e, bank), violation: e.violation,
  };
  if (e.digestAlgo !== undefined) o.digestAlgo = e.digestAlgo;
  if (e.digestType !== undefined) o.digestType = e.digestType;
  if (e.digest) o.digest = e.digest.toString('hex');
  if (e.path !== undefined) o.path = e.path;
  if (e.sig) o.sig = e.sig.toString('hex');
  if (e.buf) o.buf = e.buf.toString('hex');
  if (e.modsigDigestAlgo !== undefined) o.modsigDigestAlgo = e.modsigDigestAlgo;
  if (e.modsigDigest) o.modsigDigest = e.modsigDigest.toString('hex');
  if (e.modsig) o.modsig = e.modsig.toString('hex');
  if (e.opaque) { o.opaque = true; o.fieldsText = e.fieldsText; } else if (!e.digest) o.templateData = e.templateData.toString('hex');
  return o;
}

const BANK_HELP = `  --bank B   the bank of the list's template hashes (sha1, sha256, ...). Default: from the file
             name (binary_runtime_measurements and ..._sha1: sha1, ..._sha256: sha256, ...), else
             from the data (ASCII: the hash length; binary: the digest size that parses the whole
             file)`;

const showCmd: Command = {
  path: ['ima', 'show'],
  summary: 'list the entries of an IMA measurement list, decoded',
  help: `usage: bootkey ima show [FILE] [--json] [--bank B]

Lists the entries of the IMA measurement list FILE (default ${DEFAULT_LIST};
'-' reads stdin): binary (binary_runtime_measurements, binary_runtime_measurements_<bank>) or
ASCII (ascii_runtime_measurements*). Templates ima, ima-ng, ima-sig, ima-buf, ima-modsig (and
ima-ngv2, ima-sigv2) are decoded; other templates are kept raw and counted. Each entry says
whether its recorded template hash is the hash of its template data ([TEMPLATE HASH MISMATCH]
when not) and marks violations (all-zero hash).

${BANK_HELP}
  --json     print {"format", "bank", "count", "unknownTemplates", "violations", "entries": [{"index",
             "offset", "pcr", "templateName", "templateHash", "templateHashCheck", "violation",
             "digestAlgo", "digest", "path", "sig", "buf", "modsigDigestAlgo", "modsigDigest",
             "modsig", ...}]} (byte strings as lowercase hex)

Nothing shown is trusted: entries mean something only once replayed against a quoted PCR 10.
Exit status: 0 ok, 1 the file is not a valid IMA list (the message gives the byte offset or
line), 2 usage.`,
  options: { json: { type: 'boolean' }, bank: { type: 'string' } },
  positionals: [0, 1],
  run(args: Parsed): number {
    const list = loadImaList(args.positionals[0] ?? DEFAULT_LIST, bankArg(args));
    const violations = list.entries.filter((e) => e.violation).length;
    if (flag(args, 'json')) {
      printJson({ format: list.format, bank: list.bank, count: list.entries.length, unknownTemplates: list.unknownTemplates, violations, entries: list.entries.map((e) => entryJson(e, list.bank)) });
      return EXIT_OK;
    }
    const out = [`format: ${list.format}, bank: ${list.bank}, ${list.entries.length} entries, ${violations} violation(s), ${list.unknownTemplates} of unknown templates`, ''];
    for (const e of list.entries) out.push(entryText(e, list.bank));
    process.stdout.write(out.join('\n') + '\n');
    return EXIT_OK;
  },
};

interface PcrCheck {
  ok: boolean;
  bootAggregate: BootAggregateCheck;
  pcr10: Record<string, { replayed?: string; quoted: string; ok: boolean }>;
  /** Entries bound to the PCR 10 values (a prefix of the list). */
  bound: number;
  firstDiffering: { index: number; offset: number; path?: string; reason: string } | null;
  message: string;
}

function checkAgainst(list: ImaList, pcrs: PcrValues, replayed: Map<BankName, Buffer>): PcrCheck {
  const quoted = new Map<BankName, Buffer>();
  for (const [b, m] of pcrs) if (m.has(10)) quoted.set(b, m.get(10)!);
  if (!quoted.size) throw new InputError('PCR_JSON', 'the PCR values have no PCR 10 in any bank');
  const bootAggregate = checkBootAggregate(list.entries[0], pcrs);
  const pcr10: PcrCheck['pcr10'] = {};
  for (const [b, q] of quoted) pcr10[b] = { ...(replayed.has(b) ? { replayed: replayed.get(b)!.toString('hex') } : {}), quoted: q.toString('hex'), ok: !!replayed.get(b)?.equals(q) };
  const e0 = (i: number) => list.entries.find((e) => e.index === i);
  let bound = 0;
  let firstDiffering: PcrCheck['firstDiffering'] = null;
  let message: string;
  try {
    const r = bindImaToQuote(list.entries, list.bank, { count: 0, pcr10: {} }, quoted);
    bound = r.state.count;
    if (r.unbound) {
      const e = e0(r.state.count)!;
      firstDiffering = { index: e.index, offset: e.offset, ...(e.path !== undefined ? { path: e.path } : {}), reason: `PCR 10 covers entries 0-${r.state.count - 1} only: entry ${e.index} and the ${r.unbound - 1} after it are not in it (measured after the PCRs were read, or not this machine's)` };
      message = firstDiffering.reason;
    } else message = `PCR 10 (${[...quoted.keys()].join(', ')}) replays from all ${list.entries.length} entries${r.quirks.length ? ` (with ${r.quirks.join(', ')})` : ''}`;
  } catch (err) {
    if (!(err instanceof ImaBindError)) throw err;
    message = err.message;
    if (err.entryIndex !== undefined) {
      const e = e0(err.entryIndex)!;
      firstDiffering = { index: e.index, offset: e.offset, ...(e.path !== undefined ? { path: e.path } : {}), reason: err.message };
    }
  }
  const ok = bootAggregate.ok && firstDiffering === null && bound === list.entries.length;
  return { ok, bootAggregate, pcr10, bound, firstDiffering, message };
}

const replayCmd: Command = {
  path: ['ima', 'replay'],
  summary: 'replay an IMA measurement list into PCR 10 (every bank); check it against PCR values',
  help: `usage: bootkey ima replay [FILE] [--json] [--bank B] [--pcrs PCRFILE]

Replays the IMA measurement list FILE (default ${DEFAULT_LIST}; '-' reads stdin)
into PCR 10, in sha1 and sha256 (and the list's own bank): the list's bank extends the recorded
template hashes, the other banks hashes recomputed from each entry's template data (what kernels
>= 5.8 extend); a violation (all-zero hash) extends all 0xFF in every bank.

  --json          print {"entries": N, "pcrs": {"sha1": {"10": "<hex>"}, "sha256": {"10": "<hex>"}}}
                  (with --pcrs also "check": {"ok", "bootAggregate", "pcr10", "bound",
                  "firstDiffering", "message"})
  --pcrs PCRFILE  the machine's PCR values: tpm2_pcrread's YAML output or bootkey's JSON
                  {"sha256": {"0": "<hex>", ...}}. Checks boot_aggregate (entry 0) against PCRs
                  0-7 (and 8-9 for a non-SHA-1 aggregate) of the bank its digest names, and
                  binds the list to PCR 10 of every bank in the file: each entry's template
                  hash is recomputed from its data, so an entry whose path or digest was changed
                  is named; entries past the point where PCR 10 matches are named too (the
                  first of them). Exit status 1 when either check fails.
${BANK_HELP}

Without --pcrs the values are only what the list claims.
Exit status: 0 ok, 1 the file is not a valid IMA list (the message gives the byte offset or
line) or the check failed, 2 usage.`,
  options: { json: { type: 'boolean' }, bank: { type: 'string' }, pcrs: { type: 'string' } },
  positionals: [0, 1],
  run(args: Parsed): number {
    const list = loadImaList(args.positionals[0] ?? DEFAULT_LIST, bankArg(args));
    const pcrPath = opt(args, 'pcrs');
    const pcrs = pcrPath === undefined ? undefined : pcrValuesFromText(readInput(pcrPath, 'PCR values').toString('utf8'));
    const banks: BankName[] = ['sha1', 'sha256'];
    if (!banks.includes(list.bank)) banks.push(list.bank);
    for (const b of pcrs?.keys() ?? []) if (pcrs!.get(b)!.has(10) && !banks.includes(b)) banks.push(b);
    const r = replayIma(list.entries, list.bank, banks);
    const pcrJson: Record<string, { '10': string }> = {};
    for (const b of BANK_NAMES) if (r.pcr10.has(b)) pcrJson[b] = { '10': r.pcr10.get(b)!.toString('hex') };
    const check = pcrs ? checkAgainst(list, pcrs, r.pcr10) : undefined;
    if (flag(args, 'json')) {
      printJson({ entries: r.entries, pcrs: pcrJson, ...(r.skipped.size ? { skipped: Object.fromEntries(r.skipped) } : {}), ...(check ? { check } : {}) });
    } else {
      const L = [`format: ${list.format}, bank: ${list.bank}, ${r.entries} entries`];
      for (const [b, v] of Object.entries(pcrJson)) L.push(`  ${b.padEnd(7)} PCR 10: ${v['10']}`);
      for (const [b, why] of r.skipped) L.push(`  ${b.padEnd(7)} not replayed: ${why}`);
      if (check) {
        L.push('', `boot_aggregate: ${check.bootAggregate.ok ? 'ok' : 'MISMATCH'}: ${check.bootAggregate.reason}`);
        for (const [b, c] of Object.entries(check.pcr10)) L.push(`PCR 10 ${b}: ${c.ok ? 'ok' : `MISMATCH (replayed ${c.replayed ?? 'n/a'}, PCR value ${c.quoted})`}`);
        L.push(`${check.ok ? 'ok' : 'FAILED'}: ${check.message}`);
        if (check.firstDiffering) L.push(`first differing entry: #${check.firstDiffering.index}${check.firstDiffering.path !== undefined ? ` ${JSON.stringify(check.firstDiffering.path)}` : ''}`);
      }
      process.stdout.write(L.join('\n') + '\n');
    }
    return check && !check.ok ? EXIT_REFUSED : EXIT_OK;
  },
};

export const imaCommands: Command[] = [showCmd, replayCmd];
