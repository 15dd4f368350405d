/**
 * `bootkey setup server` and `bootkey setup machine`: one command per role, as MicroOS's system
 * roles (docs/PACKAGING.md). Each is a list of steps; `--dry-run` prints them and changes
 * nothing; `--root DIR` writes files under DIR and prints (does not run) the commands that act on
 * the running system (systemctl start, initrd regeneration), for image builds and tests.
 * @module
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { UsageError, InputError } from '../errors.ts';
import { type Command, type Parsed, type Options, flag, opt, req, EXIT_OK } from './command.ts';
import { enrollCommands } from './enroll.ts';

export const SERVER_UNIT = 'bootkey-server.service';
export const DEFAULT_STATE = '/var/lib/bootkey';
export const DEFAULT_CA_DIR = '/var/lib/bootkey-ca';
/** Written by `setup machine`, removed by the packages' uninstall scriptlets when it carries MARKER. */
export const DRACUT_CONF = '/etc/dracut.conf.d/90-bootkey.conf';
export const DRACUT_CONF_MARKER = '# written by bootkey setup machine';

/**
 * `systemd-escape --path P`: the instance name of a unit for a path (systemd's
 * unit_name_path_escape): slashes collapsed and trimmed, '/' → '-', every byte outside
 * [A-Za-z0-9:_.] (and a leading '.') → \xNN; the root is "-".
 */
