/**
 * The cryptsetup edge: every LUKS2 operation bootkey needs, each one `cryptsetup` run through
 * child_process with an argument array (never a shell). Secrets go to cryptsetup only through
 * its standard input (`--key-file -` / a new key file `-`), never through an argument, the
 * environment or a temporary file; cryptsetup's stderr is kept for the error message (it never
 * echoes a key).
 *
 * - {@link readMetadata}: `cryptsetup luksDump --dump-json-metadata` (the LUKS2 JSON area).
 * - {@link addKey}: `luksAddKey` authorised by an existing passphrase/key file, new key on stdin.
 * - {@link killSlot}: `luksKillSlot -q` (batch mode: no remaining passphrase asked).
 * - {@link importToken}, {@link exportToken}, {@link removeToken}: `cryptsetup token ...`.
 * - {@link testKey}: `open --test-passphrase` (no device-mapper needed), {@link openDevice}: `open DEV NAME`.
 *
 * Errors: one class, {@link LuksError}, with stable codes:
 * `NOT_FOUND` (no cryptsetup binary), `NO_DEVICE` (the device/image is missing), `NOT_LUKS2`,
 * `BAD_KEY` (no keyslot opens with that key), `NO_SLOT` (keyslot not there / no free one),
 * `NO_TOKEN`, `BAD_TOKEN` (token JSON rejected), `DM_UNAVAILABLE` (no device-mapper: `open NAME`
 * cannot work on this host), `BUSY` (the name is already in use), `TIMEOUT`, `FAILED` (anything else,
 * with cryptsetup's exit status and stderr).
 * @module
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BootkeyError } from '../errors.ts';

export class LuksError extends BootkeyError {
  readonly layer = 'luks';
  /** cryptsetup's exit status when it ran. */
  readonly exitCode?: number;
  constructor(code: string, message: string, exitCode?: number) {
    super(code, message);
    this.exitCode = exitCode;
  }
}

