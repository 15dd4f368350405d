/**
 * Prometheus metrics in the text exposition format (version 0.0.4), written by hand: counters,
 * gauges and histograms with bounded label sets are ~150 lines, so the server takes no
 * dependency for them (prom-client would add itself and its deps to the single executable, and
 * its default process collectors, for the same output). `promtool check metrics` checks the
 * output in test/server/metrics.test.ts.
 *
 * Served on its own plain-HTTP listener (`metrics = 127.0.0.1:9464`, GET /metrics only): it
 * carries no secret and no machine id, only counts; bind it to loopback or a monitoring network.
 * @module
 */
import http from 'node:http';
import type { Store } from './store.ts';
import { parseListen, listenSide } from './listen.ts';

type Labels = Record<string, string>;

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}
function labelText(l: Labels): string {
  let out = '';
  for (const k in l) {
    const v = l[k];
    out += `${out ? ',' : '{'}${k}="${/[\\\n"]/.test(v) ? esc(v) : v}"`;
  }
  return out ? out + '}' : '';
}
function fmt(n: number): string {
  return Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN';
}

/** At most this many label sets per metric: a flood of distinct codes cannot grow memory. */
const MAX_SERIES = 256;

class Family {
  readonly series = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge') {}
  private get(l: Labels) {
    const k = labelText(l);
    let s = this.series.get(k);
    if (!s) {
      if (this.series.size >= MAX_SERIES) return undefined;
      s = { labels: l, value: 0 };
      this.series.set(k, s);
    }
    return s;
  }
  inc(l: Labels = {}, by = 1): void {
    const s = this.get(l);
    if (s) s.value += by;
  }
  set(l: Labels, v: number): void {
    const s = this.get(l);
    if (s) s.value = v;
  }
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`);
    for (const s of this.series.values()) out.push(`${this.name}${labelText(s.labels)} ${fmt(s.value)}`);
  }
}

class Histogram {
  readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}
  /** The series of these labels, made on first use; undefined past MAX_SERIES. */
  private seriesOf(l: Labels): { labels: Labels; counts: number[]; sum: number; count: number } | undefined {
    const k = labelText(l);
    let s = this.series.get(k);
    if (!s) {
      if (this.series.size >= MAX_SERIES) return undefined;
      s = { labels: l, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    return s;
  }
  /** Adds pre-counted observations (a worker's, see Metrics.absorb). */
  add(l: Labels, counts: number[], sum: number, count: number): void {
    const s = this.seriesOf(l);
    if (!s) return;
    for (let i = 0; i < counts.length; i++) s.counts[i] += counts[i];
    s.sum += sum;
    s.count += count;
  }
  observe(l: Labels, v: number): void {
    const s = this.seriesOf(l);
    if (!s) return;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) s.counts[i]++;
    s.sum += v;
    s.count++;
  }
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${labelText({ ...s.labels, le: fmt(b) })} ${s.counts[i]}`));
      out.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${s.sum}`, `${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
  }
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** What a cluster worker sends its primary for the metrics page. */
export interface MetricsSnapshot {
  families: Record<string, { labels: Labels; value: number }[]>;
  histograms: Record<string, { labels: Labels; counts: number[]; sum: number; count: number }[]>;
}

/** The store's machine counts, as gauges (cached: at most one query per `cacheMs`). */
export interface MachineStats {
  active: number;
  pending: number;
  revoked: number;
  /** Machines whose last attestation was refused. */
  failed: number;
}

