/** `bootkey policy ...` subcommands: generate, add-boot, stage, predict, check, show-state. */
import { type Command, type Parsed, opt, flag, readInput, writeOutput, printJson, EXIT_OK, EXIT_REFUSED } from './command.ts';
import { UsageError } from '../errors.ts';
import { isBankName, pcrValuesFromText, type BankName, type PcrValues } from '../pcrs.ts';
import { parseEventLog } from '../measuredboot/eventlog.ts';
import type { EventLog } from '../measuredboot/types.ts';
import { analyseBoot, type BootState } from '../measuredboot/bootstate.ts';
import { generatePolicy, addBoot, DEFAULT_PCRS, type Policy } from '../measuredboot/policy.ts';
import { parsePolicy } from '../measuredboot/policy-load.ts';
import { bindLogToQuote, unverifiedLog, BindError, type TrustedLog } from '../measuredboot/trusted.ts';
import { evaluateBoot, requiredPcrs } from '../measuredboot/verdict.ts';
import { InputError } from '../errors.ts';
import { stageBoot, parsePredictedBoot, predictedLogBytes, type PredictedBoot } from '../measuredboot/stage.ts';
import { readEfiFile } from './efi.ts';

function readLog(path: string): EventLog {
  return parseEventLog(readInput(path, 'event log'));
}

function readQuoted(path: string | undefined): PcrValues | undefined {
  return path === undefined ? undefined : pcrValuesFromText(readInput(path, 'PCR values').toString('utf8'));
}

/** Keeps only the given PCRs of each bank (what a quote over that selection would cover). */
function restrict(v: PcrValues, keep: (pcr: number) => boolean): PcrValues {
  return new Map([...v].map(([b, m]) => [b, new Map([...m].filter(([p]) => keep(p)))]));
}

/**
 * The log bound to quoted values when --pcrs FILE is given, else taken on its word (unverified).
 * A dump of every PCR (tpm2_pcrread) holds PCRs the firmware log never extends (10: IMA, 16,
 * 23): those without events in the log are left out, as no quote of a boot policy covers them.
 */
function trustedFrom(log: EventLog, quoted: PcrValues | undefined): TrustedLog {
  if (!quoted) return unverifiedLog(log);
  const extended = new Set(log.events.filter((e) => e.type !== 3 && e.pcr <= 23).map((e) => e.pcr));
  quoted = restrict(quoted, (p) => extended.has(p));
  try {
    return bindLogToQuote(log, quoted);
  } catch (e) {
    if (e instanceof BindError) throw new InputError('REPLAY', `the log does not match the PCR values: ${e.message}`);
    throw e;
  }
}

function readPolicy(path: string): Policy {
  return parsePolicy(readInput(path, 'policy').toString('utf8'));
}

function policyText(p: Policy): string {
  return JSON.stringify(p, null, 2) + '\n';
}

function pcrsArg(s: string): number[] {
  const out = s.split(',').map((x) => x.trim()).filter((x) => x !== '').map((x) => {
    if (!/^\d+$/.test(x) || Number(x) > 23) throw new UsageError(`--pcrs: "${x}" is not a PCR index 0-23`);
    return Number(x);
  });
  if (!out.length) throw new UsageError('--pcrs: give at least one PCR, e.g. --pcrs 0,2,4,7');
  return out;
}

function bankArg(s: string | undefined): BankName | undefined {
  if (s === undefined) return undefined;
  if (!isBankName(s)) throw new UsageError(`--bank: unknown bank "${s}" (sha1, sha256, sha384, sha512, sm3_256)`);
  return s;
}

