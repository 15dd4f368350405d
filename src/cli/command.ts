/**
 * The tiny command framework every `bootkey` subcommand uses: a name path, a help text,
 * node:util parseArgs options, and a run function returning the exit status.
 *
 * Exit statuses: 0 success, 1 refusal or bad input, 2 usage.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { UsageError, InputError } from '../errors.ts';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export interface Command {
  /** e.g. ['tpm', 'quote'] */
  path: string[];
  /** One line for the command list. */
  summary: string;
  /** Full --help text (usage line first). */
  help: string;
  options: Options;
  /** Positional arguments allowed: [min, max]. */
  positionals?: [number, number];
  run(args: Parsed): Promise<number> | number;
}

export const EXIT_OK = 0;
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;

export function parse(cmd: Command, argv: string[]): Parsed {
  let res;
  try {
    res = parseArgs({ args: argv, options: cmd.options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${cmd.path.join(' ')}: ${(e as Error).message.split('\n')[0]}`);
  }
  const [min, max] = cmd.positionals ?? [0, 0];
  if (res.positionals.length < min || res.positionals.length > max) {
    throw new UsageError(`${cmd.path.join(' ')}: expected ${min === max ? min : `${min} to ${max}`} argument(s), got ${res.positionals.length} (see --help)`);
  }
  return { values: res.values as Parsed['values'], positionals: res.positionals };
}

/** A required string option, or a UsageError naming it. */
export function req(args: Parsed, name: string): string {
  const v = args.values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`missing --${name} (see --help)`);
  return v;
}

export function opt(args: Parsed, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(args: Parsed, name: string): boolean {
  return args.values[name] === true;
}

/** Reads a file given on the command line ('-' is stdin), as an InputError when it cannot. */
export function readInput(path: string, what = 'file'): Buffer {
  try {
    return readFileSync(path === '-' ? 0 : path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new InputError('READ', `cannot read ${what} ${path}: ${err.code ?? err.message}`);
  }
}

export function writeOutput(path: string, data: Uint8Array | string, mode?: number): void {
  try {
    if (path === '-') process.stdout.write(data);
    else writeFileSync(path, data, mode === undefined ? undefined : { mode });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new InputError('WRITE', `cannot write ${path}: ${err.code ?? err.message}`);
  }
}

/** Parses a hex string option (spaces and a 0x prefix allowed). */
export function hexArg(name: string, s: string): Buffer {
  const h = s.replace(/^0x/i, '').replace(/\s+/g, '');
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new UsageError(`--${name}: not a hex string`);
  return Buffer.from(h, 'hex');
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}