export class Metrics {
  readonly releases = new Family('bootkey_releases_total', 'Keys released after a successful attestation.', 'counter');
  readonly refusals = new Family('bootkey_refusals_total', 'Requests refused, by request type and refusal code (docs/SERVER.md).', 'counter');
  readonly verification = new Histogram('bootkey_verification_seconds', 'Time to verify an attest-finish request (quote, log, policy, blob), released or refused.', LATENCY_BUCKETS);
  readonly storeLatency = new Histogram('bootkey_store_seconds', 'Latency of store operations, by operation.', STORE_BUCKETS);
  readonly storeErrors = new Family('bootkey_store_errors_total', 'Store operations that failed, by operation.', 'counter');
  readonly openConnections = new Family('bootkey_open_connections', 'TLS connections open now.', 'gauge');
  readonly connections = new Family('bootkey_connections_total', 'TLS connections accepted.', 'counter');
  readonly rateLimited = new Family('bootkey_rate_limited_total', 'Requests refused RATE_LIMITED, by bucket (peer address or machine).', 'counter');
  readonly machines = new Family('bootkey_machines', 'Machines in the store by state (cached).', 'gauge');
  readonly failedMachines = new Family('bootkey_machines_failed', 'Machines whose last attestation was refused (cached).', 'gauge');
  readonly runtimeReports = new Family('bootkey_runtime_reports_total', 'Runtime (IMA) reports verified, by result (attesting, failed, restart).', 'counter');
  readonly runtimeEntries = new Family('bootkey_runtime_entries_total', 'IMA entries bound to a quote and checked against a runtime policy.', 'counter');
  readonly runtimeVerification = new Histogram('bootkey_runtime_verification_seconds', 'Time to verify a runtime-report (quote, IMA replay, runtime policy).', LATENCY_BUCKETS);
  readonly webhooks = new Family('bootkey_webhooks_total', 'Webhook deliveries, by result (ok, failed after retries).', 'counter');
  readonly info = new Family('bootkey_build_info', 'Always 1; the bootkey version as a label.', 'gauge');
  /** Set by the cluster primary only (rendered when set). */
  readonly workers = new Family('bootkey_workers', 'Worker processes running (bootkey server --workers); the other series sum all of them.', 'gauge');
  readonly workerRestarts = new Family('bootkey_worker_restarts_total', 'Worker processes that ended unexpectedly and were started again.', 'counter');
  private cached?: { at: number; stats: MachineStats };
  private statsInFlight?: Promise<void>;

  constructor(private readonly o: { version?: string; cacheMs?: number; now?: () => number } = {}) {
    this.info.set({ version: o.version ?? 'unknown' }, 1);
    this.openConnections.set({}, 0);
    this.connections.inc({}, 0);
    this.releases.inc({}, 0);
    for (const scope of ['peer', 'machine']) this.rateLimited.inc({ scope }, 0);
  }

  refusal(request: string, code: string): void {
    this.refusals.inc({ request, code });
    if (code === 'RATE_LIMITED' && request !== 'connection') this.rateLimited.inc({ scope: 'machine' });
  }

  /** Refreshes the machine gauges from the store when the cache is older than cacheMs (default 30 s). */
  async refreshMachines(store: Pick<Store, 'machineStats'>): Promise<void> {
    const now = (this.o.now ?? Date.now)();
    if (this.cached && now - this.cached.at < (this.o.cacheMs ?? 30_000)) return;
    this.statsInFlight ??= (async () => {
      try {
        const s = await store.machineStats();
        this.cached = { at: now, stats: s };
        for (const st of ['active', 'pending', 'revoked'] as const) this.machines.set({ state: st }, s[st]);
        this.failedMachines.set({}, s.failed);
      } finally {
        this.statsInFlight = undefined;
      }
    })();
    await this.statsInFlight;
  }

  /** The counters, gauges and histograms of this process, as plain data (sent by a cluster worker to the primary). */
  snapshot(): MetricsSnapshot {
    const fams: MetricsSnapshot['families'] = {};
    for (const f of this.perProcess()) fams[f.name] = [...f.series.values()].map((x) => ({ labels: x.labels, value: x.value }));
    const hists: MetricsSnapshot['histograms'] = {};
    for (const h of [this.verification, this.storeLatency]) hists[h.name] = [...h.series.values()].map((x) => ({ labels: x.labels, counts: [...x.counts], sum: x.sum, count: x.count }));
    return { families: fams, histograms: hists };
  }

  /** Adds a worker's snapshot to this process's series (sums: counters, open connections, histogram buckets). */
  absorb(s: MetricsSnapshot): void {
    for (const f of this.perProcess()) for (const x of s.families[f.name] ?? []) f.inc(x.labels, x.value);
    for (const h of [this.verification, this.storeLatency]) {
      for (const x of s.histograms[h.name] ?? []) {
        if (x.counts.length !== h.buckets.length) continue;
        h.add(x.labels, x.counts, x.sum, x.count);
      }
    }
  }