const generate: Command = {
  path: ['policy', 'generate'],
  summary: 'generate a boot policy from a known-good event log',
  help: `usage: bootkey policy generate LOG [-o FILE] [--pcrs 0,2,4,7] [--pcr-values FILE] [--bank sha256] [--allow-any-cmdline] [--allow-any-kernel]

Reads a known-good boot's TCG event log (binary_bios_measurements) and prints a JSON policy
(schema/policy.schema.json) on stdout, or writes it to FILE. The policy records which PCRs it
reads (a quote must cover them all) and their values in this boot (knownGood).

It refuses (exit 1, nothing written) a log that a policy cannot be read from: a PCR it would
read with an event of unexpected type, data that does not hash to its digest, a duplicate
separator (BAD_LOG); a log with no kernel command line, unless --allow-any-cmdline says so
(NO_CMDLINE: such a policy would let the machine boot init=/bin/sh).

  -o, --output FILE     write the policy to FILE instead of stdout
  --pcrs LIST           PCRs to check (default ${DEFAULT_PCRS.join(',')}): 0 firmware, 4 boot chain,
                        7 Secure Boot state/keys/authorities; any other PCR is pinned to its value
  --bank NAME           bank whose digests are pinned (default sha256 when present)
  --pcr-values FILE     the PCR values the TPM reported with this log (tpm2_pcrread YAML or
                        bootkey's JSON): the log must replay to them; only covered PCRs count
  --allow-any-cmdline   do not check the kernel command line (recorded in the policy:
                        options.allowAnyCmdline = true)
  --allow-any-kernel    accept any kernel/UKI image (and ignore the image path in command lines)
`,
  options: {
    output: { type: 'string', short: 'o' },
    pcrs: { type: 'string' },
    'pcr-values': { type: 'string' },
    bank: { type: 'string' },
    'allow-any-cmdline': { type: 'boolean' },
    'allow-any-kernel': { type: 'boolean' },
  },
  positionals: [1, 1],
  run(args: Parsed): number {
    const pcrs = opt(args, 'pcrs');
    const bank = bankArg(opt(args, 'bank'));
    const policy = generatePolicy(trustedFrom(readLog(args.positionals[0]), readQuoted(opt(args, 'pcr-values'))), {
      ...(pcrs !== undefined ? { pcrs: pcrsArg(pcrs) } : {}),
      ...(bank ? { bank } : {}),
      allowAnyCmdline: flag(args, 'allow-any-cmdline'),
      allowAnyKernel: flag(args, 'allow-any-kernel'),
    });
    writeOutput(opt(args, 'output') ?? '-', policyText(policy));
    return EXIT_OK;
  },
};

const addBootCmd: Command = {
  path: ['policy', 'add-boot'],
  summary: 'merge another known-good boot into a policy (in place)',
  help: `usage: bootkey policy add-boot POLICY LOG [--pcr-values FILE] [--allow-secureboot-off]

Adds the boot in LOG to the allowed values of POLICY (a staged shim, kernel or firmware update)
and rewrites POLICY in place. It refuses, changing nothing, when the new boot would relax a rule
silently: Secure Boot off where the policy requires it on, a dbx lacking revocations the policy
requires, a UEFI debugger or DMA protection disabled.

  --pcr-values FILE        the PCR values the TPM reported with LOG (see generate)
  --allow-secureboot-off   accept a boot with Secure Boot off; the policy then no longer requires it
`,
  options: { 'allow-secureboot-off': { type: 'boolean' }, 'pcr-values': { type: 'string' } },
  positionals: [2, 2],
  run(args: Parsed): number {
    const [policyPath, logPath] = args.positionals;
    const merged = addBoot(readPolicy(policyPath), trustedFrom(readLog(logPath), readQuoted(opt(args, 'pcr-values'))), { allowSecureBootOff: flag(args, 'allow-secureboot-off') });
    writeOutput(policyPath, policyText(merged));
    return EXIT_OK;
  },
};

