/**
 * The admin's TLS client: TLS 1.3 to `https://HOST:PORT` with the server's CA pinned (only that
 * CA is trusted), one `admin` request, its `admin-result` (or a ServerError with the server's
 * refusal code).
 * @module
 */
import tls from 'node:tls';
import { isIP } from 'node:net';
import { Connection } from '../protocol/connection.ts';
import type { MessageOf } from '../protocol/messages.ts';
import { ServerError } from './errors.ts';

export interface AdminClientOptions {
  /** https://HOST:PORT, HOST:PORT or [v6]:PORT */
  server: string;
  /** PEM of the CA to pin. */
  ca: Buffer | string;
  adminToken: string;
  timeoutMs?: number;
}

export function parseServerUrl(s: string): { host: string; port: number } {
  const m = /^(?:https:\/\/)?(?:\[([0-9a-fA-F:.]+)\]|([^:/\[\]]+))(?::(\d{1,5}))?\/?$/.exec(s.trim());
  if (!m) throw new ServerError('CONFIG', `server address "${s}": expected https://HOST:PORT`);
  const port = m[3] ? Number(m[3]) : 7443;
  if (port < 1 || port > 65535) throw new ServerError('CONFIG', `server address "${s}": bad port`);
  return { host: m[1] ?? m[2], port };
}

/** Opens a TLS 1.3 connection with the CA pinned. */
export function connectTls(server: string, ca: Buffer | string, timeoutMs = 10_000): Promise<Connection> {
  const { host, port } = parseServerUrl(server);
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, ca, minVersion: 'TLSv1.3', servername: isIP(host) ? undefined : host, rejectUnauthorized: true });
    const t = setTimeout(() => {
      sock.destroy();
      reject(new ServerError('CONNECT', `${host}:${port}: no TLS connection within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('secureConnect', () => {
      clearTimeout(t);
      resolve(new Connection(sock));
    });
    sock.once('error', (e) => {
      clearTimeout(t);
      reject(new ServerError('CONNECT', `${host}:${port}: ${e.message}`));
    });
  });
}

/** Sends one admin operation; returns the parsed JSON result. @throws ServerError (the server's code) */
export async function adminRequest(
  o: AdminClientOptions,
  op: string,
  fields: Omit<Partial<MessageOf<'admin'>>, 't' | 'op' | 'adminToken'> = {},
): Promise<unknown> {
  const conn = await connectTls(o.server, o.ca, o.timeoutMs);
  try {
    await conn.send({ t: 'admin', adminToken: o.adminToken, op, ...fields });
    const r = await conn.receive(['admin-result'], o.timeoutMs ?? 30_000);
    if (r.t === 'error') throw new ServerError(r.code, `server refused: ${r.code}: ${r.message}`, r.failures);
    return JSON.parse(r.json) as unknown;
  } finally {
    conn.close();
    conn.stream.destroy();
  }
}
