/**
 * `bootkey server --workers N`: N worker processes (node:cluster) serve the TLS port; the
 * primary accepts every connection and deals them round-robin (cluster.SCHED_RR, Node's default
 * on Linux; Node 20's net.listen has no SO_REUSEPORT). Each worker runs the whole request path
 * (src/server/server.ts) on its own connection to the one store: SQLite in WAL mode (writers
 * serialised by the file lock, busy_timeout 5 s; every guarantee is one conditional UPDATE or
 * one IMMEDIATE transaction, so it holds across processes as across replicas) or PostgreSQL.
 *
 * The primary serves no TLS: it opens the store first (migrations run once), runs the metrics
 * listener (the workers' counters summed, over IPC), the dashboard (one process: its sessions
 * are in memory), the periodic gc, and restarts a worker that ends (backoff 0.2 s doubling to
 * 30 s while one keeps dying within 10 s of its start; not one that exited 0 after a signal of
 * its own). SIGTERM/SIGINT: the workers close
 * gracefully (requests in flight finish, at most 5 s), then the primary. Every log line of a
 * worker ends with `worker=K` (K = 1..N, kept by its replacement).
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import { ServerError } from './errors.ts';
import { logLine } from './service.ts';
import type { Metrics, MetricsSnapshot } from './metrics.ts';

/** The worker's number (1..N), given in its environment by the primary. */
export const WORKER_ENV = 'BOOTKEY_WORKER';

/** This process is a cluster worker of `bootkey server`: its number, else undefined. */
export function workerNumber(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env[WORKER_ENV]);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

type Msg = { bk: 'ready'; port: number; host: string } | { bk: 'metrics'; id: number; snapshot?: MetricsSnapshot };

/** In a worker, once its server listens: tells the primary, and answers its metrics requests. */
export function announceWorker(srv: { port: number; host: string; metrics: Metrics }): void {
  process.on('message', (m: { bk?: string; id?: number }) => {
    if (m?.bk === 'metrics') process.send?.({ bk: 'metrics', id: m.id ?? 0, snapshot: srv.metrics.snapshot() } satisfies Msg);
  });
  process.send?.({ bk: 'ready', port: srv.port, host: srv.host } satisfies Msg);
}

/** In a worker that is done (stopped, or failed to start): closes the IPC channel so that the process can end with its own exit code. */
export function leaveCluster(): void {
  if (cluster.isWorker && cluster.worker?.isConnected()) cluster.worker.disconnect();
}