const check: Command = {
  path: ['policy', 'check'],
  summary: 'the server\'s verdict on a boot, offline (exit 0 pass, 1 refused)',
  help: `usage: bootkey policy check POLICY LOG [--pcrs FILE] [--released-pcr N] [--json]

Gives exactly the server's decision on the boot in LOG, with its reasons, through the same code
(measuredboot/verdict.ts): the log parses strictly; the quote covers every PCR the policy reads;
the log replays to the quoted values; only events of quoted PCRs are read; then the policy.
Exit status 0 when it passes; 1 when it is refused (the code and each failed rule on stdout)
or when an input is bad (one "bootkey:" line on stderr).

Without --pcrs the log is UNVERIFIED: it is judged on its own word (every PCR it extends taken
as quoted), and the output says so. An operator who wants to know why the server refused a
machine passes the PCR values the machine quoted.

  --pcrs FILE        the quoted PCR values: tpm2_pcrread's YAML output or bootkey's JSON
                     {"sha256": {"0": "<hex>", ...}}; of those, the PCRs the policy reads
                     count as quoted (the server asks for exactly those); a PCR it reads that
                     the file lacks is refused (SELECTION)
  --released-pcr N   the released PCR (the server's, normally 15): must be in FILE and zero
  --json             print {"pass", "code", "message", "verified", "failures": [{"rule", "pcr",
                     "event", "expected", "actual", "message"}], "warnings", "knownGoodPcrs"}
`,
  options: { json: { type: 'boolean' }, pcrs: { type: 'string' }, 'released-pcr': { type: 'string' } },
  positionals: [2, 2],
  run(args: Parsed): number {
    const [policyPath, logPath] = args.positionals;
    const rel = opt(args, 'released-pcr');
    if (rel !== undefined && (!/^\d+$/.test(rel) || Number(rel) > 23)) throw new UsageError(`--released-pcr: "${rel}" is not a PCR index 0-23`);
    const policy = readPolicy(policyPath);
    const opts = rel !== undefined ? { releasedPcr: Number(rel) } : {};
    let quoted = readQuoted(opt(args, 'pcrs'));
    // The server asks for exactly the PCRs the policy reads (and the released one): a file with
    // more (a whole tpm2_pcrread dump) is cut to that selection.
    if (quoted) {
      const need = new Set(requiredPcrs(policy, opts.releasedPcr));
      quoted = restrict(quoted, (p) => need.has(p));
    }
    const v = evaluateBoot(policy, readInput(logPath, 'event log'), quoted, opts);
    if (flag(args, 'json')) printJson(v);
    else {
      const L: string[] = [];
      if (!v.verified) L.push('UNVERIFIED: no --pcrs given: the log is judged on its own word, not on what a TPM quoted');
      if (v.pass) L.push(`pass: the boot satisfies every rule of the policy${v.knownGoodPcrs.length ? ` (PCR ${v.knownGoodPcrs.join(', ')} equal known-good values)` : ''}`);
      else {
        L.push(`refused: ${v.code}: ${v.message}`);
        for (const f of v.failures) L.push(`  ${f.rule}: ${f.message}`);
      }
      process.stdout.write(L.join('\n') + '\n');
    }
    return v.pass ? EXIT_OK : EXIT_REFUSED;
  },
};

function stateText(st: BootState): string {
  const L: string[] = [];
  const sb = st.secureBoot;
  L.push(`banks: ${st.banks.join(', ')}`);
  L.push(`Secure Boot: ${sb.enabled ? 'on' : 'off'}${sb.event !== undefined ? ` (event ${sb.event}, SecureBoot = ${sb.value || 'empty'})` : ' (no SecureBoot variable measured)'}${st.setupMode ? `, setup mode ${st.setupMode.enabled ? 'ON' : 'off'}` : ''}`);
  for (const k of ['PK', 'KEK', 'db', 'dbx'] as const) {
    const v = st[k];
    if (!v) { L.push(`${k}: not measured`); continue; }
    const subj = v.entries.filter((e) => e.subject).map((e) => e.subject);
    L.push(`${k}: event ${v.event}, ${v.entries.length} entries, sha256 ${v.dataSha256.slice(0, 16)}…${k !== 'dbx' && subj.length ? `: ${subj.join('; ')}` : ''}`);
  }
  for (const a of st.authorities) L.push(`authority: event ${a.event}, ${a.variable}: ${a.subject ?? a.sha256}`);
  const m = st.mok;
  if (m.MokList || m.MokListX || m.MokListTrusted || m.SbatLevel) {
    L.push(`MOK: ${(['MokList', 'MokListX', 'MokListTrusted'] as const).filter((k) => m[k]).map((k) => `${k} (event ${m[k]!.event})`).join(', ')}${m.SbatLevel ? `; SbatLevel ${JSON.stringify(m.SbatLevel.text)} (event ${m.SbatLevel.event})` : ''}`);
  }
  if (!st.verified) L.push('UNVERIFIED: not bound to quoted PCR values (pass --pcrs FILE): this is what the log claims');
  for (const v of st.firmware.crtmVersions) L.push(`firmware version: ${JSON.stringify(v.text)} (event ${v.event}${v.verified ? '' : ', unverified: the text does not hash to the event digest'})`);
  L.push(`firmware events (PCR 0): ${st.firmware.events.length}; drivers/option ROMs (PCR 2): ${st.drivers.length}`);
  for (const a of st.preBootApps) L.push(`app before the boot option: event ${a.event}, ${a.path ?? a.devicePath} (path unverified), ${Object.entries(a.digests).map(([b, d]) => `${b}:${d}`).join(' ')}`);
  for (const a of st.apps) L.push(`app: event ${a.event}, ${a.role}, ${a.path ?? a.devicePath} (path unverified${a.label ? `; labelled ${a.label}` : ''}), ${Object.entries(a.digests).map(([b, d]) => `${b}:${d}`).join(' ')}`);
  for (const c of st.cmdlines) L.push(`cmdline: event ${c.event}, PCR ${c.pcr}, ${c.source}: ${c.text !== undefined ? JSON.stringify(c.text) : `(not logged; sha256 ${c.digests.sha256 ?? '?'})`}`);
  for (const i of st.initrds) L.push(`initrd: event ${i.event}, PCR ${i.pcr}, ${i.description}, ${Object.entries(i.digests).map(([b, d]) => `${b}:${d}`).join(' ')}`);
  if (st.stubSections.length) L.push(`systemd-stub sections (PCR 11): ${st.stubSections.map((s) => s.description).join(', ')}`);
  if (st.pcr12.length) L.push(`PCR 12 events: ${st.pcr12.map((s) => `${s.event} ${JSON.stringify(s.description)}`).join(', ')}`);
  if (st.debugMode.length) L.push(`UEFI Debug Mode: events ${st.debugMode.join(', ')}`);
  if (st.dmaProtectionDisabled.length) L.push(`DMA Protection Disabled: events ${st.dmaProtectionDisabled.join(', ')}`);
  L.push(`ExitBootServices (PCR 5): ${st.exitBootServices ?? (st.pcrs.includes(5) ? 'not logged' : 'PCR 5 not covered')}`);
  L.push(`PCRs read: ${st.pcrs.join(', ')}`);
  for (const w of st.warnings) L.push(`warning: ${w.message}`);
  for (const e of st.issues) L.push(`${st.errors.includes(e) ? 'ERROR' : 'issue'}: ${e.message}`);
  return L.join('\n') + '\n';
}

