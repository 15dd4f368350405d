/**
 * The kernel TPM character devices: `/dev/tpmrm0` (in-kernel resource manager) or `/dev/tpm0`.
 * Plain file I/O as go-tpm's linuxtpm does: open read/write, write the whole command, read the
 * whole response in one read (the driver returns it at once). Calls are serialised.
 * @module
 */
import { open, type FileHandle } from 'node:fs/promises';
import { TpmError } from './errors.ts';
import { type Transport, Serializer, checkCommandFrame, MAX_RESPONSE, DEFAULT_TIMEOUT_MS } from './transport.ts';

function fail(path: string, what: string, e: unknown): TpmError {
  const err = e as NodeJS.ErrnoException;
  return new TpmError('TRANSPORT', `${path}: ${what} failed: ${err?.code ?? err?.message ?? String(e)}`);
}

export async function openDeviceTransport(path: string, opts: { timeoutMs?: number } = {}): Promise<Transport> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r+');
  } catch (e) {
    throw fail(path, 'open', e);
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ser = new Serializer();
  const buf = Buffer.alloc(MAX_RESPONSE);
  let closed = false;

  const once = async (cmd: Uint8Array): Promise<Buffer> => {
    if (closed || !fh) throw new TpmError('TRANSPORT', `${path}: transport is closed`);
    checkCommandFrame(cmd);
    try {
      const w = await fh.write(cmd, 0, cmd.length, null);
      if (w.bytesWritten !== cmd.length) throw new Error(`short write (${w.bytesWritten} of ${cmd.length} bytes)`);
    } catch (e) {
      throw fail(path, 'write', e);
    }
    let n: number;
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = fh.read(buf, 0, buf.length, null);
      const t = new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
      });
      n = (await Promise.race([r, t])).bytesRead;
    } catch (e) {
      throw fail(path, 'read', e);
    } finally {
      clearTimeout(timer);
    }
    if (n < 10) throw new TpmError('TRANSPORT', `${path}: response of ${n} bytes is shorter than a TPM header`);
    return Buffer.from(buf.subarray(0, n));
  };

  return {
    send: (cmd) => ser.run(() => once(cmd)),
    async close() {
      if (closed) return;
      closed = true;
      await fh?.close().catch(() => undefined);
    },
  };
}
