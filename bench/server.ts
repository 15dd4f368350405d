/**
 * `npm run bench:server [-- --quick] [--levels 1,16,256,1024] [--no-tang] [--no-pg] [--server-nodelay]
 *    [--server bundle|sea|tsx] [--cpu-prof DIR] [--no-floor] [--per-level N]`
 *
 * The servers run as the product ships: the bundle `node dist/bootkey.js` (default; rebuilt when
 * older than src/), or the single executable (`--server sea`); `--server tsx` runs the sources
 * through the tsx loader, only to compare. `--cpu-prof DIR` profiles the SQLite server (node
 * --cpu-prof) and writes DIR/windows.json (the monotonic time window of each level) for
 * bench/profile.ts. The floor (bench/floor.ts: the same operations timed alone) is measured first
 * unless `--no-floor`.
 *
 * Boot-time key releases per second against real `bootkey server` child processes (the CLI,
 * TLS 1.3), driven by simulated machines (bench/sim: software EK/AK enrolled through the real
 * protocol, genuine quotes over a replayed QEMU event log, the log sent each time, a new
 * connection per release, each machine from its own 127.x.y.z address). Per concurrency level:
 * releases/s, latency p50/p95/p99 of one release (attest-begin + attest-finish, TLS handshake
 * included, retries included), server CPU ms per release and peak RSS (from /proc), for SQLite,
 * PostgreSQL with 1 replica and with 2 replicas (the client round-robins). Side by side: Tang
 * (tangd under socat, as its documentation shows) with clevis's McCallum-Relyea recovery
 * (POST /rec, new connection per request) at the same concurrency levels.
 *
 * The last line is one JSON object (figures at the highest concurrency level): SQLite at the
 * top level, PostgreSQL (1 replica) under `postgres`, 2 replicas under `postgres_2_replicas`.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { initState } from '../src/server/pki.ts';
import { SimMachine, BootImage, enrollAll, createEnrolToken, type SimConfig, type FlowStats } from './sim/machine.ts';
import { spawnServer, ensureBundle, type ServerProc, type ServerKind } from './sim/server-proc.ts';
import { measureFloor, type Floor } from './floor.ts';
import { startPg, createDatabase, type Pg } from './sim/pg.ts';
import { startTang, provision, recover, tangAvailable, type TangBinding } from './sim/tang.ts';

const argv = process.argv.slice(2);
const has = (f: string) => argv.includes(f);
const val = (f: string) => {
  const i = argv.indexOf(f);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = has('--quick');
const LEVELS = (val('--levels') ?? '1,16,256,1024').split(',').map(Number);
/** Releases per level: enough for a stable rate, bounded so that a run stays short. */
const PER_LEVEL = val('--per-level') ? Number(val('--per-level')) : undefined;
const perLevel = (c: number): number => PER_LEVEL ?? (QUICK ? Math.max(20, Math.min(c, 1024)) : Math.max(300, Math.min(8 * c, 6000)));
const POOL = QUICK ? 256 : 2048;
/** --server-nodelay: preload bench/sim/nodelay-preload.mjs into the servers (TCP_NODELAY; see docs/SCALE.md). */
const PRELOAD = has('--server-nodelay') ? [new URL('./sim/nodelay-preload.mjs', import.meta.url).href] : [];
const LOG_FILE = new URL('../test/data/qemu/uki-sb-on.bin', import.meta.url);
/** How the servers run (bench/sim/server-proc.ts): the bundle unless --server sea|tsx. */
const SERVER_KIND = (val('--server') ?? 'bundle') as ServerKind;
if (!['bundle', 'sea', 'tsx'].includes(SERVER_KIND)) throw new Error(`--server ${SERVER_KIND}: bundle, sea or tsx`);
const CPU_PROF = val('--cpu-prof');
/** Monotonic time windows (µs, the clock of V8's profiles) of each SQLite level, for bench/profile.ts. */
const windows: { system: string; concurrency: number; startUs: number; endUs: number; releases: number; cpuMsPerRelease: number }[] = [];
const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

