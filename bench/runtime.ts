/**
 * `npm run bench:runtime [-- --machines 10000] [--interval 60] [--window 180] [--replicas 2]
 *   [--initial 300] [--growth 2] [--pool 1000] [--first 20000] [--quick] [--sqlite]`
 *
 * Runtime attestation at fleet scale (issue 12 §6): simulated agents (bench/sim: software EK/AK
 * enrolled through the real protocol, genuine quotes, real TLS 1.3, each machine from its own
 * 127.x.y.z) reporting incremental IMA lists to `bootkey server` replicas AS THEY SHIP (the
 * bundle dist/bootkey.js, built by `node scripts/build.mjs` when missing) on one PostgreSQL
 * (scripts/pg.sh, fsync on).
 *
 * Phases:
 *  1. enrol `machines` machines; give each the runtime policy (Keylime JSON: every pool file);
 *  2. warm-up: every machine's first report (its whole list: boot_aggregate + `initial` entries),
 *     closed loop, 32 at a time;
 *  3. steady state, open loop at the fleet's real rate: machine i reports at i/N·interval +
 *     k·interval (+ up to 1 s of jitter) for `window` seconds, each report carrying the entries
 *     appended since its last verified one (0..2·growth new entries, uniform). Measured: the
 *     achieved rate, latency, server CPU (all replicas, /proc) and PostgreSQL CPU per report,
 *     PostgreSQL growth (database size, table sizes, WAL bytes, rows) per report;
 *  4. the first full-list attestation of a `first`-entry list by a new machine on a freshly
 *     started replica (chunks of 1 MiB): wall time and that server's memory (VmHWM/VmRSS before
 *     and after).
 * The last line is one JSON object with the figures.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { initState } from '../src/server/pki.ts';
import { SimMachine, BootImage, enrollAll, createEnrolToken, connect, request, type SimConfig } from './sim/machine.ts';
import { spawnServer, procStats, type ServerProc } from './sim/server-proc.ts';
import { startPg, createDatabase, pgCpuS, type Pg } from './sim/pg.ts';
import { filePool, keylimePolicy, type SimImaList } from './sim/ima.ts';
import { importKeylimePolicy } from '../src/ima/keylime.ts';
import { serializeRuntimePolicy } from '../src/ima/policy.ts';
import { newList, runtimeReport, bootDigest } from './sim/runtime.ts';

const ROOT = resolve(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const has = (f: string) => argv.includes(f);
const val = (f: string, d: number) => {
  const i = argv.indexOf(f);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const QUICK = has('--quick');
const N = val('--machines', QUICK ? 300 : 10_000);
const INTERVAL_S = val('--interval', QUICK ? 10 : 60);
const WINDOW_S = val('--window', QUICK ? 20 : 180);
const REPLICAS = val('--replicas', 2);
const INITIAL = val('--initial', 300);
const GROWTH = val('--growth', 2);
const POOL = val('--pool', 1000);
const FIRST = val('--first', 20_000);
const LOG_FILE = join(ROOT, 'test/data/qemu/uki-sb-on.bin');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const pct = (s: number[], p: number) => (s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN);
const r1 = (v: number) => Math.round(v * 10) / 10;
const r2 = (v: number) => Math.round(v * 100) / 100;

function selfCpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface DbSnap {
  dbBytes: number;
  walLsn: string;
  tables: Record<string, { bytes: number; rows: number }>;
}

async function dbSnap(url: string): Promise<DbSnap> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const size = Number((await c.query('SELECT pg_database_size(current_database()) AS s')).rows[0].s);
    const lsn = String((await c.query('SELECT pg_current_wal_lsn() AS l')).rows[0].l);
    const t = await c.query(`SELECT relname, pg_total_relation_size(relid) AS bytes, n_live_tup AS rows FROM pg_stat_user_tables ORDER BY relname`);
    const tables: DbSnap['tables'] = {};
    for (const r of t.rows) tables[r.relname as string] = { bytes: Number(r.bytes), rows: Number(r.rows) };
    // exact row counts (n_live_tup lags)
    for (const name of Object.keys(tables)) tables[name].rows = Number((await c.query(`SELECT count(*) AS n FROM "${name}"`)).rows[0].n);
    return { dbBytes: size, walLsn: lsn, tables };
  } finally {
    await c.end();
  }
}

async function walDiff(url: string, a: string, b: string): Promise<number> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query('SELECT pg_wal_lsn_diff($1, $2) AS d', [b, a])).rows[0].d);
  } finally {
    await c.end();
  }
}

async function pool<T>(items: T[], conc: number, fn: (x: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(conc, items.length) }, async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i], i);
  }));
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const log = (s: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`);
  const bundle = join(ROOT, 'dist/bootkey.js');
  const src = join(ROOT, 'src');
  const newest = (d: string): number => Math.max(...readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => statSync(join(e.parentPath, e.name)).mtimeMs));
  if (!existsSync(bundle) || statSync(bundle).mtimeMs < newest(src)) {
    log('building dist/bootkey.js (node scripts/build.mjs)');
    execFileSync('node', ['scripts/build.mjs'], { cwd: ROOT, stdio: 'inherit' });
  }
  const started = startPg({ fsync: true, maxConnections: 300 });
  if ('missing' in started) {
    console.log(`skip: ${started.missing} (BOOTKEY_SETUP_PG=1 scripts/setup.sh)`);
    return;
  }
  const pg = started;
  const state = mkdtempSync(join(tmpdir(), 'bootkey-rtbench-'));
  const servers: ServerProc[] = [];
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    for (const s of servers) await s.stop().catch(() => undefined);
    pg.destroy();
    rmSync(state, { recursive: true, force: true });
    rmSync(`${state}-ca`, { recursive: true, force: true });
  };
  // an interrupted run leaves no server, PostgreSQL or state behind
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().then(() => process.exit(130)));
  try {
    await initState(state);
    const ca = readFileSync(join(state, 'ca.pem'));
    const adminToken = readFileSync(join(state, 'admin.token'), 'utf8').trim();
    const url = await createDatabase(pg.url, 'rtbench');
    for (let i = 0; i < REPLICAS; i++) servers.push(await spawnServer({ stateDir: state, store: url }));
    log(`${REPLICAS} replicas (node dist/bootkey.js server) on PostgreSQL; ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    const cfg: SimConfig = { servers: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), ca, backoffMs: 200, maxBackoffMs: 4000, maxAttempts: 12, deadlineMs: 120_000 };
    const admin = { server: `https://127.0.0.1:${servers[0].port}`, ca, adminToken };
    const setPolicy = async (m: SimMachine, si: number): Promise<void> => {
      const c = await connect({ host: '127.0.0.1', port: servers[si].port }, ca, m.address, 30_000);
      try {
        await request(c, { t: 'admin', adminToken, op: 'set-runtime-policy', machine: m.id, runtimePolicy: policy }, ['admin-result'], 60_000);
      } finally {
        c.close();
      }
    };

    // ---- 1. enrolment and the runtime policy ----
    const image = new BootImage(readFileSync(LOG_FILE));
    const machines = Array.from({ length: N }, (_, i) => new SimMachine(i, image));
    const enrolToken = await createEnrolToken(admin, N + 10);
    let te = performance.now();
    const errs = await enrollAll(machines, { ...cfg, enrolToken }, 32);
    if (errs.length) throw new Error(`enrolment failed for ${errs.length}: ${errs.slice(0, 3).join('; ')}`);
    log(`enrolled ${N} machines in ${((performance.now() - te) / 1000).toFixed(0)} s`);
    const files = filePool(POOL);
    // Keylime's JSON, imported into bootkey's format (what an operator moving from Keylime does)
    const policy = serializeRuntimePolicy(importKeylimePolicy(JSON.parse(keylimePolicy(files, [bootDigest(machines[0])]))).policy);
    te = performance.now();
    // one admin request per machine, each from that machine's own loopback address (the server's
    // per-peer rate limit, 5/s, would otherwise pace the set-up), round-robin over the replicas
    await pool(machines, 16, async (m, i) => setPolicy(m, i % servers.length));
    log(`runtime policy (bootkey's format imported from Keylime JSON, ${POOL} files, ${(policy.length / 1024).toFixed(0)} KiB) set for ${N} machines in ${((performance.now() - te) / 1000).toFixed(0)} s`);

    // ---- 2. warm-up: each machine's first (whole-list) report ----
    const lists: SimImaList[] = machines.map((m, i) => newList(m, files, INITIAL, (i * 37) % POOL));
    const lastServer: number[] = machines.map(() => -1);
    let switched = 0;
    const s0 = servers.map((s) => s.stats().cpuS);
    const p0 = pgCpuS(pg);
    te = performance.now();
    const warmLat: number[] = [];
    const bad: string[] = [];
    await pool(machines, 32, async (m, i) => {
      const t = performance.now();
      const o = await runtimeReport(m, lists[i], cfg);
      lastServer[i] = o.server;
      warmLat.push(performance.now() - t);
      if (o.result.state !== 'attesting' || o.result.count !== lists[i].count) bad.push(`machine ${i}: ${o.result.state} count ${o.result.count}/${lists[i].count}: ${o.result.message} ${o.result.failures.slice(0, 2).join('; ')}`);
    });
    const warmS = (performance.now() - te) / 1000;
    const warmCpu = servers.reduce((a, s, k) => a + s.stats().cpuS - s0[k], 0);
    const warmPg = pgCpuS(pg) - p0;
    if (bad.length) throw new Error(`first reports not attesting (${bad.length}): ${bad.slice(0, 3).join(' | ')}`);
    warmLat.sort((a, b) => a - b);
    const warm = { reports: N, entries_each: INITIAL + 1, per_s: r1(N / warmS), p50_ms: r1(pct(warmLat, 50)), p99_ms: r1(pct(warmLat, 99)), server_cpu_ms: r2((warmCpu * 1000) / N), pg_cpu_ms: r2((warmPg * 1000) / N) };
    log(`warm-up (whole lists of ${INITIAL + 1} entries): ${JSON.stringify(warm)}`);

    // ---- 3. steady state: open loop at N / interval reports per second ----
    const snapA = await dbSnap(url);
    const a = servers.map((s) => s.stats().cpuS);
    const pa = pgCpuS(pg);
    const ca0 = selfCpuS();
    const lat: number[] = [];
    const lateStarts: number[] = [];
    let sent = 0;
    let entriesSent = 0;
    let restarts = 0;
    const failures: string[] = [];
    let inflight = 0;
    let maxInflight = 0;
    const tw = performance.now();
    const endAt = tw + WINDOW_S * 1000;
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      jobs.push((async () => {
        for (let k = 0; ; k++) {
          const due = tw + ((i / N) * INTERVAL_S + k * INTERVAL_S) * 1000 + Math.random() * 1000;
          if (due >= endAt) return;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          lateStarts.push(Math.max(0, -wait));
          const m = machines[i];
          lists[i].grow(Math.floor(Math.random() * (2 * GROWTH + 1)));
          const t = performance.now();
          inflight++;
          maxInflight = Math.max(maxInflight, inflight);
          try {
            // report k+1 of machine i goes first to replica (i + k + 1) mod R: the replica that
            // did not store this machine's chain last time continues it
            const o = await runtimeReport(m, lists[i], cfg, undefined, undefined, i + k + 1);
            lat.push(performance.now() - t);
            sent++;
            if (o.server !== lastServer[i]) switched++;
            lastServer[i] = o.server;
            entriesSent += o.sent;
            if (o.result.state === 'restart') restarts++;
            else if (o.result.state !== 'attesting') failures.push(`machine ${i}: ${o.result.state}: ${o.result.message}`);
          } catch (e) {
            failures.push(`machine ${i}: ${(e as Error).message}`);
          } finally {
            inflight--;
          }
        }
      })());
    }
    let lastLog = performance.now();
    while (performance.now() < endAt) {
      await sleep(1000);
      if (performance.now() - lastLog > 30_000) {
        lastLog = performance.now();
        log(`  steady: ${sent} reports, in flight ${inflight}, failures ${failures.length}`);
      }
    }
    await Promise.all(jobs);
    const wallS = (performance.now() - tw) / 1000;
    const cpuS = servers.reduce((acc, s, k) => acc + s.stats().cpuS - a[k], 0);
    const pgS = pgCpuS(pg) - pa;
    const clientS = selfCpuS() - ca0;
    const snapB = await dbSnap(url);
    const wal = await walDiff(url, snapA.walLsn, snapB.walLsn);
    lat.sort((x, y) => x - y);
    lateStarts.sort((x, y) => x - y);
    const tables: Record<string, { rows_per_report: number; bytes_per_report: number }> = {};
    for (const [name, t] of Object.entries(snapB.tables)) {
      const before = snapA.tables[name] ?? { rows: 0, bytes: 0 };
      if (t.rows !== before.rows || t.bytes !== before.bytes) tables[name] = { rows_per_report: r2((t.rows - before.rows) / sent), bytes_per_report: Math.round((t.bytes - before.bytes) / sent) };
    }
    const perReportBytes = (snapB.dbBytes - snapA.dbBytes) / sent;
    const perDay = N * (86400 / INTERVAL_S);
    const steady = {
      machines: N, interval_s: INTERVAL_S, window_s: r1(wallS), target_per_s: r1(N / INTERVAL_S), reports: sent, per_s: r1(sent / wallS),
      entries_per_report: r2(entriesSent / Math.max(1, sent)), restarts, failed: failures.length, reports_on_another_replica_than_the_last: switched,
      p50_ms: r1(pct(lat, 50)), p95_ms: r1(pct(lat, 95)), p99_ms: r1(pct(lat, 99)), max_in_flight: maxInflight, late_start_p99_ms: r1(pct(lateStarts, 99)),
      server_cpu_ms_per_report: r2((cpuS * 1000) / sent), pg_cpu_ms_per_report: r2((pgS * 1000) / sent), client_cpu_ms_per_report: r2((clientS * 1000) / sent),
      server_cores_used: r2(cpuS / wallS), pg_cores_used: r2(pgS / wallS),
      machines_per_server_core_at_60s: Math.floor(60_000 / ((cpuS * 1000) / sent)),
      db_bytes_per_report: Math.round(perReportBytes), wal_bytes_per_report: Math.round(wal / sent), tables,
      db_growth_per_day_mb_at_this_fleet: Math.round((perReportBytes * perDay) / 1048576), wal_per_day_gb_at_this_fleet: r1((wal / sent) * perDay / 1073741824),
      db_size_mb_after: Math.round(snapB.dbBytes / 1048576),
      server_rss_mb: servers.map((s) => Math.round(s.stats().rssMb)), server_peak_rss_mb: servers.map((s) => Math.round(s.stats().peakRssMb)),
    };
    log(`steady state: ${JSON.stringify(steady)}`);
    if (failures.length) log(`  failures (first 5): ${failures.slice(0, 5).join(' | ')}`);

    // ---- 4. the first full-list attestation of a FIRST-entry list, on a fresh replica ----
    const fresh = await spawnServer({ stateDir: state, store: url });
    servers.push(fresh);
    const one: SimConfig = { ...cfg, servers: [{ host: '127.0.0.1', port: fresh.port }] };
    const big = [new SimMachine(N + 1, image), new SimMachine(N + 2, image)];
    const tok2 = await createEnrolToken(admin, 4);
    for (const m of big) await m.enroll({ ...one, enrolToken: tok2 });
    for (const m of big) await setPolicy(m, servers.length - 1);
    // warm the fresh process (JIT, pools) with a small report first
    const small = newList(big[0], files, 10);
    await runtimeReport(big[0], small, one);
    const before = fresh.stats();
    const bigList = newList(big[1], files, FIRST - 1);
    const bytes = bigList.slice(0).length;
    const tb = performance.now();
    const cb = fresh.stats().cpuS;
    const ob = await runtimeReport(big[1], bigList, one);
    const bigMs = performance.now() - tb;
    const after = fresh.stats();
    // and an incremental report right after it (+5 entries)
    bigList.grow(5);
    const ti = performance.now();
    const oi = await runtimeReport(big[1], bigList, one);
    const incMs = performance.now() - ti;
    const first = {
      entries: bigList.count - 5, list_bytes: bytes, chunks: ob.chunks + 1, state: ob.result.state, count: ob.result.count,
      wall_ms: Math.round(bigMs), server_cpu_ms: Math.round((after.cpuS - cb) * 1000),
      server_rss_mb_before: Math.round(before.rssMb), server_rss_mb_after: Math.round(after.rssMb),
      server_peak_rss_mb_before: Math.round(before.peakRssMb), server_peak_rss_mb_after: Math.round(after.peakRssMb),
      next_incremental: { sent: oi.sent, state: oi.result.state, wall_ms: Math.round(incMs) },
    };
    log(`first full list: ${JSON.stringify(first)}`);
    if (ob.result.state !== 'attesting' || ob.result.count !== FIRST) throw new Error(`the ${FIRST}-entry list was not attested: ${ob.result.state} ${ob.result.count}: ${ob.result.message}`);

    console.log(JSON.stringify({ quick: QUICK, replicas: REPLICAS, pool_files: POOL, policy_kib: Math.round(policy.length / 1024), initial_entries: INITIAL + 1, growth_mean: GROWTH, warm_up: warm, steady, first_full_list: first, total_s: Math.round((performance.now() - t0) / 1000), load_after: loadavg().map((x) => r2(x)) }));
  } finally {
    await cleanup();
  }
}

main().catch((e) => {
  console.error(`bench:runtime: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
