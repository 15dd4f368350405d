/**
 * Listener addresses: `HOST:PORT` or `[IPv6]:PORT` (port 0 = ephemeral). Shared by the TLS
 * listener, the metrics and dashboard listeners and the configuration file's checks.
 * @module
 */
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
