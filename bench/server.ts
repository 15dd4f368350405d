/**
 * `npm run bench:server [-- --quick] [--levels 1,16,256,1024] [--no-tang] [--no-pg] [--server-nodelay]
 *    [--server bundle|sea|tsx] [--cpu-prof DIR] [--no-floor] [--per-level N] [--workers 1,2]`
 *
 * `--workers LIST` (default 1 and the number of CPUs): the SQLite server runs once per worker
 * count (`bootkey server --workers N`), every level each time; the largest is the headline
 * (`sqlite`, as shipped: the default is the number of cores), the others are `sqlite-wN`, for the
 * scaling table. Per level also: `syn drops`, the growth of the kernel's TcpExt ListenDrops
 * (ListenOverflows included; /proc/net/netstat, what `nstat` reads; system-wide, so another
 * program's drops count too) and the 1-minute load average at the level's end (the machine
 * may be shared). net.core.somaxconn below 4096 is raised when allowed (root), and reported.
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
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { initState } from '../src/server/pki.ts';
import { SimMachine, BootImage, enrollAll, createEnrolToken, type SimConfig, type FlowStats } from './sim/machine.ts';
import { spawnServer, ensureBundle, BUNDLE, type ServerProc, type ServerKind } from './sim/server-proc.ts';
import { measureFloor, type Floor } from './floor.ts';
import { startPg, createDatabase, pgCpuS, type Pg } from './sim/pg.ts';
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
/** Worker counts of the SQLite server, ascending; the last is the headline `sqlite`. */
const WORKERS = [...new Set((val('--workers') ?? `1,${cpus().length}`).split(',').map(Number))].sort((a, b) => a - b);
if (WORKERS.some((w) => !Number.isInteger(w) || w < 1 || w > 256)) throw new Error('--workers: a list of counts 1..256, e.g. 1,2');
const MAX_WORKERS = WORKERS[WORKERS.length - 1];

/** The kernel's listen-queue counters (TcpExt of /proc/net/netstat, as `nstat` shows them). */
function listenCounters(): { overflows: number; drops: number } {
  try {
    const l = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((x) => x.startsWith('TcpExt:'));
    const k = l[0].split(/\s+/);
    const v = l[1].split(/\s+/).map(Number);
    return { overflows: v[k.indexOf('ListenOverflows')] ?? NaN, drops: v[k.indexOf('ListenDrops')] ?? NaN };
  } catch {
    return { overflows: NaN, drops: NaN };
  }
}

/** net.core.somaxconn, raised to 4096 when lower and we may (the default backlog is 4096). */
function ensureSomaxconn(): { before?: number; after?: number; note: string } {
  const read = (): number | undefined => {
    try {
      return Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
    } catch {
      return undefined;
    }
  };
  const before = read();
  if (before === undefined) return { note: 'net.core.somaxconn unknown (no /proc/sys)' };
  if (before >= 4096) return { before, after: before, note: `net.core.somaxconn ${before}` };
  try {
    execFileSync('sysctl', ['-w', 'net.core.somaxconn=4096'], { stdio: 'ignore' });
  } catch {
    // not root, or a container without it
  }
  const after = read();
  return { before, after, note: after !== before ? `net.core.somaxconn raised from ${before} to ${after} (sysctl -w)` : `net.core.somaxconn ${before}: below the server's backlog 4096 and could not be raised (sysctl -w needs root): expect SYN drops at high concurrency` };
}
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
  /** Worker processes of the server (bootkey SQLite runs). */
  workers?: number;
  /** Kernel ListenDrops (and ListenOverflows) during the level. */
  synDrops: number;
  listenOverflows: number;
  /** 1-minute load average at the end of the level. */
  load1: number;
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