interface LevelResult {
  system: string;
  concurrency: number;
  n: number;
  ok: number;
  failed: number;
  retries: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  cpuMsPerRelease?: number;
  dbCpuMsPerRelease?: number;
  clientCpuMsPerRelease: number;
  peakRssMb?: number;
}

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Runs `n` operations with `c` workers; returns per-operation latencies (ms) and failures. */
async function load(c: number, n: number, op: (i: number) => Promise<number>): Promise<{ lat: number[]; failed: string[]; wallS: number; retries: number }> {
  const lat: number[] = [];
  const failed: string[] = [];
  let retries = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(c, n) }, async () => {
    for (let i = next++; i < n; i = next++) {
      const s = performance.now();
      try {
        retries += await op(i);
        lat.push(performance.now() - s);
      } catch (e) {
        failed.push((e as Error).message);
      }
    }
  }));
  return { lat: lat.sort((a, b) => a - b), failed, wallS: (performance.now() - t0) / 1000, retries };
}

/** CPU seconds of every process of a PostgreSQL cluster (postmaster and its children). */
function pgCpuS(pg: Pg | undefined): number {
  if (!pg) return 0;
  let pid: number;
  try {
    pid = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return 0;
  }
  let total = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(p) === pid || Number(f[1]) === pid) total += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // gone
    }
  }
  return total;
}

async function benchBootkey(system: string, servers: ServerProc[], machines: SimMachine[], ca: Buffer, pg?: Pg): Promise<LevelResult[]> {
  const cfg: SimConfig = { servers: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), ca, backoffMs: 100, maxBackoffMs: 2000, maxAttempts: 20, deadlineMs: 120_000 };
  const out: LevelResult[] = [];
  let cursor = 0;
  for (const c of LEVELS) {
    const n = perLevel(c);
    const cpu0 = servers.reduce((a, s) => a + s.stats().cpuS, 0);
    const db0 = pgCpuS(pg);
    const cl0 = process.cpuUsage();
    let peak = 0;
    const sampler = setInterval(() => {
      for (const s of servers) peak = Math.max(peak, s.stats().rssMb);
    }, 100);
    const w0 = monoUs();
    const r = await load(c, n, async (i) => {
      const m = machines[(cursor + i) % machines.length];
      m.reboot();
      const st: FlowStats = { attempts: 0, path: [] };
      await m.release(cfg, st, cursor + i);
      return st.attempts - 1;
    });
    clearInterval(sampler);
    cursor += n;
    const cpu = servers.reduce((a, s) => a + s.stats().cpuS, 0) - cpu0;
    const db = pgCpuS(pg) - db0;
    const cl = process.cpuUsage(cl0);
    for (const s of servers) peak = Math.max(peak, s.stats().peakRssMb);
    const ok = r.lat.length;
    out.push({
      system, concurrency: c, n, ok, failed: r.failed.length, retries: r.retries, rps: ok / r.wallS,
      p50: pct(r.lat, 50), p95: pct(r.lat, 95), p99: pct(r.lat, 99),
      cpuMsPerRelease: (cpu * 1000) / Math.max(1, ok), dbCpuMsPerRelease: pg ? (db * 1000) / Math.max(1, ok) : undefined,
      clientCpuMsPerRelease: (cl.user + cl.system) / 1000 / Math.max(1, ok), peakRssMb: peak,
    });
    windows.push({ system, concurrency: c, startUs: w0, endUs: monoUs(), releases: ok, cpuMsPerRelease: (cpu * 1000) / Math.max(1, ok) });
    if (r.failed.length) process.stderr.write(`${system} c=${c}: ${r.failed.length} failed, e.g. ${r.failed[0]}\n`);
    process.stderr.write(`  ${system} c=${c}: ${fmt(out[out.length - 1].rps)}/s p99 ${fmt(out[out.length - 1].p99)} ms\n`);
  }
  return out;
}

