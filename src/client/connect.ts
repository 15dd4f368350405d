/**
 * The client side of the transport: TLS 1.3 to the key-release servers with the CA pinned from
 * the token (no system trust store), every configured server tried in parallel (the first
 * completed handshake wins, the others are closed), bounded retries with exponential backoff
 * and jitter, and one total deadline over everything.
 *
 * A flow (`fn`) runs over one connection. A transport failure (connect refused, handshake or
 * receive timeout, connection closed) makes the whole flow start again on a fresh connection;
 * a refusal by a server (an `error` message) is final and is never retried on another server,
 * because the servers share one database and the refusal is their answer.
 *
 * Errors: {@link ClientError} with codes `UNREACHABLE` (no server answered before the deadline
 * or within the attempts; the CLI exits 3), `REFUSED` (the server's `code`, `message`,
 * `failures`), `BAD_URL`, `PROTOCOL` (the server sent something unexpected).
 * @module
 */
import tls from 'node:tls';
import net from 'node:net';
import { BootkeyError } from '../errors.ts';
import { Connection, ProtocolError } from '../protocol/index.ts';
import type { Message, MessageOf, MessageType } from '../protocol/index.ts';

export class ClientError extends BootkeyError {
  readonly layer = 'client';
  /** For REFUSED: the server's reason code (e.g. NONCE, POLICY, REVOKED). */
  readonly serverCode?: string;
  /** For REFUSED: the server's list of failed checks (policy reasons). */
  readonly failures?: string[];
  /** The server URL the error came from. */
  readonly server?: string;
  constructor(code: string, message: string, extra: { serverCode?: string; failures?: string[]; server?: string } = {}) {
    super(code, message);
    this.serverCode = extra.serverCode;
    this.failures = extra.failures;
    this.server = extra.server;
  }
}

export interface ServerUrl {
  url: string;
  host: string;
  port: number;
}

/** Parses `https://HOST:PORT` (IPv6 in brackets; port default 8443). @throws ClientError BAD_URL */
export function parseServerUrl(url: string): ServerUrl {
  const m = /^https:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?\/?$/.exec(url);
  if (!m) throw new ClientError('BAD_URL', `server ${JSON.stringify(url)} is not https://HOST:PORT`);
  const port = m[2] ? Number(m[2]) : 8443;
  if (port < 1 || port > 65535) throw new ClientError('BAD_URL', `server ${url}: bad port`);
  return { url, host: m[1].replace(/^\[|\]$/g, ''), port };
}

export interface ClientOptions {
  servers: string[];
  /** The pinned CA certificate (PEM). */
  ca: string | Buffer;
  /** Total time for everything, from the call. Default 60 s. */
  deadlineMs?: number;
  /** Per-connection handshake timeout. Default 5 s. */
  connectTimeoutMs?: number;
  /** Per-message receive timeout. Default 30 s. */
  receiveTimeoutMs?: number;
  /** Attempts (each: connect to every server in parallel, then the flow). Default 6. */
  maxAttempts?: number;
  /** First backoff; doubles each attempt up to maxBackoffMs. Default 250 ms / 4 s. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Leave the connection open after `fn` succeeds (the caller closes it); default: close. */
  keepOpen?: boolean;
  /** Progress lines (never secrets). */
  log?: (line: string) => void;
}

/** One connection to one server, with request/response helpers that turn `error` into a refusal. */
export class ServerSession {
  constructor(readonly conn: Connection, readonly server: string, private receiveTimeoutMs: () => number) {}

  send(m: Message): Promise<void> {
    return this.conn.send(m);
  }

  /** Receives one message of the expected types; an `error` becomes ClientError REFUSED. */
  async receive<T extends MessageType>(expect: readonly T[]): Promise<MessageOf<T>> {
    const m = await this.conn.receive(expect, this.receiveTimeoutMs());
    if (m.t === 'error' && !(expect as readonly string[]).includes('error')) {
      const e = m as MessageOf<'error'>;
      throw new ClientError('REFUSED', `${e.code}: ${e.message}`, { serverCode: e.code, failures: e.failures, server: this.server });
    }
    return m as MessageOf<T>;
  }

  async request<T extends MessageType>(m: Message, expect: readonly T[]): Promise<MessageOf<T>> {
    await this.send(m);
    return this.receive(expect);
  }

