/**
 * swtpm's data channel (`swtpm socket --server type=tcp,port=N` or `type=unixio,path=S`):
 * raw TPM command bytes in, raw response bytes out, one connection kept open and re-made
 * on demand. A response is framed by its header's size field (Part 1 §18.4: tag UINT16,
 * responseSize UINT32), bounded by MAX_RESPONSE, under a timeout.
 *
 * swtpm serves one client at a time: close() this transport before another client
 * (tpm2-tools) talks to the same swtpm.
 * @module
 */
import net from 'node:net';
import { TpmError } from './errors.ts';
import { type Transport, Serializer, checkCommandFrame, MAX_RESPONSE, DEFAULT_TIMEOUT_MS } from './transport.ts';

export type SwtpmAddress = { host: string; port: number } | { path: string };

export function openSwtpmTransport(addr: SwtpmAddress, opts: { timeoutMs?: number } = {}): Transport {
  const where = 'path' in addr ? `swtpm:path=${addr.path}` : `swtpm:host=${addr.host},port=${addr.port}`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ser = new Serializer();
  let sock: net.Socket | undefined;
  let closed = false;

  const connect = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = 'path' in addr ? net.connect(addr.path) : net.connect(addr.port, addr.host);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new TpmError('TRANSPORT', `${where}: connect timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        s.removeAllListeners('error');
        s.on('error', () => undefined); // reported by the pending exchange via 'close'
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new TpmError('TRANSPORT', `${where}: connect failed: ${e.code ?? e.message}`));
      });
    });

  const exchange = (s: net.Socket, cmd: Uint8Array): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let have = 0;
      let want = -1;
      const done = (err?: TpmError, res?: Buffer): void => {
        clearTimeout(timer);
        s.off('data', onData);
        s.off('close', onClose);
        if (err) {
          s.destroy();
          if (sock === s) sock = undefined;
          reject(err);
        } else resolve(res!);
      };
      const onData = (d: Buffer): void => {
        chunks.push(d);
        have += d.length;
        if (want < 0 && have >= 6) {
          const head = Buffer.concat(chunks);
          want = head.readUInt32BE(2);
          if (want < 10 || want > MAX_RESPONSE) {
            return done(new TpmError('TRANSPORT', `${where}: response header claims ${want} bytes (allowed 10..${MAX_RESPONSE})`));
          }
        }
        if (want >= 0 && have > want) return done(new TpmError('TRANSPORT', `${where}: ${have - want} bytes beyond the response's size field`));
        if (want >= 0 && have === want) done(undefined, Buffer.concat(chunks, have));
      };
      const onClose = (): void => done(new TpmError('TRANSPORT', `${where}: connection closed ${have ? `after ${have} bytes of the response` : 'before a response'}`));
      const timer = setTimeout(() => done(new TpmError('TRANSPORT', `${where}: no complete response within ${timeoutMs} ms`)), timeoutMs);
      s.on('data', onData);
      s.on('close', onClose);
      s.write(cmd);
    });

  return {
    send: (cmd) =>
      ser.run(async () => {
        if (closed) throw new TpmError('TRANSPORT', `${where}: transport is closed`);
        checkCommandFrame(cmd);
        if (!sock || sock.destroyed) sock = await connect();
        return exchange(sock, cmd);
      }),
    async close() {
      closed = true;
      const s = sock;
      sock = undefined;
      if (s && !s.destroyed) await new Promise<void>((r) => s.end(() => { s.destroy(); r(); }));
    },
  };
}