const showState: Command = {
  path: ['policy', 'show-state'],
  summary: 'print the boot state extracted from an event log',
  help: `usage: bootkey policy show-state LOG [--pcrs FILE] [--json]

Prints what was booted, read PCR by PCR as the policy engine reads it: Secure Boot state and
keys, authorities, MOK, EFI applications with digests, kernel command lines, initrd,
systemd-stub sections, firmware version. Text that the digest does not cover (device paths,
an unmatched firmware version) is marked unverified. Exit status 1 when the log's structure is
not trustworthy (errors are listed); "issue" lines are what a policy reading that PCR refuses.

  --pcrs FILE   bind the log to these quoted PCR values first (tpm2_pcrread YAML or bootkey
                JSON): only the covered PCRs are read; without it the log is unverified
  --json        print the BootState object
`,
  options: { json: { type: 'boolean' }, pcrs: { type: 'string' } },
  positionals: [1, 1],
  run(args: Parsed): number {
    const st = analyseBoot(trustedFrom(readLog(args.positionals[0]), readQuoted(opt(args, 'pcrs'))));
    if (flag(args, 'json')) printJson(st);
    else process.stdout.write(stateText(st));
    return st.errors.length ? EXIT_REFUSED : EXIT_OK;
  },
};

/** The running boot's log, where Linux exposes it. */
export const CURRENT_LOG = '/sys/kernel/security/tpm0/binary_bios_measurements';

export const PART_OPTIONS = {
  uki: { type: 'string' },
  kernel: { type: 'string' },
  initrd: { type: 'string' },
  cmdline: { type: 'string' },
  'kernel-path': { type: 'string' },
  shim: { type: 'string' },
  bootloader: { type: 'string' },
} as const;

const PART_HELP = `  --uki FILE          the new unified kernel image (PCR 4 UKI and kernel events, PCR 11
                      sections, PCR 9 command line and initrd)
  --kernel FILE       the new kernel (GRUB or systemd-boot type #1 entries)
    --initrd FILE     its initrd
    --kernel-path P   GRUB: the kernel's path in grub.cfg, when it changes (e.g. /vmlinuz-6.1.0-57-amd64)
  --cmdline S         the command line exactly as the loader will pass it (systemd-boot: with its
                      initrd=... prefix; GRUB: the arguments after the kernel path; a UKI: a
                      command line the loader passes, overriding .cmdline)
  --shim FILE         the new shim
  --bootloader FILE   the new boot loader (grubx64.efi, systemd-bootx64.efi)`;

