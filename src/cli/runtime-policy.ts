/**
 * `bootkey runtime-policy generate|import|show` and `bootkey ima check` (issue 12 §2): the IMA
 * runtime policy from the command line. Errors are one `bootkey:` line, exit 1.
 * @module
 */
import { type Command, type Parsed, flag, opt, printJson, readInput, writeOutput } from './command.ts';
import { InputError, UsageError } from '../errors.ts';
import { parseImaList, bankFromFileName } from '../ima/list.ts';
import { bindImaToQuote, unverifiedImaEntries, type TrustedImaEntries } from '../ima/trusted.ts';
import { checkBootAggregate } from '../ima/replay.ts';
import { type RuntimePolicy, checkRuntimePolicy, compileRuntimePolicy, keyFingerprint, loadRuntimePolicy, serializeRuntimePolicy } from '../ima/policy.ts';
import { importKeylimeAllowlist, importKeylimePolicy } from '../ima/keylime.ts';
import { DEFAULT_EXCLUDES, DEFAULT_SKIP, policyFromDir, policyFromEntries } from '../ima/generate.ts';
import { describeKey } from '../ima/sig.ts';
import { pcrValuesFromText, type BankName } from '../pcrs.ts';
import type { ImaList } from '../ima/types.ts';

function list(args: Parsed, name: string): string[] {
  const v = args.values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

function loadList(path: string): ImaList {
  return parseImaList(readInput(path, 'IMA measurement list'), { bank: bankFromFileName(path) });
}

export function loadPolicyFile(path: string): RuntimePolicy {
  return loadRuntimePolicy(readInput(path, 'runtime policy'));
}

function summary(p: RuntimePolicy): Record<string, unknown> {
  const keys = compileRuntimePolicy(p).keys;
  return {
    format: p.format,
    version: p.version,
    meta: p.meta ?? {},
    paths: Object.keys(p.digests).length,
    digests: Object.values(p.digests).reduce((n, l) => n + l.length, 0),
    excludes: p.excludes,
    keyrings: Object.fromEntries(Object.entries(p.keyrings).map(([k, v]) => [k, v.length])),
    ignoredKeyrings: p.ignoredKeyrings,
    imaBuf: Object.fromEntries(Object.entries(p.imaBuf).map(([k, v]) => [k, v.length])),
    verificationKeys: keys.map((k) => ({ keyids: k.keyids, type: k.detail, ...(k.cert ? { subject: k.cert.subject } : {}), spkiSha256: keyFingerprint(k) })),
    violations: p.violations ?? 'ignore',
  };
}

function summaryText(s: Record<string, unknown>): string {
  const keys = s.verificationKeys as { keyids: string[]; type: string; subject?: string; spkiSha256: string }[];
  const lines = [
    `runtime policy (${s.format} v${s.version})${(s.meta as { generator?: string }).generator ? `, made by ${(s.meta as { generator?: string }).generator}` : ''}`,
    `  ${s.paths} paths, ${s.digests} digests`,
    `  excludes: ${(s.excludes as string[]).length ? (s.excludes as string[]).map((x) => JSON.stringify(x)).join(', ') : 'none'}`,
    `  keyrings: ${Object.entries(s.keyrings as Record<string, number>).map(([k, n]) => `${k} (${n})`).join(', ') || 'none'}${(s.ignoredKeyrings as string[]).length ? `; ignored: ${(s.ignoredKeyrings as string[]).join(', ')}` : ''}`,
    `  ima-buf: ${Object.entries(s.imaBuf as Record<string, number>).map(([k, n]) => `${k} (${n})`).join(', ') || 'none'}`,
    `  verification keys: ${keys.length || 'none'}`,
    ...keys.map((k) => `    keyid ${k.keyids.join('/')} ${k.type}${k.subject ? ` ${k.subject}` : ''} (spki sha256 ${k.spkiSha256.slice(0, 16)}…)`),
    `  violations: ${s.violations}`,
  ];
  return lines.join('\n') + '\n';
}

const generateCmd: Command = {
  path: ['runtime-policy', 'generate'],
  summary: 'make an IMA runtime policy from a known-good list or directory tree',
  help: `usage: bootkey runtime-policy generate (--from-log FILE | --from-dir DIR...) [options]

Writes a bootkey runtime policy (JSON) allowing what a known-good machine has:
  --from-log FILE   every file digest, keyring key and ima-buf of an IMA measurement list
                    (binary or ASCII; '-' reads stdin), boot_aggregate included
  --from-dir DIR    hash every regular file under DIR (repeatable; absolute paths on the measured
                    system), e.g. --from-dir /usr --from-dir /etc. Symbolic links are not followed.
  --root R          the measured system's root is R here (an image mounted elsewhere): files are
                    read under R and recorded without it
  --algo A          digest algorithm for --from-dir: sha256 (default), sha1, sha384, sha512
  --skip DIR        a directory not walked (repeatable; replaces the default list:
                    ${DEFAULT_SKIP.join(' ')})
  --exclude RE      a regular expression whose paths always pass (repeatable; Keylime semantics:
                    matched at the START of the path). None by default: an exclude passes anything,
                    executables included
  --default-excludes  add ${DEFAULT_EXCLUDES.join(' ')} to the excludes (what
                    Keylime users often exclude; files run from there then pass unchecked)
  --out FILE        write the policy there (default stdout)
  --json            print a summary as JSON on stdout (with --out)

Exit status: 0 ok, 1 unreadable list or directory, 2 usage.`,
  options: {
    'from-log': { type: 'string' },
    'from-dir': { type: 'string', multiple: true },
    root: { type: 'string' },
    algo: { type: 'string' },
    skip: { type: 'string', multiple: true },
    exclude: { type: 'string', multiple: true },
    'default-excludes': { type: 'boolean' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  },
  run(args: Parsed): number {
    const log = opt(args, 'from-log');
    const dirs = list(args, 'from-dir');
    if (!!log === dirs.length > 0) throw new UsageError('runtime-policy generate: give exactly one of --from-log FILE or --from-dir DIR (see --help)');
    const excludes = [...(flag(args, 'default-excludes') ? DEFAULT_EXCLUDES : []), ...list(args, 'exclude')];
    const out = opt(args, 'out') ?? '-';
    let policy: RuntimePolicy;
    let note: Record<string, unknown>;
    if (log) {
      const l = loadList(log);
      const r = policyFromEntries(l.entries, { excludes, source: log });
      policy = r.policy;
      note = { entries: l.entries.length, skipped: r.skipped };
    } else {
      if (args.values.skip !== undefined && list(args, 'skip').length === 0) throw new UsageError('--skip: give a directory');
      let r;
      try {
        r = policyFromDir(dirs, { excludes, algo: opt(args, 'algo'), root: opt(args, 'root'), skip: args.values.skip ? list(args, 'skip') : undefined, source: dirs.join(' ') });
      } catch (e) {
        if (e instanceof RangeError) throw new UsageError(e.message);
        throw e;
      }
      policy = r.policy;
      note = { files: r.files, bytes: r.bytes, unreadable: r.unreadable };
      for (const u of r.unreadable.slice(0, 20)) process.stderr.write(`bootkey: warning: not read: ${u}\n`);
      if (r.unreadable.length > 20) process.stderr.write(`bootkey: warning: ${r.unreadable.length - 20} more not read\n`);
    }
    writeOutput(out, serializeRuntimePolicy(policy));
    if (out !== '-') {
      const s = { ...summary(policy), ...note };
      if (flag(args, 'json')) printJson(s);
      else process.stdout.write(`wrote ${out}: ${s.paths} paths, ${s.digests} digests${'files' in note ? ` (${note.files} files, ${note.bytes} bytes hashed)` : ` (from ${note.entries} entries)`}\n`);
    }
    return 0;
  },
};

const importCmd: Command = {
  path: ['runtime-policy', 'import'],
  summary: "convert a Keylime runtime policy (or allowlist) to bootkey's format",
  help: `usage: bootkey runtime-policy import FILE [--out F] [--allowlist [--excludelist EFILE]] [--json]

Reads Keylime's runtime policy JSON (digests, excludes, keyrings, ima.ignored_keyrings, ima-buf,
verification-keys, meta) and writes the same policy in bootkey's format, which gives the same
verdict on the same list. Bare hex digests take the algorithm of their length (64 hex = sha256).
  --allowlist        FILE is Keylime's older text allowlist ("<hex digest>  <path>" lines)
  --excludelist F    with --allowlist: Keylime's exclude list (one regular expression a line)
  --out F            write the policy there (default stdout)
  --json             print {"policy": summary, "warnings": [...]} on stdout (with --out)

What does not carry over is printed as a warning (ima.dm_policy: device-mapper entries are then
judged as ima-buf entries). Exit status: 0 ok, 1 not a policy Keylime would load, 2 usage.`,
  options: { out: { type: 'string' }, allowlist: { type: 'boolean' }, excludelist: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [1, 1],
  run(args: Parsed): number {
    const file = args.positionals[0];
    const bytes = readInput(file, 'Keylime policy');
    let r;
    if (flag(args, 'allowlist')) {
      const ex = opt(args, 'excludelist');
      r = importKeylimeAllowlist(bytes.toString('utf8'), ex ? readInput(ex, 'exclude list').toString('utf8') : undefined, file);
    } else {
      if (opt(args, 'excludelist')) throw new UsageError('--excludelist goes with --allowlist (a runtime policy has its own "excludes")');
      let v: unknown;
      try {
        v = JSON.parse(bytes.toString('utf8'));
      } catch (e) {
        throw new InputError('BAD_JSON', `${file}: not JSON (${(e as Error).message}); a text allowlist needs --allowlist`);
      }
      r = importKeylimePolicy(v, file);
    }
    const out = opt(args, 'out') ?? '-';
    writeOutput(out, serializeRuntimePolicy(r.policy));
    for (const w of r.warnings) process.stderr.write(`bootkey: warning: ${w}\n`);
    if (out !== '-') {
      if (flag(args, 'json')) printJson({ policy: summary(r.policy), warnings: r.warnings });
      else process.stdout.write(summaryText(summary(r.policy)));
    }
    return 0;
  },
};

const showCmd: Command = {
  path: ['runtime-policy', 'show'],
  summary: 'summarise a bootkey runtime policy',
  help: `usage: bootkey runtime-policy show POLICY [--json]

Loads POLICY (checking every digest, regular expression and key, as the verifier will) and prints
its counts, excludes, keyrings, ima-buf names and verification keys (keyids, type, subject).
  --json   the same as a JSON object
Exit status: 0 ok, 1 not a valid policy (the message names the field), 2 usage.`,
  options: { json: { type: 'boolean' } },
  positionals: [1, 1],
  run(args: Parsed): number {
    const s = summary(loadPolicyFile(args.positionals[0]));
    if (flag(args, 'json')) printJson(s);
    else process.stdout.write(summaryText(s));
    return 0;
  },
};

function bindWithPcrs(l: ImaList, pcrFile: string): { trusted: TrustedImaEntries; bootAggregates: string[]; notes: string[] } {
  const pcrs = pcrValuesFromText(readInput(pcrFile, 'PCR file').toString('utf8'));
  const quoted = new Map<BankName, Buffer>();
  for (const [bank, values] of pcrs) {
    const v = values.get(10);
    if (v) quoted.set(bank, v);
  }
  if (quoted.size === 0) throw new InputError('NO_PCR10', `${pcrFile}: no PCR 10 value to bind the list to`);
  const b = bindImaToQuote(l.entries, l.bank, { count: 0, pcr10: {} }, quoted);
  const notes = [`bound ${b.trusted.entries.length} entries to PCR 10 (${[...quoted.keys()].join(', ')})${b.unbound ? `; ${b.unbound} later entries are not covered by these PCR values and were not checked` : ''}`];
  const ba = checkBootAggregate(b.trusted.entries[0], pcrs);
  const bootAggregates: string[] = [];
  // Fail closed: PCRs that cannot give the boot_aggregate leave the set empty, so the entry fails.
  if (ba.expected && ba.bank) bootAggregates.push(`${b.trusted.entries[0]?.digestAlgo ?? 'sha1'}:${ba.expected}`);
  else notes.push(`boot_aggregate cannot be computed from these PCR values: ${ba.reason}`);
  return { trusted: b.trusted, bootAggregates, notes };
}

const checkCmd: Command = {
  path: ['ima', 'check'],
  summary: 'judge an IMA measurement list against a runtime policy',
  help: `usage: bootkey ima check POLICY LOG [--pcrs FILE] [--json]

Judges every entry of the IMA measurement list LOG (binary or ASCII; '-' reads stdin) against the
bootkey runtime policy POLICY, as the verifier does, and names every failing entry:
  entry 1432 /usr/bin/x: sha256:ab… not in the policy (allowed: …)
  entry 88 /usr/bin/y: signature by key 1a2b3c4d does not verify, and sha256:… is not in the policy

  --pcrs FILE  PCR values of the boot (bootkey's JSON or tpm2_pcrread YAML): the list is first
               bound to PCR 10 (the entries must replay to it; entries after that point are not
               judged) and boot_aggregate must be the one of PCRs 0-7 (0-9; PCR values that
               lack them fail it). Without --pcrs the
               list is only what the file says: the verdict is printed as UNVERIFIED.
  --json       print {"ok", "verified", "checked", "failures": [{index, path, code, message}],
               "warnings", "passed", "notes"}

Exit status: 0 every entry passes, 1 a failure (or a list that does not bind / parse), 2 usage.`,
  options: { pcrs: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [2, 2],
  run(args: Parsed): number {
    const [policyFile, logFile] = args.positionals;
    const policy = compileRuntimePolicy(loadPolicyFile(policyFile));
    const l = loadList(logFile);
    const pcrFile = opt(args, 'pcrs');
    let trusted: TrustedImaEntries;
    let bootAggregates: string[] | undefined;
    let notes: string[] = [];
    if (pcrFile) ({ trusted, bootAggregates, notes } = bindWithPcrs(l, pcrFile));
    else {
      trusted = unverifiedImaEntries(l.entries);
      notes = ['UNVERIFIED: no --pcrs, the entries are not bound to a TPM PCR 10; boot_aggregate is judged by the policy only'];
    }
    const r = checkRuntimePolicy(policy, trusted, { bootAggregates });
    if (flag(args, 'json')) {
      printJson({ ok: r.ok, verified: r.verified, checked: r.checked, failures: r.failures, moreFailures: r.moreFailures, warnings: r.warnings, passed: r.passed, notes });
    } else {
      const head = r.ok ? 'OK' : 'FAILED';
      const lines = [`${r.verified ? '' : 'UNVERIFIED '}${head}: ${r.checked} entries checked, ${r.failures.length + r.moreFailures} failing (${r.passed.digest} by digest, ${r.passed.signature} by signature, ${r.passed.excluded} excluded, ${r.passed.keys} keys, ${r.passed.buffers} buffers, ${r.passed.ignored} ignored keyrings)`];
      for (const n of notes) lines.push(`note: ${n}`);
      for (const f of r.failures) lines.push(`${f.message} [${f.code}]`);
      if (r.moreFailures) lines.push(`... and ${r.moreFailures} more failures`);
      for (const w of r.warnings) lines.push(`warning: ${w}`);
      process.stdout.write(lines.join('\n') + '\n');
    }
    return r.ok ? 0 : 1;
  },
};

export const runtimePolicyCommands: Command[] = [generateCmd, importCmd, showCmd, checkCmd];