  close(): void {
    this.conn.close();
  }
}

/** TLS 1.3 handshake with the pinned CA; resolves with the socket or rejects within timeoutMs. */
export function connectTls(s: ServerUrl, ca: string | Buffer, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: s.host,
      port: s.port,
      ca: [ca],
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      servername: net.isIP(s.host) ? undefined : s.host,
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ClientError('UNREACHABLE', `${s.url}: no TLS handshake within ${timeoutMs} ms`, { server: s.url }));
    }, timeoutMs);
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new ClientError('UNREACHABLE', `${s.url}: ${e.code ?? ''} ${e.message}`.replace(/\s+/g, ' '), { server: s.url }));
    });
  });
}

/** Connects to every server in parallel; the first handshake wins, the others are closed. */
async function connectFirst(urls: ServerUrl[], ca: string | Buffer, timeoutMs: number): Promise<{ sock: tls.TLSSocket; url: string }> {
  let won = false;
  const errors: string[] = [];
  return new Promise((resolve, reject) => {
    let pending = urls.length;
    for (const u of urls) {
      connectTls(u, ca, timeoutMs).then(
        (sock) => {
          if (won) {
            sock.destroy();
            return;
          }
          won = true;
          resolve({ sock, url: u.url });
        },
        (e: Error) => {
          errors.push(e.message);
          if (--pending === 0 && !won) reject(new ClientError('UNREACHABLE', errors.join('; ')));
        },
      );
    }
  });
}

/**
 * Whether a failure is worth another attempt (transport trouble, not a verdict). A server's
 * TIMEOUT is one: under a storm a loaded client may miss the server's message timeout, and the
 * flow starts again with a fresh nonce (issue 14: the plain storm lost machines to it).
 */
export function isTransient(e: unknown): boolean {
  if (e instanceof ClientError) return e.code === 'UNREACHABLE' || (e.code === 'REFUSED' && (e.serverCode === 'BUSY' || e.serverCode === 'INTERNAL' || e.serverCode === 'UNAVAILABLE' || e.serverCode === 'TIMEOUT'));
  if (e instanceof ProtocolError) return e.code === 'CLOSED' || e.code === 'TIMEOUT';
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNREFUSED' || code === 'ETIMEDOUT';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` over a connection to one of the servers, retrying transport failures until the
 * deadline or the attempt limit.
 * @throws ClientError UNREACHABLE when no attempt got through; whatever `fn` throws otherwise
 *   (REFUSED for a server's refusal).
 */
export async function withServer<T>(o: ClientOptions, fn: (s: ServerSession) => Promise<T>): Promise<T> {
  if (o.servers.length === 0) throw new ClientError('BAD_URL', 'no server configured');
  const urls = o.servers.map(parseServerUrl);
  const deadline = Date.now() + (o.deadlineMs ?? 60_000);
  const maxAttempts = o.maxAttempts ?? 6;
  let backoff = o.backoffMs ?? 250;
  const left = (): number => Math.max(0, deadline - Date.now());
  let last: unknown;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (left() <= 0) break;
    let session: ServerSession | undefined;
    try {
      const { sock, url } = await connectFirst(urls, o.ca, Math.min(o.connectTimeoutMs ?? 5000, left()));
      o.log?.(`connected to ${url} (TLS 1.3, pinned CA)`);
      session = new ServerSession(new Connection(sock), url, () => Math.max(1, Math.min(o.receiveTimeoutMs ?? 30_000, left())));
      const r = await fn(session);
      if (!o.keepOpen) session.close();
      return r;
    } catch (e) {
      session?.conn.stream.destroy();
      if (!isTransient(e)) throw e;
      last = e;
      o.log?.(`attempt ${attempt} failed: ${(e as Error).message}`);
    }
    const wait = Math.min(backoff * (0.75 + Math.random() * 0.5), left());
    backoff = Math.min(backoff * 2, o.maxBackoffMs ?? 4000);
    if (attempt < maxAttempts && wait > 0) await sleep(wait);
  }
  // a server that answered (BUSY, INTERNAL) was reachable: its last answer is the outcome
  if (last instanceof ClientError && last.code === 'REFUSED') throw last;
  const why = last instanceof Error ? `: ${last.message}` : '';
  throw new ClientError('UNREACHABLE', `no key-release server reachable before the deadline (${o.servers.join(', ')})${why}`);
}