export function systemdEscapePath(p: string): string {
  const t = p.replace(/\/+/g, '/').replace(/^\/|\/$/g, '');
  if (!t) return '-';
  let out = '';
  for (const [i, ch] of [...t].entries()) {
    if (ch === '/') out += '-';
    else if (/[A-Za-z0-9:_]/.test(ch) || (ch === '.' && i > 0)) out += ch;
    else for (const b of Buffer.from(ch)) out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The runtime attestation agent's unit for an enrolled device (systemd/bootkey-agent@.service). */
export function agentUnit(device: string): string {
  return `bootkey-agent@${systemdEscapePath(device)}.service`;
}

export interface Step {
  /** What it does, as a command line or a file write. */
  what: string;
  /** false: acts on the running system, so it is printed, not run, under --root. */
  local: boolean;
  run(): Promise<void> | void;
}

/** Where the root is and whether to act. */
interface Ctx {
  root: string;
  dryRun: boolean;
}

function ctx(args: Parsed): Ctx {
  const root = opt(args, 'root') ?? '/';
  if (!root.startsWith('/')) throw new UsageError('--root: an absolute path');
  return { root, dryRun: flag(args, 'dry-run') };
}

/** DIR under the root. */
export function under(root: string, path: string): string {
  return root === '/' ? path : join(root, path);
}

/** Runs (or prints) the steps; one `setup:` line per step on stdout. */
export async function runSteps(c: Ctx, steps: Step[], out: (l: string) => void = (l) => process.stdout.write(l + '\n')): Promise<void> {
  for (const [i, s] of steps.entries()) {
    const n = `${i + 1}/${steps.length}`;
    if (c.dryRun) out(`setup: ${n} would run: ${s.what}`);
    else if (!s.local && c.root !== '/') out(`setup: ${n} skipped under --root ${c.root} (run it in the target): ${s.what}`);
    else {
      out(`setup: ${n} ${s.what}`);
      await s.run();
    }
  }
}

function sh(cmd: string[]): void {
  try {
    execFileSync(cmd[0], cmd.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { status?: number };
    throw new InputError('SETUP_STEP', `${cmd.join(' ')}: ${err.code === 'ENOENT' ? 'command not found' : `exit ${err.status ?? err.message}`}`);
  }
}

/** The command that regenerates the initrd(s) on this system, the way the distribution does. */
export function initrdCommand(root: string): string[] {
  if (existsSync(under(root, '/usr/sbin/transactional-update'))) return ['transactional-update', '--non-interactive', 'initrd'];
  if (existsSync(under(root, '/usr/bin/sdbootutil'))) return ['sdbootutil', 'mkinitrd'];
  return ['dracut', '--force', '--regenerate-all'];
}

export function serverSteps(args: Parsed): Step[] {
  const c = ctx(args);
  const state = opt(args, 'state') ?? DEFAULT_STATE;
  const caDir = opt(args, 'ca-dir') ?? DEFAULT_CA_DIR;
  const sans = (args.values.san as string[] | undefined) ?? [];
  const enable = !flag(args, 'no-enable');
  const steps: Step[] = [{
    what: `bootkey server init --state ${under(c.root, state)} --ca-dir ${under(c.root, caDir)}${sans.map((s) => ` --san ${s}`).join('')}`,
    local: true,
    async run() {
      const { initState } = await import('../server/pki.ts');
      await initState(under(c.root, state), { sans, caDir: under(c.root, caDir) });
    },
  }];
  if (enable) {
    // systemd not running (a chroot, an image build): enable for the next boot only
    const running = existsSync('/run/systemd/system');
    const cmd = c.root !== '/' ? ['systemctl', `--root=${c.root}`, 'enable', SERVER_UNIT] : running ? ['systemctl', 'enable', '--now', SERVER_UNIT] : ['systemctl', 'enable', SERVER_UNIT];
    const note = c.root === '/' && !running ? ' (systemd is not running here: it starts at the next boot)' : '';
    steps.push({ what: cmd.join(' ') + note, local: c.root !== '/', run: () => sh(cmd) });
  }
  return steps;
}

export function machineSteps(args: Parsed): Step[] {
  const c = ctx(args);
  // the enrolment's required options, checked before any step (also for --dry-run)
  if (!((args.values.server as string[] | undefined) ?? []).length) throw new UsageError('missing --server (see --help)');
  for (const o of ['ca', 'enrol-token', 'device', 'key-file']) req(args, o);
  const steps: Step[] = [{
    what: `bootkey enroll --server ${((args.values.server as string[] | undefined) ?? []).join(' --server ')} --device ${opt(args, 'device')} ...`,
    local: true,
    async run() {
      const code = await enrollCommands[0].run(args);
      if (code !== EXIT_OK) throw new InputError('SETUP_STEP', `enroll: exit ${code}`);
    },
  }, {
    what: `write ${under(c.root, DRACUT_CONF)}: add_dracutmodules+=" bootkey "`,
    local: true,
    run() {
      const f = under(c.root, DRACUT_CONF);
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(f, `${DRACUT_CONF_MARKER} (docs/PACKAGING.md); removed with the package\nadd_dracutmodules+=" bootkey "\n`, { mode: 0o644 });
    },
  }];
  if (!flag(args, 'no-initrd')) {
    const cmd = initrdCommand(c.root);
    steps.push({ what: cmd.join(' '), local: false, run: () => sh(cmd) });
  }
  if (flag(args, 'agent')) {
    const unit = agentUnit(opt(args, 'device')!);
    const running = existsSync('/run/systemd/system');
    const cmd = c.root !== '/' ? ['systemctl', `--root=${c.root}`, 'enable', unit] : running ? ['systemctl', 'enable', '--now', unit] : ['systemctl', 'enable', unit];
    const note = c.root === '/' && !running ? ' (systemd is not running here: it starts at the next boot)' : '';
    steps.push({ what: cmd.join(' ') + note, local: c.root !== '/', run: () => sh(cmd) });
  }
  return steps;
}

const COMMON: Options = { root: { type: 'string' }, 'dry-run': { type: 'boolean' } };

const setupServer: Command = {
  path: ['setup', 'server'],
  summary: 'server role: create the state in /var/lib/bootkey and enable bootkey-server.service',
  help: `usage: bootkey setup server [--state DIR] [--ca-dir DIR] [--san NAME|IP]... [--no-enable] [--root DIR] [--dry-run]

The server role in one command:
  1. bootkey server init --state DIR --ca-dir CADIR (default ${DEFAULT_STATE} and ${DEFAULT_CA_DIR}):
     CA, TLS certificate (SANs: localhost, 127.0.0.1, ::1 and every --san: give the names and
     addresses machines use), token-signing key, master key, admin token; existing files are kept;
  2. systemctl enable --now ${SERVER_UNIT} (DynamicUser: systemd hands the state to the
     service's transient user when it starts); without a running systemd (a chroot), enable only.
Then create enrolment tokens: bootkey admin --server https://HOST:7443 --ca ${DEFAULT_STATE}/ca.pem
--admin-token ${DEFAULT_STATE}/admin.token token create.

  --no-enable   only step 1
  --root DIR    an image or chroot: files under DIR, \`systemctl --root=DIR enable\`, nothing started
  --dry-run     print the steps, change nothing`,
  options: { ...COMMON, state: { type: 'string' }, 'ca-dir': { type: 'string' }, san: { type: 'string', multiple: true }, 'no-enable': { type: 'boolean' } },
  async run(args) {
    await runSteps(ctx(args), serverSteps(args));
    return EXIT_OK;
  },
};

const setupMachine: Command = {
  path: ['setup', 'machine'],
  summary: 'machine role: enroll, add the dracut module, regenerate the initrd[, enable the runtime agent]',
  help: `usage: bootkey setup machine --server https://HOST:PORT [--server ...] --ca FILE --enrol-token FILE
                             --device DEV --key-file FILE [--tpm SPEC] [--eventlog FILE] [--machine-id ID]
                             [--no-initrd] [--agent] [--root DIR] [--dry-run]

The machine role in one command:
  1. bootkey enroll with the same options (see bootkey enroll --help): TPM enrolment with an
     enrolment token, a bootkey keyslot and token on DEV;
  2. ${DRACUT_CONF}: add_dracutmodules+=" bootkey ";
  3. regenerate the initrd the distribution's way: transactional-update initrd (MicroOS and other
     transactional systems: the new initrd is in the next snapshot, active after a reboot), else
     sdbootutil mkinitrd (systemd-boot systems), else dracut --force --regenerate-all;
  4. with --agent: systemctl enable --now bootkey-agent@DEV.service (DEV escaped as systemd-escape
     --path does): runtime attestation of the booted system (IMA, issue 12) to the same servers.
     Give DEV as a stable path (/dev/disk/by-uuid/UUID): the unit names it. The server refuses
     its reports (RUNTIME_OFF) until it has a runtime policy for the machine.

  --no-initrd   skip step 3 (run it yourself)
  --agent       step 4
  --root DIR    write step 2 under DIR and print step 3 instead of running it (the enrolment
                still acts on DEV and the TPM)
  --dry-run     print the steps, change nothing`,
  options: { ...COMMON, ...enrollCommands[0].options, 'no-initrd': { type: 'boolean' }, agent: { type: 'boolean' } },
  async run(args) {
    await runSteps(ctx(args), machineSteps(args));
    return EXIT_OK;
  },
};

export const setupCommands: Command[] = [setupServer, setupMachine];
