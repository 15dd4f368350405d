/** `bootkey policy ...` subcommands: generate, add-boot, check, show-state. */
import { type Command, type Parsed, opt, flag, readInput, writeOutput, printJson, EXIT_OK, EXIT_REFUSED } from './command.ts';
import { UsageError } from '../errors.ts';
import { isBankName, type BankName } from '../pcrs.ts';
import { parseEventLog } from '../measuredboot/eventlog.ts';
import type { EventLog } from '../measuredboot/types.ts';
import { extractBootState, type BootState } from '../measuredboot/bootstate.ts';
import { generatePolicy, addBoot, checkPolicy, DEFAULT_PCRS, type Policy } from '../measuredboot/policy.ts';
import { parsePolicy } from '../measuredboot/policy-load.ts';

function readLog(path: string): EventLog {
  return parseEventLog(readInput(path, 'event log'));
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
  help: `usage: bootkey policy generate LOG [-o FILE] [--pcrs 0,2,4,7] [--bank sha256] [--allow-any-cmdline] [--allow-any-kernel]

Reads a known-good boot's TCG event log (binary_bios_measurements) and prints a JSON policy
(schema/policy.schema.json) on stdout, or writes it to FILE.

  -o, --output FILE     write the policy to FILE instead of stdout
  --pcrs LIST           PCRs to check (default ${DEFAULT_PCRS.join(',')}): 0 firmware, 4 boot chain,
                        7 Secure Boot state/keys/authorities; any other PCR is pinned to its value
  --bank NAME           bank whose digests are pinned (default sha256 when present)
  --allow-any-cmdline   do not check the kernel command line
  --allow-any-kernel    accept any kernel/UKI image (and ignore the image path in command lines)
`,
  options: {
    output: { type: 'string', short: 'o' },
    pcrs: { type: 'string' },
    bank: { type: 'string' },
    'allow-any-cmdline': { type: 'boolean' },
    'allow-any-kernel': { type: 'boolean' },
  },
  positionals: [1, 1],
  run(args: Parsed): number {
    const pcrs = opt(args, 'pcrs');
    const bank = bankArg(opt(args, 'bank'));
    const policy = generatePolicy(readLog(args.positionals[0]), {
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
  help: `usage: bootkey policy add-boot POLICY LOG [--allow-secureboot-off]

Adds the boot in LOG to the allowed values of POLICY (a staged shim, kernel or firmware update)
and rewrites POLICY in place. It refuses, changing nothing, when the new boot would relax a rule
silently: Secure Boot off where the policy requires it on, a dbx lacking revocations the policy
requires, a UEFI debugger or DMA protection disabled.

  --allow-secureboot-off   accept a boot with Secure Boot off; the policy then no longer requires it
`,
  options: { 'allow-secureboot-off': { type: 'boolean' } },
  positionals: [2, 2],
  run(args: Parsed): number {
    const [policyPath, logPath] = args.positionals;
    const merged = addBoot(readPolicy(policyPath), readLog(logPath), { allowSecureBootOff: flag(args, 'allow-secureboot-off') });
    writeOutput(policyPath, policyText(merged));
    return EXIT_OK;
  },
};

const check: Command = {
  path: ['policy', 'check'],
  summary: 'check an event log against a policy (exit 0 pass, 1 refused)',
  help: `usage: bootkey policy check POLICY LOG [--json]

Checks the boot in LOG against POLICY. Exit status 0 when it passes; 1 when it is refused (each
failed rule on its own line on stdout, naming PCR, event, actual and allowed values) or when an
input is bad (one "bootkey:" line on stderr). The log is taken as is: check it replays to the
quoted PCR values first.

  --json   print {"pass": bool, "failures": [{"rule", "pcr", "event", "expected", "actual", "message"}]}
`,
  options: { json: { type: 'boolean' } },
  positionals: [2, 2],
  run(args: Parsed): number {
    const [policyPath, logPath] = args.positionals;
    const res = checkPolicy(readPolicy(policyPath), readLog(logPath));
    if (flag(args, 'json')) printJson({ pass: res.pass, failures: res.failures });
    else if (res.pass) process.stdout.write('pass: the boot satisfies every rule of the policy\n');
    else process.stdout.write(res.failures.map((f) => f.message).join('\n') + '\n');
    return res.pass ? EXIT_OK : EXIT_REFUSED;
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
  for (const v of st.firmware.crtmVersions) L.push(`firmware version: ${JSON.stringify(v.text)} (event ${v.event})`);
  L.push(`firmware events (PCR 0): ${st.firmware.events.length}; drivers/option ROMs (PCR 2): ${st.drivers.length}`);
  for (const a of st.apps) L.push(`app: event ${a.event}, ${a.role}, ${a.path ?? a.devicePath}, ${Object.entries(a.digests).map(([b, d]) => `${b}:${d}`).join(' ')}`);
  for (const c of st.cmdlines) L.push(`cmdline: event ${c.event}, PCR ${c.pcr}, ${c.source}: ${c.text !== undefined ? JSON.stringify(c.text) : `(not logged; sha256 ${c.digests.sha256 ?? '?'})`}`);
  for (const i of st.initrds) L.push(`initrd: event ${i.event}, PCR ${i.pcr}, ${i.description}, ${Object.entries(i.digests).map(([b, d]) => `${b}:${d}`).join(' ')}`);
  if (st.stubSections.length) L.push(`systemd-stub sections (PCR 11): ${st.stubSections.map((s) => s.description).join(', ')}`);
  if (st.pcr12.length) L.push(`PCR 12 events: ${st.pcr12.map((s) => `${s.event} ${JSON.stringify(s.description)}`).join(', ')}`);
  if (st.debugMode.length) L.push(`UEFI Debug Mode: events ${st.debugMode.join(', ')}`);
  if (st.dmaProtectionDisabled.length) L.push(`DMA Protection Disabled: events ${st.dmaProtectionDisabled.join(', ')}`);
  L.push(`ExitBootServices: ${st.exitBootServices ?? 'not logged'}`);
  for (const w of st.warnings) L.push(`warning: ${w.message}`);
  for (const e of st.errors) L.push(`ERROR: ${e.message}`);
  return L.join('\n') + '\n';
}

const showState: Command = {
  path: ['policy', 'show-state'],
  summary: 'print the boot state extracted from an event log',
  help: `usage: bootkey policy show-state LOG [--json]

Prints what the log says was booted, using only events whose place in the log can be trusted:
Secure Boot state and keys, authorities, MOK, EFI applications with digests, kernel command lines,
initrd, systemd-stub sections, firmware version. Exit status 1 when the log's structure is not
trustworthy (errors are listed).

  --json   print the BootState object
`,
  options: { json: { type: 'boolean' } },
  positionals: [1, 1],
  run(args: Parsed): number {
    const st = extractBootState(readLog(args.positionals[0]));
    if (flag(args, 'json')) printJson(st);
    else process.stdout.write(stateText(st));
    return st.errors.length ? EXIT_REFUSED : EXIT_OK;
  },
};

export const policyCommands: Command[] = [generate, addBootCmd, check, showState];
