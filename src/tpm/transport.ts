/**
 * TPM transports: one method, command bytes in, response bytes out (as go-tpm's
 * `transport.TPM`). Backends: the kernel device (`/dev/tpmrm0`, `/dev/tpm0`) by plain file
 * I/O, and swtpm's data channel over TCP or a UNIX socket. Nothing above this file touches
 * fs or net.
 *
 * Specs use tpm2-tools' TCTI spelling:
 * - `device:/dev/tpmrm0` (the default; `device` alone means /dev/tpmrm0)
 * - `swtpm:host=H,port=N` (`swtpm:port=N`, `swtpm:` → 127.0.0.1:2321)
 * - `swtpm:path=SOCKET` (swtpm `--server type=unixio,path=SOCKET`)
 *
 * The environment variable `BOOTKEY_TPM` replaces the default.
 * Every failure is a TpmError('TRANSPORT').
 * @module
 */
import { TpmError } from './errors.ts';

/** A TPM transport (TCG TSS 2.0 TCTI, reduced to its essence). */
export interface Transport {
  /** Sends one complete command and resolves with one complete response. Concurrent calls are serialised. */
  send(cmd: Uint8Array): Promise<Buffer>;
  /** Releases the device or socket; idempotent. */
  close(): Promise<void>;
}

/** Largest response a transport accepts (the TPM's MAX_RESPONSE_SIZE is 4096 on common TPMs). */
export const MAX_RESPONSE = 64 * 1024;
/** Default timeout of one command, ms (RSA key generation on a slow TPM takes seconds). */
export const DEFAULT_TIMEOUT_MS = 120_000;

export const DEFAULT_TPM_SPEC = 'device:/dev/tpmrm0';

export type TctiSpec =
  | { kind: 'device'; path: string }
  | { kind: 'swtpm'; host: string; port: number }
  | { kind: 'swtpm-unix'; path: string };

/** Parses a TCTI spec; a bad one is TpmError('TRANSPORT'). */
export function parseTcti(spec: string): TctiSpec {
  const bad = (why: string): never => {
    throw new TpmError('TRANSPORT', `bad TPM spec "${spec}": ${why} (expected device:/dev/tpmrm0, swtpm:host=H,port=N or swtpm:path=SOCKET)`);
  };
  const i = spec.indexOf(':');
  const name = i < 0 ? spec : spec.slice(0, i);
  const conf = i < 0 ? '' : spec.slice(i + 1);
  if (name === 'device') {
    if (conf === '') return { kind: 'device', path: '/dev/tpmrm0' };
    if (!conf.startsWith('/')) bad('the device path must be absolute');
    return { kind: 'device', path: conf };
  }
  if (name === 'swtpm') {
    const kv = new Map<string, string>();
    for (const part of conf.split(',').filter((s) => s !== '')) {
      const eq = part.indexOf('=');
      if (eq <= 0) bad(`"${part}" is not key=value`);
      const k = part.slice(0, eq);
      if (!['host', 'port', 'path'].includes(k)) bad(`unknown key "${k}"`);
      kv.set(k, part.slice(eq + 1));
    }
    if (kv.has('path')) {
      if (kv.has('host') || kv.has('port')) bad('path= excludes host= and port=');
      return { kind: 'swtpm-unix', path: kv.get('path')! };
    }
    const portS = kv.get('port') ?? '2321';
    const port = Number(portS);
    if (!/^\d+$/.test(portS) || port < 1 || port > 65535) bad(`bad port "${portS}"`);
    return { kind: 'swtpm', host: kv.get('host') || '127.0.0.1', port };
  }
  return bad(`unknown TCTI "${name}"`);
}

/** The spec to use: the given one, else $BOOTKEY_TPM, else device:/dev/tpmrm0. */
export function defaultTpmSpec(spec?: string): string {
  return spec || process.env.BOOTKEY_TPM || DEFAULT_TPM_SPEC;
}

/** Opens a transport for a TCTI spec (see the module doc). */
export async function openTransport(spec?: string, opts: { timeoutMs?: number } = {}): Promise<Transport> {
  const s = parseTcti(defaultTpmSpec(spec));
  if (s.kind === 'device') {
    const { openDeviceTransport } = await import('./transport-device.ts');
    return openDeviceTransport(s.path, opts);
  }
  const { openSwtpmTransport } = await import('./transport-swtpm.ts');
  return openSwtpmTransport(s.kind === 'swtpm' ? { host: s.host, port: s.port } : { path: s.path }, opts);
}

/**
 * Serialises calls: each `run` starts after the previous one settled (a TPM takes one command
 * at a time, and a response must be read before the next command is written).
 */
export class Serializer {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

/** Checks a command's framing before sending: at least a header, size field equal to its length. */
export function checkCommandFrame(cmd: Uint8Array): void {
  if (cmd.length < 10) throw new TpmError('TRANSPORT', `command of ${cmd.length} bytes is shorter than a TPM header`);
  const size = Buffer.from(cmd.buffer, cmd.byteOffset, cmd.byteLength).readUInt32BE(2);
  if (size !== cmd.length) throw new TpmError('TRANSPORT', `command header says ${size} bytes but it has ${cmd.length}`);
}
