/**
 * The TLS front end: node:tls with TLS 1.3 only, one Connection per socket, one reply per
 * request, bounded frames (MAX_FRAME, per-field LIMITS in src/protocol), a timeout per
 * message and per connection, a maximum number of connections, token-bucket rate limits per
 * peer address and per machine, and an `error` reply (then close) for anything malformed.
 * Requests are self-contained (all state is in the store), so a client may reconnect between
 * attest-begin and attest-finish and reach another replica.
 *
 * State directory layout (made by `bootkey server init`, see pki.ts): ca.pem, server.pem,
 * server.key, token-signing.key, master.key, admin.token, bootkey.db (SQLite), policies/
 * (optional named policies NAME.json). The CA's private key is NOT in it (init keeps it in a
 * separate CA directory): the server never needs it, and replicas copy the state directory.
 * @module
 */
import tls from 'node:tls';
import { existsSync, readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { Connection } from '../protocol/connection.ts';
import { ProtocolError } from '../protocol/errors.ts';
import { parseMessage, type Message } from '../protocol/messages.ts';
import { ServerError } from './errors.ts';
import { SqliteStore } from './store-sqlite.ts';
import type { Store } from './store.ts';
import { Vault, loadMasterKey } from './secrets.ts';
import { Service, REQUEST_TYPES, logLine, type RequestContext } from './service.ts';
import { releasePending } from './runtime.ts';
import { RateLimiter, type BucketConfig } from './ratelimit.ts';
import { loadCaBundle } from './ekcert.ts';
import { parseListen, showAddr } from './listen.ts';
import { Metrics, instrumentStore, startMetricsServer } from './metrics.ts';
import { Notifier } from './webhook.ts';

export { parseListen };

export const DEFAULT_LISTEN = '0.0.0.0:7443';
export const DB_FILE = 'bootkey.db';
export const ADMIN_TOKEN_FILE = 'admin.token';
export const TOKEN_SIGNING_KEY_FILE = 'token-signing.key';

export interface ServerOptions {
  stateDir: string;
  /** host:port ([v6]:port); port 0 = ephemeral. Default 0.0.0.0:7443. */
  listen?: string;
  /** The "released" PCR; default 15. */
  releasedPcr?: number;
  /** Attestation nonce lifetime; default 60 000 ms. */
  nonceTtlMs?: number;
  /** Manufacturer EK CA bundle (PEM): enrolment then requires a chaining EK certificate. */
  ekCaFile?: string;
  /** One line per event (key=value); default: none. */
  log?: (line: string) => void;
  /** Per-message receive timeout; default 10 000 ms. */
  messageTimeoutMs?: number;
  /** Whole-connection lifetime; default 30 000 ms. */
  connectionTimeoutMs?: number;
  /** Maximum simultaneous connections; default 128. */
  maxConnections?: number;
  /** Rate limits; defaults: per peer 60 burst / 5 per s, per machine 20 burst / 0.5 per s. */
  rateLimit?: { perPeer?: BucketConfig; perMachine?: BucketConfig };
  /** A store to use instead of STATE/bootkey.db (e.g. PostgreSQL later); closed on close(). */
  store?: Store;
  /** The listen(2) backlog; default 511 (Node's). */
  listenBacklog?: number;
  /** HOST:PORT of the Prometheus listener (plain HTTP, GET /metrics); default none. */
  metricsListen?: string;
  /** HOST:PORT of the web dashboard (HTTPS with the server certificate); default none. */
  dashboardListen?: string;
  /** Runtime failures: webhook URL, HMAC key, delivery attempts, and a command hook (webhook.ts). */
  webhook?: { url?: string; secret?: Buffer; attempts?: number; backoffMs?: number; command?: string };
  /** The version reported in bootkey_build_info. */
  version?: string;
}

export interface RunningServer {
  port: number;
  host: string;
  service: Service;
  metrics: Metrics;
  /** Bound ports of the optional listeners. */
  metricsPort?: number;
  dashboardPort?: number;
  close(): Promise<void>;
}

function readState(dir: string, name: string, what: string): Buffer {
  try {
    return readFileSync(join(dir, name));
  } catch (e) {
    throw new ServerError('CONFIG', `cannot read the ${what} ${join(dir, name)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (run \`bootkey server init --state ${dir}\`)`);
  }
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log ?? (() => undefined);
  const dir = opts.stateDir;
  const key = readState(dir, 'server.key', 'server key');
  const cert = readState(dir, 'server.pem', 'server certificate');
  const adminToken = readState(dir, ADMIN_TOKEN_FILE, 'admin token').toString('utf8').trim();
  if (adminToken.length < 16) throw new ServerError('CONFIG', `${join(dir, ADMIN_TOKEN_FILE)}: the admin token is too short`);
  const vault = new Vault(loadMasterKey(dir));
  let tokenSigningKey;
  try {
    tokenSigningKey = createPrivateKey(readState(dir, TOKEN_SIGNING_KEY_FILE, 'token-signing key'));
  } catch (e) {
    if (e instanceof ServerError) throw e;
    throw new ServerError('CONFIG', `${join(dir, TOKEN_SIGNING_KEY_FILE)}: not a private key (${(e as Error).message})`);
  }
  if (existsSync(join(dir, 'ca.key'))) {
    log(logLine({ event: 'warning', reason: `${join(dir, 'ca.key')}: the CA private key is in the state directory; the server does not need it and replicas copy this directory: move it offline (bootkey server init --state DIR --ca-dir OFFLINE moves it)` }));
  }
  const ekCa = opts.ekCaFile ? loadCaBundle(opts.ekCaFile) : undefined;
  const metrics = new Metrics({ version: opts.version });
  const rawStore = opts.store ?? new SqliteStore(join(dir, DB_FILE));
  await rawStore.migrate();
  const store = instrumentStore(rawStore, metrics);
  const perPeer = new RateLimiter(opts.rateLimit?.perPeer ?? { burst: 60, perSecond: 5 });
  // Charged by the service only after a request passed the cheap checks (see Service.chargeMachine).
  const perMachine = new RateLimiter(opts.rateLimit?.perMachine ?? { burst: 20, perSecond: 0.5 });
  let service: Service;
  try {
    const notifier = new Notifier({ ...opts.webhook, log, onResult: (kind, ok) => metrics.webhooks.inc({ kind, result: ok ? 'ok' : 'failed' }) });
    service = new Service({ store, vault, adminToken, releasedPcr: opts.releasedPcr, nonceTtlMs: opts.nonceTtlMs, ekCa, policiesDir: join(dir, 'policies'), tokenSigningKey, machineLimiter: perMachine, metrics, notifier, log });
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
  const msgTimeout = opts.messageTimeoutMs ?? 10_000;
  const connTimeout = opts.connectionTimeoutMs ?? 30_000;
  /** Open sockets; `busy` while a request is being handled (close() waits for those only). */
  const sockets = new Map<tls.TLSSocket, { busy: boolean }>();
  const active = new Set<Promise<void>>();
  let closing = false;

  // noDelay: each reply is one small frame; with Nagle + delayed ACK a release waited ~45 ms more.
  const srv = tls.createServer({ key, cert, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', handshakeTimeout: msgTimeout, noDelay: true });
  srv.maxConnections = opts.maxConnections ?? 128;

  const serve = async (sock: tls.TLSSocket): Promise<void> => {
    const peer = sock.remoteAddress ?? 'unknown';
    const conn = new Connection(sock);
    const deadline = Date.now() + connTimeout;
    // One context per connection: a chunked runtime report is held here (runtime.ts), never shared.
    const ctx: RequestContext = { peer, runtime: {} };
    const fail = async (code: string, message: string): Promise<void> => {
      if (code !== 'RATE_LIMITED') metrics.refusals.inc({ request: 'connection', code });
      log(logLine({ event: 'connection', result: 'refused', code, peer, reason: message }));
      await conn.send({ t: 'error', code, message: message.slice(0, 4000) }).catch(() => undefined);
    };
    try {
      for (;;) {
        if (closing) return;
        const left = deadline - Date.now();
        if (left <= 0) return await fail('TIMEOUT', `connection open longer than ${connTimeout} ms`);
        let frame: Buffer;
        try {
          frame = await conn.receiveFrame(Math.min(msgTimeout, left));
        } catch (e) {
          if (e instanceof ProtocolError && e.code !== 'CLOSED') return await fail(e.code, e.message);
          return;
        }
        let msg: Message;
        try {
          msg = parseMessage(frame, REQUEST_TYPES);
        } catch (e) {
          frame.fill(0);
          if (e instanceof ProtocolError) return await fail(e.code, e.message);
          return await fail('BAD_MESSAGE', 'malformed message');
        }
        frame.fill(0); // parseMessage copied every byte field
        if (msg.t === 'error') return;
        // By source first; the per-machine budget is charged inside the service, only for
        // requests that passed the cheap checks (an attacker who read a machine id from a LUKS
        // header cannot spend that machine's budget).
        if (!perPeer.take(peer)) {
          metrics.rateLimited.inc({ scope: 'peer' });
          metrics.refusals.inc({ request: msg.t, code: 'RATE_LIMITED' });
          return await fail('RATE_LIMITED', `too many requests from ${peer}; retry later`);
        }
        const st = sockets.get(sock);
        if (st) st.busy = true;
        try {
          const reply = await service.handle(msg, ctx);
          try {
            await conn.send(reply);
          } finally {
            if (reply.t === 'enroll-accepted') reply.serverShare.fill(0);
          }
        } finally {
          if (st) st.busy = false;
        }
      }
    } finally {
      releasePending(ctx.runtime);
      conn.close();
      setTimeout(() => sock.destroy(), 1000).unref();
    }
  };

  srv.on('secureConnection', (sock) => {
    sockets.set(sock, { busy: false });
    metrics.connections.inc();
    metrics.openConnections.inc();
    sock.on('close', () => {
      sockets.delete(sock);
      metrics.openConnections.inc({}, -1);
    });
    sock.on('error', () => undefined);
    const p = serve(sock).catch((e) => log(logLine({ event: 'connection', result: 'error', peer: sock.remoteAddress, error: (e as Error).message })));
    active.add(p);
    void p.finally(() => active.delete(p));
  });
  srv.on('tlsClientError', (e, sock) => {
    log(logLine({ event: 'tls', result: 'refused', peer: sock.remoteAddress, reason: e.message }));
    sock.destroy();
  });
  srv.on('error', (e) => log(logLine({ event: 'server-error', error: e.message })));

  const { host, port } = parseListen(opts.listen ?? DEFAULT_LISTEN);
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, opts.listenBacklog ?? 511, () => {
        srv.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    // Loud and specific: a port already taken must not look like a TLS problem to clients.
    await store.close().catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code ?? 'ERROR';
    log(logLine({ event: 'listen', result: 'failed', host, port, code }));
    throw new ServerError('LISTEN', `cannot listen on ${showAddr(host, port)}: ${code}${code === 'EADDRINUSE' ? ' (the port is already in use by another process)' : ''} (${(e as Error).message})`);
  }
  const addr = srv.address();
  const bound = typeof addr === 'object' && addr ? addr : { port, address: host };
  const extra: { port: number; close(): Promise<void> }[] = [];
  let metricsPort: number | undefined;
  let dashboardPort: number | undefined;
  try {
    if (opts.metricsListen) {
      const m = await startMetricsServer(opts.metricsListen, metrics, store, log);
      extra.push(m);
      metricsPort = m.port;
    }
    if (opts.dashboardListen) {
      const { startDashboard } = await import('./dashboard.ts');
      const d = await startDashboard({ listen: opts.dashboardListen, key, cert, service, adminToken, log });
      extra.push(d);
      dashboardPort = d.port;
    }
  } catch (e) {
    for (const x of extra) await x.close();
    await new Promise<void>((r) => srv.close(() => r()));
    await store.close().catch(() => undefined);
    throw e;
  }
  const gcTimer = setInterval(() => void service.gc().catch(() => undefined), 60_000);
  gcTimer.unref();
  log(logLine({ event: 'listening', host: bound.address, port: bound.port, releasedPcr: service.releasedPcr, ekCa: opts.ekCaFile }));

  return {
    port: bound.port,
    host: bound.address,
    service,
    metrics,
    metricsPort,
    dashboardPort,
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(gcTimer);
      for (const x of extra) await x.close();
      const stopped = new Promise<void>((r) => srv.close(() => r()));
      // Idle connections go now; requests in flight may finish (at most 5 s).
      for (const [s, st] of sockets) if (!st.busy) s.destroy();
      await Promise.race([Promise.allSettled([...active]), new Promise((r) => setTimeout(r, 5000).unref())]);
      for (const s of sockets.keys()) s.destroy();
      await stopped;
      await store.close();
      log(logLine({ event: 'stopped' }));
    },
  };
}