/** The predicted boot from LOG and the part options. */
export async function predictFrom(logPath: string, args: Parsed): Promise<PredictedBoot> {
  const file = (k: string) => {
    const v = opt(args, k);
    return v === undefined ? undefined : readEfiFile(v);
  };
  const parts = {
    uki: file('uki'),
    kernel: file('kernel'),
    initrd: opt(args, 'initrd') === undefined ? undefined : readInput(opt(args, 'initrd')!, 'initrd'),
    cmdline: opt(args, 'cmdline'),
    kernelPath: opt(args, 'kernel-path'),
    shim: file('shim'),
    bootloader: file('bootloader'),
  };
  if (!Object.values(parts).some((v) => v !== undefined)) throw new UsageError('give at least one of --uki, --kernel, --initrd, --cmdline, --shim, --bootloader (see --help)');
  // Imported on use: src/efi loads the ASN.1 schemas (see efi show).
  const { predictBoot } = await import('../efi/predict.ts');
  return predictBoot(readLog(logPath), Object.fromEntries(Object.entries(parts).filter(([, v]) => v !== undefined)));
}

function predictedText(p: PredictedBoot, bank: BankName): string {
  const L: string[] = [`predicted boot: ${p.events.length} events, banks ${p.banks.join(', ')}; changed PCRs: ${p.changedPcrs.join(', ') || 'none'}`];
  p.events.forEach((e, i) => {
    if (e.type === 3) return;
    const d = e.digests[bank] ?? Object.values(e.digests)[0] ?? '';
    L.push(`${e.changed ? '*' : ' '} #${i + 1} PCR ${e.pcr} ${e.typeName} ${d}${e.description ? `  ${e.description}` : ''}${e.changed ? `  (${e.changed})` : ''}`);
  });
  L.push(`PCR values (${bank}):`);
  const v = p.pcrs[bank] ?? {};
  for (const pcr of p.changedPcrs) L.push(`  ${String(pcr).padStart(2)} ${v[String(pcr)]}`);
  for (const n of p.notes) L.push(`note: ${n}`);
  return L.join('\n') + '\n';
}

const predictCmd: Command = {
  path: ['policy', 'predict'],
  summary: 'predict the next boot\'s events from the files an update installs',
  help: `usage: bootkey policy predict LOG (--uki F | --kernel F [--initrd F] [--kernel-path P] | --cmdline S | --shim F | --bootloader F)... [--policy P] [--json] [--log-out FILE]

Prints the event list of the boot these files will make: LOG (the current boot's event log,
e.g. ${CURRENT_LOG}) with the events of the changed parts replaced,
each marked "*" with the part that changed it, and the predicted values of the changed PCRs.
What cannot be predicted from files is printed as "note:" lines (GRUB's grub.cfg, a shim's
SbatLevel; firmware and dbx updates are not files bootkey reads: see docs/UPDATES.md).

${PART_HELP}
  --policy P          also check the predicted boot against policy P (with the predicted PCR
                      values as the quote: measuredboot/verdict.ts, as the server would) and
                      name every rule that would fail; exit 1 if it would be refused
  --json              print the prediction as JSON ({"format": "bootkey-predicted-boot", "events":
                      [{pcr, type, typeName, digests, data, description, changed}], "pcrs",
                      "changedPcrs", "images", "notes"}; with --policy also "verdict"); the file
                      is what \`policy stage --predicted\` reads
  --log-out FILE      also write the predicted boot as a binary TCG event log

Exit status: 0 predicted (and, with --policy, it would pass); 1 it would be refused, or a part
has no place in the current boot (a UKI for a GRUB boot: then add-boot after a supervised
reboot), or a file is not a valid EFI image; 2 usage.`,
  options: { ...PART_OPTIONS, policy: { type: 'string' }, json: { type: 'boolean' }, 'log-out': { type: 'string' } },
  positionals: [1, 1],
  async run(args: Parsed): Promise<number> {
    const p = await predictFrom(args.positionals[0], args);
    const policyPath = opt(args, 'policy');
    const logOut = opt(args, 'log-out');
    if (logOut !== undefined) writeOutput(logOut, predictedLogBytes(p));
    let verdict: ReturnType<typeof evaluateBoot> | undefined;
    let bank: BankName = p.banks.includes('sha256') ? 'sha256' : p.banks[0];
    if (policyPath !== undefined) {
      const policy = readPolicy(policyPath);
      bank = policy.bank;
      const need = new Set(requiredPcrs(policy));
      const quoted: PcrValues = new Map(p.banks.map((b) => [b, new Map(Object.entries(p.pcrs[b] ?? {}).filter(([k]) => need.has(Number(k))).map(([k, v]) => [Number(k), Buffer.from(v, 'hex')]))]));
      verdict = evaluateBoot(policy, predictedLogBytes(p), quoted);
    }
    if (flag(args, 'json')) printJson(verdict ? { ...p, verdict } : p);
    else {
      let out = predictedText(p, bank);
      if (verdict) {
        out += verdict.pass ? `policy: the predicted boot would pass${verdict.knownGoodPcrs.length ? ` (PCR ${verdict.knownGoodPcrs.join(', ')} equal known-good values)` : ''}\n`
          : [`policy: the predicted boot would be refused: ${verdict.code}: ${verdict.message}`, ...verdict.failures.map((f) => `  ${f.rule}: ${f.message}`)].join('\n') + '\n';
      }
      process.stdout.write(out);
    }
    return verdict && !verdict.pass ? EXIT_REFUSED : EXIT_OK;
  },
};