export interface ClusterHandle {
  /** The TLS port and address the workers listen on. */
  port: number;
  host: string;
  /** Worker processes now (slot → pid). */
  pids(): Map<number, number>;
  /** The workers' metric snapshots (those that answer within 2 s). */
  snapshots(): Promise<MetricsSnapshot[]>;
  /** SIGTERM to every worker; waits for them (SIGKILL after `graceMs`, default 10 s). */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Forks `workers` processes (this same command line: each sees cluster.isWorker and serves),
 * waits until every one listens. Metrics: bootkey_workers, bootkey_worker_restarts_total.
 * @throws ServerError WORKER when a worker ends before it listens (its own stderr says why)
 */
export async function startCluster(o: { workers: number; log: (line: string) => void; metrics: Metrics; startTimeoutMs?: number }): Promise<ClusterHandle> {
  const { log, metrics } = o;
  const bySlot = new Map<number, Worker>();
  const started = new Map<number, number>();
  const backoff = new Map<number, number>();
  const timers = new Set<NodeJS.Timeout>();
  const pending = new Map<number, (s: MetricsSnapshot | undefined) => void>();
  let seq = 0;
  let stopping = false;
  let startup = true;
  let addr: { port: number; host: string } | undefined;
  const gauge = () => metrics.workers.set({}, [...bySlot.values()].filter((w) => !w.isDead()).length);

  let failStartup: (e: Error) => void = () => undefined;
  const readySlots = new Set<number>();
  let allReady: () => void = () => undefined;

  const fork = (slot: number): void => {
    const w = cluster.fork({ [WORKER_ENV]: String(slot) });
    bySlot.set(slot, w);
    started.set(slot, Date.now());
    log(logLine({ event: 'worker-started', worker: slot, pid: w.process.pid }));
    w.on('message', (m: Msg) => {
      if (m?.bk === 'ready') {
        addr ??= { port: m.port, host: m.host };
        readySlots.add(slot);
        gauge();
        if (startup && readySlots.size === o.workers) allReady();
      } else if (m?.bk === 'metrics') {
        pending.get(m.id)?.(m.snapshot);
        pending.delete(m.id);
      }
    });
    w.on('exit', (code, signal) => {
      if (bySlot.get(slot) === w) bySlot.delete(slot);
      readySlots.delete(slot);
      gauge();
      if (stopping) return;
      if (startup) {
        failStartup(new ServerError('WORKER', `worker ${slot} (pid ${w.process.pid}) ended before it listened (${signal ?? `exit ${code}`}); its error is above`));
        return;
      }
      if (code === 0 && !signal) {
        // A worker exits 0 only after SIGTERM/SIGINT sent to it alone (systemd sends SIGTERM to
        // the whole control group at a stop, the primary's own may come a moment later).
        log(logLine({ event: 'worker-exit', worker: slot, pid: w.process.pid, code: 0, restart: 'no', reason: 'stopped by a signal sent to the worker' }));
        return;
      }
      // Dying again soon after a start: back off (a broken store, a full disk), else at once.
      const lived = Date.now() - (started.get(slot) ?? 0);
      const delay = lived < 10_000 ? Math.min(30_000, (backoff.get(slot) ?? 100) * 2) : 200;
      backoff.set(slot, delay);
      metrics.workerRestarts.inc();
      log(logLine({ event: 'worker-exit', worker: slot, pid: w.process.pid, code: code ?? undefined, signal: signal ?? undefined, restartInMs: delay }));
      const t = setTimeout(() => {
        timers.delete(t);
        if (!stopping) fork(slot);
      }, delay);
      timers.add(t);
    });
  };

  const stop = async (graceMs = 10_000): Promise<void> => {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    const live = [...bySlot.values()].filter((w) => !w.isDead());
    const exits = live.map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))));
    for (const w of live) w.process.kill('SIGTERM');
    const kill = setTimeout(() => {
      for (const w of live) if (!w.isDead()) w.process.kill('SIGKILL');
    }, graceMs);
    await Promise.all(exits);
    clearTimeout(kill);
  };

  try {
    await new Promise<void>((resolve, reject) => {
      failStartup = reject;
      allReady = resolve;
      const t = setTimeout(() => reject(new ServerError('WORKER', `the workers did not all listen within ${(o.startTimeoutMs ?? 60_000) / 1000} s`)), o.startTimeoutMs ?? 60_000);
      t.unref();
      for (let k = 1; k <= o.workers; k++) fork(k);
    });
  } catch (e) {
    await stop(2000);
    throw e;
  }
  startup = false;

  return {
    port: addr!.port,
    host: addr!.host,
    pids: () => new Map([...bySlot].filter(([, w]) => !w.isDead()).map(([k, w]) => [k, w.process.pid!])),
    async snapshots() {
      const live = [...bySlot.values()].filter((w) => !w.isDead() && w.isConnected());
      return (await Promise.all(live.map((w) => new Promise<MetricsSnapshot | undefined>((resolve) => {
        const id = ++seq;
        const t = setTimeout(() => {
          pending.delete(id);
          resolve(undefined);
        }, 2000);
        pending.set(id, (s) => {
          clearTimeout(t);
          resolve(s);
        });
        try {
          w.send({ bk: 'metrics', id });
        } catch {
          pending.delete(id);
          clearTimeout(t);
          resolve(undefined);
        }
      })))).filter((s): s is MetricsSnapshot => s !== undefined);
    },
    stop,
  };
}