async function benchTang(): Promise<LevelResult[]> {
  const t = await startTang();
  try {
    const bindings: TangBinding[] = [];
    for (let i = 0; i < 8; i++) bindings.push(await provision(t.port));
    const out: LevelResult[] = [];
    for (const c of LEVELS) {
      const n = perLevel(c);
      const cpu0 = tangCpuS(t.pid);
      const cl0 = process.cpuUsage();
      const r = await load(c, n, async (i) => {
        let backoff = 100;
        for (let attempt = 0; ; attempt++) {
          try {
            await recover(t.port, bindings[i % bindings.length]);
            return attempt;
          } catch (e) {
            const code = (e as { code?: string }).code;
            if (code === 'WRONG_KEY' || code === 'HTTP' || attempt >= 19) throw e;
            await new Promise((res) => setTimeout(res, backoff * (0.75 + Math.random() * 0.5)));
            backoff = Math.min(backoff * 2, 2000);
          }
        }
      });
      const cpu = tangCpuS(t.pid) - cpu0;
      const cl = process.cpuUsage(cl0);
      const ok = r.lat.length;
      out.push({
        system: 'tang', concurrency: c, n, ok, failed: r.failed.length, retries: r.retries, rps: ok / r.wallS,
        p50: pct(r.lat, 50), p95: pct(r.lat, 95), p99: pct(r.lat, 99),
        cpuMsPerRelease: (cpu * 1000) / Math.max(1, ok), clientCpuMsPerRelease: (cl.user + cl.system) / 1000 / Math.max(1, ok),
      });
      if (r.failed.length) process.stderr.write(`tang c=${c}: ${r.failed.length} failed, e.g. ${r.failed[0]}\n`);
      process.stderr.write(`  tang c=${c}: ${fmt(out[out.length - 1].rps)}/s p99 ${fmt(out[out.length - 1].p99)} ms\n`);
    }
    return out;
  } finally {
    await t.stop();
  }
}

/** socat's own CPU plus that of its reaped children (the forked tangd processes). */
function tangCpuS(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return NaN;
  }
}