const stageCmd: Command = {
  path: ['policy', 'stage'],
  summary: 'allow the boot an update will make, before it happens (in place)',
  help: `usage: bootkey policy stage POLICY (--uki F | --kernel F [--initrd F] [--kernel-path P] | --cmdline S | --shim F | --bootloader F)... [--log CURRENT_LOG] [--label L]
       bootkey policy stage POLICY --predicted FILE [--label L]

Predicts the boot these files will make (as \`policy predict\`: the current boot's log with the
changed events replaced) and adds it to POLICY as another allowed alternative, rewriting POLICY
in place: exactly what \`policy add-boot\` would add for that boot's log, never replacing the
current boot, with the same refusals (Secure Boot off into a policy that requires it on, a dbx
lacking required revocations, a debug boot). The predicted values of the PCRs the policy reads
become known-good values, and a "staged" entry records the label, time and PCR 4 digests.

${PART_HELP}
  --log FILE          the current boot's event log (default ${CURRENT_LOG})
  --predicted FILE    a prediction made elsewhere (\`policy predict --json\`), instead of the files
  --label L           a name for the staged boot (e.g. "kernel 6.1.0-57")
  --allow-secureboot-off   as add-boot

The prediction is the current log's claim plus the files': nothing is bound to a quote until the
staged boot happens; then the server checks its quoted log against the policy as always, so a
wrong prediction only makes that boot fail. Retire a staged boot by editing POLICY (see
docs/UPDATES.md). Exit status 0 staged; 1 refused (nothing written) or bad input; 2 usage.`,
  options: { ...PART_OPTIONS, log: { type: 'string' }, predicted: { type: 'string' }, label: { type: 'string' }, 'allow-secureboot-off': { type: 'boolean' } },
  positionals: [1, 1],
  async run(args: Parsed): Promise<number> {
    const policyPath = args.positionals[0];
    const policy = readPolicy(policyPath);
    const predictedPath = opt(args, 'predicted');
    let p: PredictedBoot;
    if (predictedPath !== undefined) {
      if (Object.keys(PART_OPTIONS).some((k) => opt(args, k) !== undefined) || opt(args, 'log') !== undefined) throw new UsageError('--predicted replaces the part options and --log');
      let j: unknown;
      try {
        j = JSON.parse(readInput(predictedPath, 'predicted boot').toString('utf8'));
      } catch (e) {
        if (e instanceof SyntaxError) throw new InputError('BAD_PREDICTION', `${predictedPath}: not JSON: ${e.message}`);
        throw e;
      }
      p = parsePredictedBoot(j);
    } else p = await predictFrom(opt(args, 'log') ?? CURRENT_LOG, args);
    const label = opt(args, 'label');
    const staged = stageBoot(policy, p, { ...(label !== undefined ? { label } : {}), at: new Date().toISOString(), allowSecureBootOff: flag(args, 'allow-secureboot-off') });
    writeOutput(policyPath, policyText(staged));
    const bank = policy.bank;
    process.stdout.write(`staged${label !== undefined ? ` ${JSON.stringify(label)}` : ''} into ${policyPath}: PCR 4 ${p.images.map((i) => `${i.role} ${(i.digests[bank] ?? '').slice(0, 12)}…`).join(', ') || 'unchanged'}; changed PCRs ${p.changedPcrs.join(', ') || 'none'}\n${p.notes.map((n) => `note: ${n}\n`).join('')}`);
    return EXIT_OK;
  },
};