  /** The families each process counts for itself (not the store's machine gauges, not build info). */
  private perProcess(): Family[] {
    return [this.releases, this.refusals, this.storeErrors, this.openConnections, this.connections, this.rateLimited];
  }

  render(): string {
    const out: string[] = [];
    for (const f of [this.info, this.releases, this.refusals, this.verification, this.runtimeReports, this.runtimeEntries, this.runtimeVerification, this.webhooks, this.storeLatency, this.storeErrors, this.openConnections, this.connections, this.rateLimited, this.machines, this.failedMachines]) f.render(out);
    for (const f of [this.workers, this.workerRestarts]) if (f.series.size) f.render(out);
    return out.join('\n') + '\n';
  }

  /** This process's page with the workers' snapshots added in (the store gauges and build info are this process's). */
  renderMerged(snaps: MetricsSnapshot[]): string {
    const agg = new Metrics(this.o);
    agg.absorb(this.snapshot());
    for (const s of snaps) agg.absorb(s);
    for (const [mine, theirs] of [[this.machines, agg.machines], [this.failedMachines, agg.failedMachines], [this.workers, agg.workers], [this.workerRestarts, agg.workerRestarts]] as const) {
      for (const x of mine.series.values()) theirs.set(x.labels, x.value);
    }
    return agg.render();
  }
}

const STORE_METHODS_TIMED = new Set(['getMachine', 'listMachines', 'machinesByEkName', 'setMachineState', 'setPolicy', 'setShare', 'recordResult', 'deleteMachine', 'gc',
  'putNonce', 'consumeNonce', 'putEnrollment', 'getEnrollment', 'finishEnrollment', 'commitEnrollment', 'abortEnrollment', 'putEnrolToken', 'getEnrolToken',
  'listEnrolTokens', 'useEnrolToken', 'revokeEnrolToken', 'getNamedPolicy', 'putNamedPolicy', 'audit', 'queryAudit', 'machineStats', 'putRefusedBoot', 'getRefusedBoot', 'createMachine', 'getRuntime', 'listRuntime', 'saveRuntime', 'putRuntimePolicy', 'getRuntimePolicy']);

/** The same store, with the latency of each operation observed in `m` (the op name is the label). */
export function instrumentStore(store: Store, m: Metrics): Store {
  // one wrapper per method, made at its first use (not a new closure at every call)
  const wrapped = new Map<string | symbol, { of: unknown; fn: unknown }>();
  return new Proxy(store, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv);
      if (typeof v !== 'function') return v;
      const w = wrapped.get(prop);
      if (w && w.of === v) return w.fn;
      const fn = typeof prop !== 'string' || !STORE_METHODS_TIMED.has(prop) ? v.bind(target) : timed(target, prop, v as (...a: unknown[]) => Promise<unknown>);
      wrapped.set(prop, { of: v, fn });
      return fn;
    },
  });
  function timed(target: Store, prop: string, v: (...a: unknown[]) => Promise<unknown>) {
    return async (...args: unknown[]) => {
      const t0 = process.hrtime.bigint();
      try {
        return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      } catch (e) {
        m.storeErrors.inc({ op: prop });
        throw e;
      } finally {
        m.storeLatency.observe({ op: prop }, Number(process.hrtime.bigint() - t0) / 1e9);
      }
    };
  }
}

/** Starts the plain-HTTP metrics listener: GET /metrics, nothing else. */
export async function startMetricsServer(listen: string, m: Metrics, store: Store, log: (l: string) => void, render?: () => Promise<string>): Promise<{ port: number; close(): Promise<void> }> {
  const { host, port } = parseListen(listen);
  const srv = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics\n');
      return;
    }
    m.refreshMachines(store).catch((e) => log(`event=metrics-error error=${JSON.stringify((e as Error).message)}`))
      .then(() => (render ? render() : m.render()))
      .then((text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        (e) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${(e as Error).message}\n`));
  });
  srv.headersTimeout = 10_000;
  srv.requestTimeout = 10_000;
  srv.maxConnections = 16;
  return listenSide(srv, 'metrics', host, port, log);
}
