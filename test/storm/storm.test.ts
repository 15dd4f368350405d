/**
 * Boot storms and faults, loopback only, bounded counts and times: 2,000 simulated machines
 * (bench/sim: software EK/AK enrolled through the real protocol, genuine quotes over a
 * replayed QEMU log, failover like the real client) against two `bootkey server` processes (the
 * CLI as shipped: `node dist/bootkey.js`, child processes) on one PostgreSQL (scripts/pg.sh):
 *
 * 1. all 2,000 start within 10 s: every one gets its key (checked by importing the released
 *    blob under its EK in software: the share, sealed to this boot's PCRs);
 * 2. SIGKILL one replica mid-storm: every machine still gets its key through the other; no
 *    nonce gives two keys (client side: distinct nonces; server side: audit releases ≤ used
 *    nonces);
 * 3. PostgreSQL restarted mid-storm: clients retry (UNAVAILABLE), all get their keys, nothing
 *    enrolled is lost;
 * 4. a flood of garbage connections and oversize messages beside the storm: every valid machine
 *    still gets its key; the servers' RSS stays bounded (sampled).
 *
 * Each storm prints its figures (wall time, p50/p99, retries, RSS). Skipped, with the reason,
 * only when PostgreSQL is not installed. STORM_MACHINES overrides the count (default 2000).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { initState } from '../../src/server/pki.ts';
import { SimMachine, BootImage, enrollAll, createEnrolToken, openReleased, type SimConfig, type FlowStats, type Target } from '../../bench/sim/machine.ts';
import { spawnServer, ensureBundle, type ServerProc } from '../../bench/sim/server-proc.ts';
import { startPg, createDatabase, type Pg } from '../../bench/sim/pg.ts';

const N = Number(process.env.STORM_MACHINES ?? 2000);
const SPREAD_MS = 10_000;

const started = startPg({ fsync: false, maxConnections: 100 });
if ('missing' in started) {
  console.log(`SKIP test/storm/storm.test.ts: ${started.missing}`);
  test.skip('boot storms (PostgreSQL not installed)', () => undefined);
  test.run();
} else {
  const pgc: Pg = started;
  let root: string;
  let state: string;
  let url: string;
  let ca: Buffer;
  let adminToken: string;
  const servers: ServerProc[] = [];
  let machines: SimMachine[] = [];
  const image = new BootImage(readFileSync(new URL('../data/qemu/uki-sb-on.bin', import.meta.url)));
  const targets = (): Target[] => servers.map((s) => ({ host: '127.0.0.1', port: s.port }));
  const cfgFor = (t: Target[]): SimConfig => ({ servers: t, ca, backoffMs: 100, maxBackoffMs: 2000, maxAttempts: 40, deadlineMs: 120_000, timeoutMs: 20_000 });

  async function db<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<T>(sql)).rows;
    } finally {
      await c.end();
    }
  }

  interface StormResult {
    ok: number;
    failed: string[];
    nonces: Set<string>;
    lat: number[];
    retries: number;
    wallMs: number;
    peakRssMb: number;
    byServer: number[];
  }

  /** Every machine reboots at a random time within SPREAD_MS and asks for its key. */
  async function storm(name: string, o: { during?: (t0: number) => Promise<void> } = {}): Promise<StormResult> {
    const cfg = cfgFor(targets());
    const res: StormResult = { ok: 0, failed: [], nonces: new Set(), lat: [], retries: 0, wallMs: 0, peakRssMb: 0, byServer: [] };
    const watched = [...servers];
    const sampler = setInterval(() => {
      for (const s of watched) {
        try {
          res.peakRssMb = Math.max(res.peakRssMb, s.stats().rssMb);
        } catch {
          // killed
        }
      }
    }, 200);
    const t0 = Date.now();
    const side = o.during?.(t0);
    await Promise.all(machines.map(async (m, i) => {
      await new Promise((r) => setTimeout(r, Math.random() * SPREAD_MS));
      m.reboot();
      const st: FlowStats = { attempts: 0, path: [] };
      const s = performance.now();
      try {
        const r = await m.release(cfg, st, i);
        res.lat.push(performance.now() - s);
        const share = openReleased(m, r.released);
        if (!share.equals(m.share!)) throw new Error('the released share is not this machine\'s');
        const hex = r.nonce.toString('hex');
        if (res.nonces.has(hex)) throw new Error('two keys for one nonce');
        res.nonces.add(hex);
        res.byServer[r.server] = (res.byServer[r.server] ?? 0) + 1;
        res.ok++;
      } catch (e) {
        res.failed.push(`machine ${i}: ${(e as Error).message} (path ${st.path.join(' ')})`);
      }
      res.retries += Math.max(0, st.attempts - 1);
    }));
    res.wallMs = Date.now() - t0;
    await side;
    clearInterval(sampler);
    res.lat.sort((a, b) => a - b);
    const p = (q: number) => res.lat[Math.min(res.lat.length - 1, Math.floor(q * res.lat.length))]?.toFixed(0);
    console.log(`  storm ${name}: ${res.ok}/${machines.length} keys in ${(res.wallMs / 1000).toFixed(1)} s; latency p50 ${p(0.5)} ms p99 ${p(0.99)} ms max ${res.lat[res.lat.length - 1]?.toFixed(0)} ms; retries ${res.retries}; per server ${res.byServer.join('/')}; peak server RSS ${res.peakRssMb.toFixed(0)} MB`);
    if (res.failed.length) console.log(`    failures: ${res.failed.slice(0, 3).join(' | ')}`);
    return res;
  }

  test.before(async () => {
    try {
      await setUp();
    } catch (e) {
      // uvu does not print a failed before-hook's error: say it here
      console.error(`  storm set-up failed: ${(e as Error).stack ?? String(e)}`);
      throw e;
    }
  });

  async function setUp(): Promise<void> {
    // The servers run as shipped: node dist/bootkey.js (rebuilt when older than src/), not tsx.
    console.log(`  storm servers: ${ensureBundle()}`);
    root = mkdtempSync(join(tmpdir(), 'bootkey-storm-'));
    state = join(root, 'state');
    await initState(state);
    ca = readFileSync(join(state, 'ca.pem'));
    adminToken = readFileSync(join(state, 'admin.token'), 'utf8').trim();
    url = await createDatabase(pgc.url, 'storm');
    // one at a time, each recorded as soon as it runs (the after-hook stops what is recorded)
    for (let i = 0; i < 2; i++) servers.push(await spawnServer({ stateDir: state, store: url }));
    const t0 = Date.now();
    machines = Array.from({ length: N }, (_, i) => new SimMachine(i, image));
    const enrolToken = await createEnrolToken({ server: `https://127.0.0.1:${servers[0].port}`, ca, adminToken }, N);
    const errs = await enrollAll(machines, { ...cfgFor(targets()), enrolToken }, 48);
    console.log(`  storm setup: ${N} machines enrolled through 2 replicas in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(errs, []);
  }

  test.after(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    pgc.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test(`storm: ${N} machines within 10 s, two replicas: every one gets its key`, async () => {
    const r = await storm('plain');
    assert.equal(r.failed, []);
    assert.is(r.ok, N);
    assert.is(r.nonces.size, N);
    assert.ok(r.byServer[0] > 0 && r.byServer[1] > 0, 'both replicas served');
  });

  test('storm: SIGKILL one replica mid-storm: every machine gets its key through the other, no nonce twice', async () => {
    const before = Number((await db<{ n: string }>("SELECT COUNT(*) AS n FROM audit WHERE action = 'release' AND result = 'ok'"))[0].n);
    const victim = servers[1];
    const r = await storm('replica SIGKILL', {
      during: async () => {
        await new Promise((res) => setTimeout(res, 3000));
        await victim.kill();
      },
    });
    assert.equal(r.failed, []);
    assert.is(r.ok, N);
    assert.is(r.nonces.size, N, 'one key per nonce');
    const after = Number((await db<{ n: string }>("SELECT COUNT(*) AS n FROM audit WHERE action = 'release' AND result = 'ok'"))[0].n);
    const released = after - before;
    // the killed replica may have released (and audited) a blob that never reached its machine
    assert.ok(released >= N, `audit: ${released} releases for ${N} received`);
    const used = Number((await db<{ n: string }>('SELECT COUNT(*) AS n FROM nonces WHERE used_at IS NOT NULL'))[0].n);
    const releases = Number((await db<{ n: string }>("SELECT COUNT(*) AS n FROM audit WHERE action = 'release' AND result = 'ok'"))[0].n);
    assert.ok(releases <= used, `every release consumed its own nonce (${releases} releases, ${used} used nonces)`);
    // bring the second replica back for the next storms
    servers[1] = await spawnServer({ stateDir: state, store: url });
  });

  test('storm: PostgreSQL restarted mid-storm: clients retry, all get keys, nothing enrolled is lost', async () => {
    const r = await storm('postgres restart', {
      during: async () => {
        await new Promise((res) => setTimeout(res, 3000));
        pgc.stop();
        await new Promise((res) => setTimeout(res, 2000));
        pgc.start();
      },
    });
    assert.equal(r.failed, []);
    assert.is(r.ok, N);
    assert.ok(r.retries > 0, 'some clients had to retry');
    const rows = await db<{ state: string; n: string }>('SELECT state, COUNT(*) AS n FROM machines GROUP BY state');
    assert.equal(rows.map((x) => [x.state, Number(x.n)]), [['active', N]]);
    const unavailable = servers.flatMap((s) => s.lines).filter((l) => /code=UNAVAILABLE/.test(l)).length;
    console.log(`    UNAVAILABLE answers logged: ${unavailable}`);
  });

  test('storm: garbage connections and oversize messages beside the storm: valid machines get keys; memory bounded', async () => {
    const baseline = Math.max(...servers.map((s) => s.stats().rssMb));
    let stop = false;
    const counts = { raw: 0, oversize: 0, big: 0, cbor: 0, slow: 0 };
    const addr = (k: number) => `127.250.${(k >> 8) & 0xff}.${(k & 0xff) || 1}`;
    const tlsTo = (t: Target, k: number) => new Promise<tls.TLSSocket>((resolve, reject) => {
      const raw = net.connect({ host: t.host, port: t.port, localAddress: addr(k) });
      raw.on('error', () => undefined);
      const s = tls.connect({ socket: raw, ca: [ca], servername: 'localhost', minVersion: 'TLSv1.3' });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
      setTimeout(() => { s.destroy(); reject(new Error('timeout')); }, 5000).unref();
    });
    const hold = (s: net.Socket, ms: number) => new Promise<void>((r) => {
      s.on('error', () => undefined);
      s.once('close', () => r());
      setTimeout(() => { s.destroy(); r(); }, ms).unref();
    });
    const worker = async (w: number): Promise<void> => {
      for (let k = 0; !stop; k++) {
        const t = targets()[w % 2];
        const kind = (['raw', 'oversize', 'big', 'cbor', 'slow'] as const)[(w + k) % 5];
        try {
          if (kind === 'raw') {
            const s = net.connect({ host: t.host, port: t.port, localAddress: addr(w * 97 + k) });
            s.on('error', () => undefined);
            await new Promise((r) => s.once('connect', r));
            s.write(randomBytes(4096));
            await hold(s, 500);
          } else {
            const s = await tlsTo(t, w * 97 + k);
            if (kind === 'oversize') {
              s.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
              s.write(randomBytes(64 * 1024));
            } else if (kind === 'big') {
              const h = Buffer.alloc(4);
              h.writeUInt32BE(2 * 1024 * 1024);
              s.write(h);
              s.write(randomBytes(2 * 1024 * 1024));
            } else if (kind === 'cbor') {
              const body = randomBytes(1000);
              const h = Buffer.alloc(4);
              h.writeUInt32BE(body.length);
              s.write(Buffer.concat([h, body]));
            } else {
              const h = Buffer.alloc(4);
              h.writeUInt32BE(1024 * 1024);
              s.write(h);
              s.write(randomBytes(100));
            }
            await hold(s, kind === 'slow' ? 3000 : 1000);
          }
          counts[kind]++;
        } catch {
          counts[kind]++;
        }
      }
    };
    const r = await storm('garbage flood', {
      during: async () => {
        const workers = Array.from({ length: 32 }, (_, w) => worker(w));
        await new Promise((res) => setTimeout(res, SPREAD_MS + 2000));
        stop = true;
        await Promise.all(workers);
      },
    });
    console.log(`    garbage sent: ${JSON.stringify(counts)}; baseline RSS ${baseline.toFixed(0)} MB, peak ${r.peakRssMb.toFixed(0)} MB`);
    assert.equal(r.failed, []);
    assert.is(r.ok, N);
    assert.ok(Object.values(counts).reduce((a, b) => a + b, 0) >= 100, `a real flood (${JSON.stringify(counts)})`);
    assert.ok(r.peakRssMb < baseline + 300, `server RSS bounded: peak ${r.peakRssMb.toFixed(0)} MB, baseline ${baseline.toFixed(0)} MB`);
    for (const s of servers) assert.ok(s.proc.exitCode === null, 'servers still running');
  });

  test.run();
}
