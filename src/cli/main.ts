/**
 * `bootkey`: the command-line entry point. Subcommands live in src/cli/<area>.ts and are
 * listed in COMMANDS; each has --help. Errors come out as one `bootkey:` line on stderr,
 * never a stack trace (set BOOTKEY_DEBUG=1 to get one).
 * @module
 */
import { BootkeyError, UsageError } from '../errors.ts';
import { type Command, parse, EXIT_USAGE, EXIT_REFUSED } from './command.ts';
import { COMMANDS } from './registry.ts';

import { VERSION } from './version.ts';

function topHelp(prefix: string[] = []): string {
  const lines = [`usage: bootkey ${prefix.length ? prefix.join(' ') + ' ' : ''}<command> [options]`, '', 'commands:'];
  for (const c of COMMANDS) {
    if (prefix.every((p, i) => c.path[i] === p)) lines.push(`  ${c.path.join(' ').padEnd(28)} ${c.summary}`);
  }
  lines.push('', 'Run `bootkey <command> --help` for the options of one command.');
  lines.push('Exit status: 0 success, 1 refused or bad input, 2 usage error.');
  return lines.join('\n') + '\n';
}

function find(argv: string[]): { cmd?: Command; rest: string[]; prefix: string[] } {
  let best: Command | undefined;
  for (const c of COMMANDS) {
    if (c.path.every((p, i) => argv[i] === p) && (!best || c.path.length > best.path.length)) best = c;
  }
  if (best) return { cmd: best, rest: argv.slice(best.path.length), prefix: best.path };
  const prefix: string[] = [];
  for (const a of argv) {
    if (COMMANDS.some((c) => [...prefix, a].every((p, i) => c.path[i] === p))) prefix.push(a);
    else break;
  }
  return { rest: argv.slice(prefix.length), prefix };
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(topHelp());
    return argv.length === 0 ? EXIT_USAGE : 0;
  }
  if (argv[0] === '--version') {
    process.stdout.write(`bootkey ${VERSION}\n`);
    return 0;
  }
  const { cmd, rest, prefix } = find(argv);
  if (!cmd) {
    if (rest[0] === '--help' || rest[0] === '-h' || (rest.length === 0 && prefix.length > 0)) {
      process.stdout.write(topHelp(prefix));
      return rest.length === 0 ? EXIT_USAGE : 0;
    }
    throw new UsageError(`unknown command: ${argv.slice(0, prefix.length + 1).join(' ')} (see bootkey --help)`);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.help.endsWith('\n') ? cmd.help : cmd.help + '\n');
    return 0;
  }
  return await cmd.run(parse(cmd, rest));
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ');
}

export async function runCli(): Promise<void> {
  let code: number;
  try {
    code = await main(process.argv.slice(2));
  } catch (e) {
    if (process.env.BOOTKEY_DEBUG) console.error(e);
    if (e instanceof BootkeyError) {
      process.stderr.write(`bootkey: ${oneLine(e.message)}\n`);
      code = e instanceof UsageError ? EXIT_USAGE : EXIT_REFUSED;
    } else {
      const err = e as NodeJS.ErrnoException;
      process.stderr.write(`bootkey: ${oneLine(err?.message ?? String(e))}\n`);
      code = EXIT_REFUSED;
    }
  }
  process.exitCode = code;
  // A `bootkey server --workers N` worker: its IPC channel to the primary would keep it alive.
  if (process.env.BOOTKEY_WORKER !== undefined && process.connected) process.exit(code);
}

// Not a top-level await: the single executable's bundle is CommonJS. runCli never rejects.
void runCli();