async function benchBootkey(system: string, servers: ServerProc[], machines: SimMachine[], ca: Buffer, pg?: Pg, workers?: number): Promise<LevelResult[]> {
  const cfg: SimConfig = { servers: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), ca, backoffMs: 100, maxBackoffMs: 2000, maxAttempts: 20, deadlineMs: 120_000 };
  const out: LevelResult[] = [];
  // Warm-up, not measured: every server process starts with cold JIT code (a fresh server per
  // worker count), 32 releases per process.
  const warm = Math.min(machines.length, 32 * (workers ?? servers.length));
  await load(8, warm, async (i) => {
    const m = machines[i];
    m.reboot();
    await m.release(cfg, { attempts: 0, path: [] }, i);
    return 0;
  });
  let cursor = warm;
  for (const c of LEVELS) {
    const n = perLevel(c);
    const cpu0 = servers.reduce((a, s) => a + s.stats().cpuS, 0);
    const db0 = pgCpuS(pg);
    const cl0 = process.cpuUsage();
    const lq0 = listenCounters();
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
    const lq = listenCounters();
    out.push({
      system, concurrency: c, n, ok, failed: r.failed.length, retries: r.retries, rps: ok / r.wallS,
      p50: pct(r.lat, 50), p95: pct(r.lat, 95), p99: pct(r.lat, 99),
      cpuMsPerRelease: (cpu * 1000) / Math.max(1, ok), dbCpuMsPerRelease: pg ? (db * 1000) / Math.max(1, ok) : undefined,
      clientCpuMsPerRelease: (cl.user + cl.system) / 1000 / Math.max(1, ok), peakRssMb: peak, workers,
      synDrops: lq.drops - lq0.drops, listenOverflows: lq.overflows - lq0.overflows, load1: loadavg()[0],
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
      const lq0 = listenCounters();
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
      const lq = listenCounters();
      out.push({
        system: 'tang', concurrency: c, n, ok, failed: r.failed.length, retries: r.retries, rps: ok / r.wallS,
        p50: pct(r.lat, 50), p95: pct(r.lat, 95), p99: pct(r.lat, 99),
        cpuMsPerRelease: (cpu * 1000) / Math.max(1, ok), clientCpuMsPerRelease: (cl.user + cl.system) / 1000 / Math.max(1, ok),
        synDrops: lq.drops - lq0.drops, listenOverflows: lq.overflows - lq0.overflows, load1: loadavg()[0],
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
  const somax = ensureSomaxconn();
  const load0 = loadavg();
  process.stderr.write(`bench:server ${QUICK ? '(quick) ' : ''}${PRELOAD.length ? '(servers with TCP_NODELAY preload) ' : ''}levels ${LEVELS.join(',')}, SQLite with --workers ${WORKERS.join(', ')}, ${POOL} simulated machines, ${cpus().length} CPUs, node ${process.version}; ${somax.note}; load average ${load0.map((x) => x.toFixed(2)).join(' ')}\n`);
  try {
    const mk = (n: number) => Array.from({ length: n }, (_, i) => new SimMachine(i, image));

    // ---- SQLite, once per worker count (the largest last: the headline `sqlite`) ----
    const machines = mk(POOL);
    for (const w of WORKERS) {
      const name = w === MAX_WORKERS ? 'sqlite' : `sqlite-w${w}`;
      const prof = CPU_PROF && w === MAX_WORKERS ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF, '--cpu-prof-interval', '200'] : [];
      const s = await spawnServer({ stateDir: state, preload: PRELOAD, kind: SERVER_KIND, nodeFlags: prof, workers: w });
      procs.push(s);
      if (w === WORKERS[0]) {
        const te = Date.now();
        const enrolToken = await createEnrolToken({ server: `https://127.0.0.1:${s.port}`, ca, adminToken }, POOL);
        const errs = await enrollAll(machines, { servers: [{ host: '127.0.0.1', port: s.port }], ca, enrolToken }, 32);
        if (errs.length) throw new Error(`enrolment failed: ${errs.slice(0, 3).join('; ')}`);
        process.stderr.write(`  sqlite: ${POOL} machines enrolled in ${((Date.now() - te) / 1000).toFixed(1)} s\n`);
      }
      results.push(...(await benchBootkey(name, [s], machines, ca, undefined, w)));
      await s.stop();
      if (w !== MAX_WORKERS) continue;
      if (CPU_PROF) {
        if (SERVER_KIND === 'bundle') copyFileSync(BUNDLE, join(CPU_PROF, 'bootkey.js')); // for profile.ts's line → module map
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
  const head = ['system', 'workers', 'conc', 'n', 'ok', 'fail', 'retries', 'rel/s', 'p50 ms', 'p95 ms', 'p99 ms', 'srv cpu ms/rel', 'db cpu ms/rel', 'client cpu ms/rel', 'srv peak RSS MB', 'syn drops', 'load'];
  const rows = results.map((r) => [r.system, r.workers ? String(r.workers) : '-', String(r.concurrency), String(r.n), String(r.ok), String(r.failed), String(r.retries), fmt(r.rps), fmt(r.p50), fmt(r.p95), fmt(r.p99), fmt(r.cpuMsPerRelease, 2), fmt(r.dbCpuMsPerRelease, 2), fmt(r.clientCpuMsPerRelease, 2), fmt(r.peakRssMb), String(r.synDrops), r.load1.toFixed(2)]);
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

  // Scaling over worker counts (SQLite), and the c = top goal of issue 14 §2.
  const top = Math.max(...LEVELS);
  const sq = (w: number) => results.filter((r) => r.system === (w === MAX_WORKERS ? 'sqlite' : `sqlite-w${w}`));
  const scaling: Record<string, Record<string, { releases_per_s: number | null; cpu_ms_per_release: number | null; p99_ms: number | null; syn_drops: number; peak_rss_mb: number | null }>> = {};
  {
    console.log('');
    console.log(`scaling with --workers (SQLite): releases/s, server CPU ms per release (all processes), p99 ms; load average at each level's end`);
    for (const c of LEVELS) {
      const cells = WORKERS.map((w) => {
        const r = sq(w).find((x) => x.concurrency === c);
        if (!r) return `${w}w: -`;
        (scaling[String(w)] ??= {})[String(c)] = { releases_per_s: round(r.rps), cpu_ms_per_release: round(r.cpuMsPerRelease), p99_ms: round(r.p99), syn_drops: r.synDrops, peak_rss_mb: round(r.peakRssMb) };
        return `${w}w: ${fmt(r.rps)}/s ${fmt(r.cpuMsPerRelease, 2)} ms ${fmt(r.p99)} ms (load ${r.load1.toFixed(2)})`;
      });
      const base = sq(WORKERS[0]).find((x) => x.concurrency === c);
      const best = sq(MAX_WORKERS).find((x) => x.concurrency === c);
      console.log(`  c=${String(c).padEnd(5)} ${cells.join('  |  ')}${base && best && WORKERS.length > 1 ? `  → ×${(best.rps / base.rps).toFixed(2)}` : ''}`);
    }
  }
  const headline = results.find((r) => r.system === 'sqlite' && r.concurrency === top);
  const p99Goal = headline ? (2 * top * 1000) / headline.rps : NaN;
  if (headline) {
    const ok = headline.synDrops === 0 && headline.p99 <= p99Goal && headline.failed === 0;
    console.log(`goal at c=${top} (SQLite, ${MAX_WORKERS} workers): syn drops ${headline.synDrops} (ListenOverflows ${headline.listenOverflows}), p99 ${fmt(headline.p99)} ms vs 2 × ${top}/${fmt(headline.rps)} per s = ${fmt(p99Goal)} ms, failed ${headline.failed}, peak RSS ${fmt(headline.peakRssMb)} MB: ${ok ? 'met' : 'NOT met'}`);
  }

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
    workers: MAX_WORKERS,
    syn_drops: headline?.synDrops ?? null,
    listen_overflows: headline?.listenOverflows ?? null,
    p99_goal_ms: headline ? round(p99Goal) : null,
    scaling,
    somaxconn: somax.after ?? null,
    load_avg: [load0[0], loadavg()[0]].map((x) => round(x)),
  }));
}

function round(v: number | undefined): number | null {
  return v === undefined || Number.isNaN(v) ? null : Math.round(v * 100) / 100;
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