const stagingCmd: Command = {
  path: ['policy', 'staging'],
  summary: 'set what a machine with this policy may stage for itself (bootkey stage)',
  help: `usage: bootkey policy staging POLICY --mode none|signed-by|any [--cert FILE]... [--require-approval] [--keep N]

Writes POLICY's "staging" field: the permission the server applies when an enrolled machine
stages its next boot itself (\`bootkey stage\`, called by the update hooks in hooks/):
  none        refused (STAGING_NOT_ALLOWED); the default
  signed-by   each new PCR 4 image (shim, boot loader, UKI, kernel) must carry an Authenticode
              signature over its digest chaining to a --cert (or the stage's signedBy); any other
              widening (command line, firmware, keys, PCR values) is refused (STAGE_WIDENS)
  any         whatever \`policy stage\` would add (Secure Boot downgrade, dbx rollback still refused)
  --cert FILE          a PEM or DER certificate (repeatable): the distribution's signing certificate, a db or MOK entry
  --require-approval   a staged boot waits for \`bootkey admin staged approve\`
  --keep N             retire a staged boot unused for N successful releases (default 3)
Exit status 0 written; 1 bad input; 2 usage.`,
  options: { mode: { type: 'string' }, cert: { type: 'string', multiple: true }, 'require-approval': { type: 'boolean' }, keep: { type: 'string' } },
  positionals: [1, 1],
  async run(args: Parsed): Promise<number> {
    const policyPath = args.positionals[0];
    const policy = readPolicy(policyPath);
    const mode = opt(args, 'mode');
    if (mode !== 'none' && mode !== 'signed-by' && mode !== 'any') throw new UsageError('--mode: none, signed-by or any');
    const certs = (args.values.cert as string[] | undefined) ?? [];
    if (mode === 'signed-by' && !certs.length && !(policy.rules.bootChain?.stages ?? []).some((st) => st.signedBy?.length)) throw new UsageError('--mode signed-by needs --cert (or a boot-chain stage with signedBy)');
    if (mode !== 'signed-by' && certs.length) throw new UsageError('--cert goes with --mode signed-by');
    const { X509Certificate, createHash } = await import('node:crypto');
    const signedBy = certs.map((f) => {
      let c;
      try {
        c = new X509Certificate(readInput(f, 'certificate'));
      } catch (e) {
        throw new InputError('BAD_CERT', `${f}: not a PEM or DER certificate: ${(e as Error).message}`);
      }
      return { sha256: createHash('sha256').update(c.raw).digest('hex'), subject: c.subject.replace(/\n/g, ', ') };
    });
    const keepS = opt(args, 'keep');
    const keep = keepS === undefined ? undefined : Number(keepS);
    if (keep !== undefined && (!Number.isInteger(keep) || keep < 1 || keep > 1000)) throw new UsageError('--keep: an integer 1-1000');
    policy.staging = { mode, ...(signedBy.length ? { signedBy } : {}), ...(flag(args, 'require-approval') ? { requireApproval: true } : {}), ...(keep !== undefined ? { keep } : {}) };
    writeOutput(policyPath, policyText(parsePolicy(JSON.parse(JSON.stringify(policy)))));
    process.stdout.write(`${policyPath}: staging ${mode}${signedBy.length ? ` by ${signedBy.map((c) => c.subject || c.sha256.slice(0, 12)).join(' or ')}` : ''}${policy.staging.requireApproval ? ', approval required' : ''}${keep !== undefined ? `, keep ${keep}` : ''}\n`);
    return EXIT_OK;
  },
};

export const policyCommands: Command[] = [generate, addBootCmd, stageCmd, predictCmd, check, showState, stagingCmd];
