/**
 * Listener addresses: `HOST:PORT` or `[IPv6]:PORT` (port 0 = ephemeral). Shared by the TLS
 * listener, the metrics and dashboard listeners and the configuration file's checks.
 * @module
 */
import type { Server } from 'node:http';
import { ServerError } from './errors.ts';

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(s.trim());
  if (!m) throw new ServerError('CONFIG', `listen address "${s}": expected HOST:PORT or [IPv6]:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new ServerError('CONFIG', `listen address "${s}": port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** host:port for messages, with brackets around IPv6 hosts. */
export function showAddr(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A started side listener (metrics, dashboard): its bound port and a close that drops every connection. */
export interface SideListener {
  port: number;
  close(): Promise<void>;
}

/**
 * Starts an HTTP(S) side listener on `host:port` and logs `event=listening listener=NAME`.
 * @throws ServerError LISTEN naming the listener and address when it cannot bind.
 */
export async function listenSide(srv: Server, name: string, host: string, port: number, log: (l: string) => void): Promise<SideListener> {
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'ERROR';
    throw new ServerError('LISTEN', `${name}: cannot listen on ${showAddr(host, port)}: ${code} (${(e as Error).message})`);
  }
  const a = srv.address();
  const bound = typeof a === 'object' && a ? a.port : port;
  log(`event=listening listener=${name} host=${host} port=${bound}`);
  return {
    port: bound,
    close: () => new Promise<void>((r) => {
      srv.closeAllConnections();
      srv.close(() => r());
    }),
  };
}