function fmt(v: number | undefined, d = 1): string {
  if (v === undefined || Number.isNaN(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v.toFixed(d);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const root = mkdtempSync(join(tmpdir(), 'bootkey-bench-'));
  const state = join(root, 'state');
  await initState(state);
  const ca = readFileSync(join(state, 'ca.pem'));
  const adminToken = readFileSync(join(state, 'admin.token'), 'utf8').trim();
  const image = new BootImage(readFileSync(LOG_FILE));
  const results: LevelResult[] = [];
  const procs: ServerProc[] = [];
  let pg: Pg | undefined;
  const tangMissing = has('--no-tang') ? 'disabled (--no-tang)' : tangAvailable();
  const built = SERVER_KIND === 'bundle' ? ensureBundle() : SERVER_KIND === 'sea' ? 'dist/bootkey-linux-x64' : 'src/cli/main.ts through tsx';
  const serverDesc = SERVER_KIND === 'bundle' ? `node dist/bootkey.js (the bundle; ${built})` : SERVER_KIND === 'sea' ? 'dist/bootkey-linux-x64 (the single executable)' : 'node --import tsx src/cli/main.ts (sources, NOT as shipped)';
  process.stderr.write(`bench:server: servers run ${serverDesc}\n`);
  let floor: Floor | undefined;
  if (!has('--no-floor')) {
    floor = await measureFloor({ quick: QUICK, log: (l) => process.stderr.write(`  floor: ${l}\n`) });
  }
  process.stderr.write(`bench:server ${QUICK ? '(quick) ' : ''}${PRELOAD.length ? '(servers with TCP_NODELAY preload) ' : ''}levels ${LEVELS.join(',')}, ${POOL} simulated machines, ${cpus().length} CPUs, node ${process.version}\n`);
  try {
    const mk = (n: number) => Array.from({ length: n }, (_, i) => new SimMachine(i, image));

    // ---- SQLite ----
    {
      const prof = CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF, '--cpu-prof-interval', '200'] : [];
      const s = await spawnServer({ stateDir: state, preload: PRELOAD, kind: SERVER_KIND, nodeFlags: prof });
      procs.push(s);
      const machines = mk(POOL);
      const te = Date.now();
      const enrolToken = await createEnrolToken({ server: `https://127.0.0.1:${s.port}`, ca, adminToken }, POOL);
      const errs = await enrollAll(machines, { servers: [{ host: '127.0.0.1', port: s.port }], ca, enrolToken }, 32);
      if (errs.length) throw new Error(`enrolment failed: ${errs.slice(0, 3).join('; ')}`);
      process.stderr.write(`  sqlite: ${POOL} machines enrolled in ${((Date.now() - te) / 1000).toFixed(1)} s\n`);
      results.push(...(await benchBootkey('sqlite', [s], machines, ca)));
      await s.stop();
      if (CPU_PROF) {
        writeFileSync(join(CPU_PROF, 'windows.json'), JSON.stringify({ server: serverDesc, pid: s.pid, windows: windows.filter((w) => w.system === 'sqlite') }, null, 1));
        process.stderr.write(`  cpu profile of the SQLite server in ${CPU_PROF} (summarise: node --import tsx bench/profile.ts ${CPU_PROF})\n`);
      }
    }

    // ---- PostgreSQL: 1 replica, then 2 ----
    let pgMissing: string | undefined;
    if (has('--no-pg')) pgMissing = 'disabled (--no-pg)';
    else {
      const started = startPg({ maxConnections: 100 });
      if ('missing' in started) pgMissing = started.missing;
      else pg = started;
    }
    if (pg) {
      const url = await createDatabase(pg.url, 'bench');
      const machines = mk(POOL).map((m) => m);
      let s = await spawnServer({ stateDir: state, store: url, preload: PRELOAD, kind: SERVER_KIND });
      procs.push(s);
      const te = Date.now();
      const enrolToken = await createEnrolToken({ server: `https://127.0.0.1:${s.port}`, ca, adminToken }, POOL);
      const errs = await enrollAll(machines, { servers: [{ host: '127.0.0.1', port: s.port }], ca, enrolToken }, 32);
      if (errs.length) throw new Error(`enrolment failed: ${errs.slice(0, 3).join('; ')}`);
      process.stderr.write(`  postgres: ${POOL} machines enrolled in ${((Date.now() - te) / 1000).toFixed(1)} s\n`);
      results.push(...(await benchBootkey('postgres-1', [s], machines, ca, pg)));
      // --quick keeps the first replica running (saves a start); the full run starts both afresh
      if (!QUICK) {
        await s.stop();
        s = await spawnServer({ stateDir: state, store: url, preload: PRELOAD, kind: SERVER_KIND });
        procs.push(s);
      }
      const s2 = await spawnServer({ stateDir: state, store: url, preload: PRELOAD, kind: SERVER_KIND });
      procs.push(s2);
      results.push(...(await benchBootkey('postgres-2', [s, s2], machines, ca, pg)));
      await s.stop();
      await s2.stop();
    } else process.stderr.write(`  postgres: skipped: ${pgMissing}\n`);

    // ---- Tang ----
    if (!tangMissing) results.push(...(await benchTang()));
    else process.stderr.write(`  tang: skipped: ${tangMissing}\n`);
  } finally {
    for (const p of procs) await p.stop().catch(() => undefined);
    pg?.destroy();
    rmSync(root, { recursive: true, force: true });
  }

  // ---- report ----
  const head = ['system', 'conc', 'n', 'ok', 'fail', 'retries', 'rel/s', 'p50 ms', 'p95 ms', 'p99 ms', 'srv cpu ms/rel', 'db cpu ms/rel', 'client cpu ms/rel', 'srv peak RSS MB'];
  const rows = results.map((r) => [r.system, String(r.concurrency), String(r.n), String(r.ok), String(r.failed), String(r.retries), fmt(r.rps), fmt(r.p50), fmt(r.p95), fmt(r.p99), fmt(r.cpuMsPerRelease, 2), fmt(r.dbCpuMsPerRelease, 2), fmt(r.clientCpuMsPerRelease, 2), fmt(r.peakRssMb)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  console.log(line(head));
  console.log('|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  for (const r of rows) console.log(line(r));
  console.log('');
  const tang = new Map(results.filter((r) => r.system === 'tang').map((r) => [r.concurrency, r]));
  console.log('ratios bootkey/Tang (throughput: higher is better for bootkey; p99: lower is better for bootkey):');
  for (const r of results.filter((x) => x.system !== 'tang')) {
    const t = tang.get(r.concurrency);
    if (t) console.log(`  ${r.system.padEnd(10)} c=${String(r.concurrency).padEnd(5)} throughput ×${(r.rps / t.rps).toFixed(2)}  p99 ×${(r.p99 / t.p99).toFixed(2)}`);
  }
  console.log(`(${((Date.now() - t0) / 1000).toFixed(1)} s; client and servers share ${cpus().length} CPUs; latency includes retries after refused connections)`);

  const top = Math.max(...LEVELS);
  const pick = (sys: string) => results.find((r) => r.system === sys && r.concurrency === top);
  const tg = tang.get(top);
  const summary = (r: LevelResult | undefined) => r && {
    releases_per_s: round(r.rps), p99_ms: round(r.p99), p50_ms: round(r.p50), p95_ms: round(r.p95),
    tang_releases_per_s: tg ? round(tg.rps) : null, tang_p99_ms: tg ? round(tg.p99) : null,
    cpu_ms_per_release: round(r.cpuMsPerRelease), peak_rss_mb: round(r.peakRssMb),
    ...(r.dbCpuMsPerRelease !== undefined ? { db_cpu_ms_per_release: round(r.dbCpuMsPerRelease) } : {}),
    failed: r.failed, retries: r.retries, concurrency: r.concurrency,
    throughput_ratio_vs_tang: tg ? round(r.rps / tg.rps) : null, p99_ratio_vs_tang: tg ? round(r.p99 / tg.p99) : null,
  };
  // Issue 14: server CPU per release at c = 16 (SQLite), the floor, and the throughput ratio to
  // Tang: the lowest over the levels c >= 16 (the goal holds at every one of them).
  const c16 = results.find((r) => r.system === 'sqlite' && r.concurrency === 16);
  const ratios = results.filter((r) => r.system === 'sqlite' && r.concurrency >= 16 && tang.has(r.concurrency)).map((r) => [r.concurrency, r.rps / tang.get(r.concurrency)!.rps] as const);
  const top0 = summary(pick('sqlite'));
  console.log(JSON.stringify({
    ...top0, quick: QUICK, server_nodelay_preload: PRELOAD.length > 0,
    postgres: summary(pick('postgres-1')) ?? null, postgres_2_replicas: summary(pick('postgres-2')) ?? null,
    server: SERVER_KIND,
    cpu_ms_per_release: c16 ? round(c16.cpuMsPerRelease) : null,
    cpu_ms_per_release_at_top: top0?.cpu_ms_per_release ?? null,
    floor_cpu_ms: floor ? round(floor.totalMs) : null,
    ratio_vs_tang: ratios.length ? round(Math.min(...ratios.map((x) => x[1]))) : null,
    ratios_vs_tang: Object.fromEntries(ratios.map(([c, v]) => [String(c), round(v)])),
  }));
}

function round(v: number | undefined): number | null {
  return v === undefined || Number.isNaN(v) ? null : Math.round(v * 100) / 100;
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