/** The cryptsetup binary: $BOOTKEY_CRYPTSETUP, else the first of /usr/sbin, /sbin, PATH. */
export function cryptsetupPath(): string {
  if (process.env.BOOTKEY_CRYPTSETUP) return process.env.BOOTKEY_CRYPTSETUP;
  for (const p of ['/usr/sbin/cryptsetup', '/sbin/cryptsetup', '/usr/bin/cryptsetup']) if (existsSync(p)) return p;
  return 'cryptsetup';
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** Runs cryptsetup with `args`; `input` (a secret) is written to its stdin and the pipe closed. */
export function run(args: string[], input?: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cryptsetupPath(), args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
      reject(new LuksError('TIMEOUT', `cryptsetup ${args[0]}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(e.code === 'ENOENT' ? new LuksError('NOT_FOUND', 'cryptsetup is not installed (package cryptsetup-bin)') : new LuksError('FAILED', `cryptsetup: ${e.message}`));
    });
    child.on('close', (code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString().trim() });
    });
    // EPIPE when cryptsetup exits before reading (e.g. a bad device) is reported through its status.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

/** Maps a failed run to a LuksError: cryptsetup's exit status 2 on a key operation means "no key". */
function fail(op: string, dev: string, r: RunResult, keyOp = false): LuksError {
  const msg = r.stderr.split('\n').filter(Boolean).slice(-2).join('; ') || `exit status ${r.code}`;
  if (/Cannot initialize device-mapper|device-mapper.*not available|dm_task/i.test(r.stderr)) {
    return new LuksError('DM_UNAVAILABLE', `cryptsetup ${op} ${dev}: device-mapper is not available on this host (${msg})`, r.code);
  }
  if (/Device .* (does not exist|doesn't exist)|No such file/i.test(r.stderr)) return new LuksError('NO_DEVICE', `cryptsetup ${op}: ${dev}: ${msg}`, r.code);
  if (/is not a valid LUKS device|not a LUKS2|Unsupported LUKS version|Device is not LUKS2/i.test(r.stderr)) return new LuksError('NOT_LUKS2', `${dev} is not a LUKS2 device (${msg})`, r.code);
  if (keyOp && (r.code === 2 || /No key available/i.test(r.stderr))) return new LuksError('BAD_KEY', `cryptsetup ${op} ${dev}: no keyslot opens with that key`, r.code);
  if (/already exists|already in use|is busy/i.test(r.stderr) || r.code === 5) return new LuksError('BUSY', `cryptsetup ${op} ${dev}: ${msg}`, r.code);
  return new LuksError('FAILED', `cryptsetup ${op} ${dev} failed (exit ${r.code}): ${msg}`, r.code);
}

// ---------- metadata ----------

export interface Luks2Keyslot {
  type: string;
  key_size?: number;
  kdf?: { type: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface Luks2Token {
  type: string;
  keyslots: string[];
  [k: string]: unknown;
}

/** The LUKS2 JSON metadata (only the parts bootkey reads are typed). */
export interface Luks2Metadata {
  keyslots: Record<string, Luks2Keyslot>;
  tokens: Record<string, Luks2Token>;
  segments: Record<string, unknown>;
  digests: Record<string, unknown>;
  config: { json_size?: string; keyslots_size?: string; [k: string]: unknown };
}

/** LUKS2 allows keyslots 0..31 and tokens 0..31. */
export const MAX_KEYSLOTS = 32;
export const MAX_TOKENS = 32;

function checkDevice(dev: string): void {
  if (!dev || dev.startsWith('-')) throw new LuksError('NO_DEVICE', `bad device name ${JSON.stringify(dev)}`);
  if (!existsSync(dev)) throw new LuksError('NO_DEVICE', `${dev}: no such device or file`);
}

/** The JSON metadata of a LUKS2 device or image file. @throws LuksError NOT_LUKS2, NO_DEVICE */
export async function readMetadata(dev: string): Promise<Luks2Metadata> {
  checkDevice(dev);
  const r = await run(['luksDump', '--dump-json-metadata', dev]);
  if (r.code !== 0) throw fail('luksDump', dev, r);
  let j: unknown;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new LuksError('NOT_LUKS2', `${dev}: luksDump printed no JSON metadata (not LUKS2?)`);
  }
  const m = j as Partial<Luks2Metadata>;
  if (typeof m !== 'object' || m === null || typeof m.keyslots !== 'object' || typeof m.tokens !== 'object') {
    throw new LuksError('NOT_LUKS2', `${dev}: the LUKS2 metadata has no keyslots/tokens objects`);
  }
  return { keyslots: m.keyslots ?? {}, tokens: m.tokens ?? {}, segments: m.segments ?? {}, digests: m.digests ?? {}, config: m.config ?? {} };
}

/** The lowest keyslot number not in use. @throws LuksError NO_SLOT */
export function freeKeyslot(m: Luks2Metadata): number {
  for (let i = 0; i < MAX_KEYSLOTS; i++) if (!Object.hasOwn(m.keyslots, String(i))) return i;
  throw new LuksError('NO_SLOT', 'every LUKS2 keyslot (0..31) is in use');
}

/** The lowest token id not in use. */
export function freeTokenId(m: Luks2Metadata): number {
  for (let i = 0; i < MAX_TOKENS; i++) if (!Object.hasOwn(m.tokens, String(i))) return i;
  throw new LuksError('NO_TOKEN', 'every LUKS2 token slot (0..31) is in use');
}

// ---------- keyslots ----------

export interface AddKeyOptions {
  /** A file holding an existing passphrase/key (as `cryptsetup --key-file`). */
  existingKeyFile: string;
  /** The new key; written to cryptsetup's stdin. */
  newKey: Buffer;
  /** The keyslot to use; default the lowest free one. */
  slot?: number;
  /**
   * PBKDF of the new keyslot. bootkey keys carry 256 bits of entropy, so a slow KDF adds
   * nothing; PBKDF2 with 1000 iterations keeps the unlock fast in the initrd (as
   * systemd-cryptenroll does for TPM2/FIDO2 keys).
   */
  pbkdf?: { type: 'pbkdf2'; iterations: number } | { type: 'argon2id'; memoryKiB: number; iterations: number };
}

/**
 * `cryptsetup luksAddKey DEV --key-file EXISTING --new-key-slot N -` with the new key on stdin.
 * @returns the keyslot number.
 * @throws LuksError BAD_KEY (the existing key opens no slot), NO_SLOT, NOT_LUKS2, FAILED
 */
export async function addKey(dev: string, o: AddKeyOptions): Promise<number> {
  checkDevice(dev);
  if (!existsSync(o.existingKeyFile)) throw new LuksError('BAD_KEY', `key file ${o.existingKeyFile} does not exist`);
  const slot = o.slot ?? freeKeyslot(await readMetadata(dev));
  const pb = o.pbkdf ?? { type: 'pbkdf2', iterations: 1000 };
  const kdf = pb.type === 'pbkdf2'
    ? ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', String(pb.iterations)]
    : ['--pbkdf', 'argon2id', '--pbkdf-memory', String(pb.memoryKiB), '--pbkdf-force-iterations', String(pb.iterations), '--pbkdf-parallel', '1'];
  const r = await run(['luksAddKey', '--batch-mode', '--type', 'luks2', ...kdf, '--key-file', o.existingKeyFile, '--new-key-slot', String(slot), dev, '-'], o.newKey);
  if (r.code !== 0) throw fail('luksAddKey', dev, r, true);
  return slot;
}

/** `cryptsetup luksKillSlot -q DEV N` (batch mode: no other passphrase needed). @throws LuksError NO_SLOT, FAILED */
export async function killSlot(dev: string, slot: number): Promise<void> {
  checkDevice(dev);
  const r = await run(['luksKillSlot', '--batch-mode', dev, String(slot)]);
  if (r.code !== 0) {
    if (/not active|Keyslot \d+ is not active|not used/i.test(r.stderr)) throw new LuksError('NO_SLOT', `${dev}: keyslot ${slot} is not in use`, r.code);
    throw fail('luksKillSlot', dev, r);
  }
}

// ---------- tokens ----------

/** `cryptsetup token import --json-file - [--token-id N] DEV` with the JSON on stdin. @returns the token id. */
export async function importToken(dev: string, token: Luks2Token, tokenId?: number): Promise<number> {
  checkDevice(dev);
  const id = tokenId ?? freeTokenId(await readMetadata(dev));
  const r = await run(['token', 'import', '--json-file', '-', '--token-id', String(id), dev], Buffer.from(JSON.stringify(token)));
  if (r.code !== 0) {
    if (/Token \d+ in use/i.test(r.stderr)) throw new LuksError('BUSY', `${dev}: token ${id} is already in use`, r.code);
    if (/Failed to import token|Invalid|JSON/i.test(r.stderr)) throw new LuksError('BAD_TOKEN', `cryptsetup token import ${dev}: ${r.stderr || `exit ${r.code}`}`, r.code);
    throw fail('token import', dev, r);
  }
  return id;
}

/** `cryptsetup token export --token-id N DEV`. @throws LuksError NO_TOKEN */
export async function exportToken(dev: string, tokenId: number): Promise<Luks2Token> {
  checkDevice(dev);
  const r = await run(['token', 'export', '--token-id', String(tokenId), dev]);
  if (r.code !== 0) {
    if (/Failed to get token|not in use|not found|inactive/i.test(r.stderr)) throw new LuksError('NO_TOKEN', `${dev}: no token ${tokenId}`, r.code);
    throw fail('token export', dev, r);
  }
  try {
    return JSON.parse(r.stdout) as Luks2Token;
  } catch {
    throw new LuksError('BAD_TOKEN', `${dev}: token ${tokenId} is not JSON`);
  }
}

/** `cryptsetup token remove --token-id N DEV`. */
export async function removeToken(dev: string, tokenId: number): Promise<void> {
  checkDevice(dev);
  const r = await run(['token', 'remove', '--token-id', String(tokenId), dev]);
  if (r.code !== 0) {
    if (/not in use/i.test(r.stderr)) throw new LuksError('NO_TOKEN', `${dev}: no token ${tokenId}`, r.code);
    throw fail('token remove', dev, r);
  }
}

// ---------- opening ----------

/**
 * `cryptsetup open --test-passphrase --key-file - DEV [--key-slot N]`: whether `key` opens the
 * device. Needs no device-mapper. @returns true when it does, false for "no key available".
 */
export async function testKey(dev: string, key: Buffer, opts: { slot?: number } = {}): Promise<boolean> {
  checkDevice(dev);
  const slot = opts.slot === undefined ? [] : ['--key-slot', String(opts.slot)];
  const r = await run(['open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', ...slot, dev], key);
  if (r.code === 0) return true;
  const e = fail('open --test-passphrase', dev, r, true);
  if (e.code === 'BAD_KEY') return false;
  throw e;
}

/** `cryptsetup open --type luks2 --key-file - DEV NAME`. @throws LuksError BAD_KEY, DM_UNAVAILABLE, BUSY */
export async function openDevice(dev: string, name: string, key: Buffer): Promise<void> {
  checkDevice(dev);
  if (!/^[A-Za-z0-9._-]{1,127}$/.test(name) || name.startsWith('-')) throw new LuksError('FAILED', `bad mapping name ${JSON.stringify(name)}`);
  const r = await run(['open', '--type', 'luks2', '--key-file', '-', dev, name], key);
  if (r.code !== 0) throw fail('open', dev, r, true);
}

/** Creates a LUKS2 image (tests and the demo): fast PBKDF2, the passphrase from a key file. */
export async function formatImage(dev: string, keyFile: string, opts: { iterations?: number } = {}): Promise<void> {
  checkDevice(dev);
  const r = await run(['luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', String(opts.iterations ?? 1000), '--key-file', keyFile, dev]);
  if (r.code !== 0) throw fail('luksFormat', dev, r);
}
