/**
 * Issue 14 §2: `bootkey server --workers N`, the listen backlog and the connection limit.
 *
 * - Settings: workers / max-connections / listen-backlog keys and their ranges; the backlog the
 *   kernel really uses (net.core.somaxconn) and the warning when it clamps; a worker's share of
 *   a rate-limit bucket.
 * - The connection limit: with max-connections 2 and two connections held open, a third is
 *   reset at once (ECONNRESET well under a second, before any TLS work; never a SYN left to
 *   the kernel's retry); the real client (src/client/connect.ts) retries and gets through once
 *   a slot is free.
 * - The SQLite store shared by processes: two processes race over the same nonces, the same
 *   enrolment token and the audit table: each nonce is accepted once, the token exactly its
 *   uses, every audit row kept with a distinct seq.
 * - The CLI with --workers 2: both workers serve (log lines `worker=1`, `worker=2`), a quote
 *   replayed on two connections at once is released once across the workers (NONCE_USED for
 *   the other), the metrics page sums the workers, a SIGKILLed worker is restarted under its
 *   number and serving continues, SIGTERM stops everything (exit 0).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import tls from 'node:tls';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { initState } from '../../src/server/pki.ts';
import { startServer, effectiveBacklog, readSomaxconn, shareOf, DEFAULT_LISTEN_BACKLOG, DEFAULT_MAX_CONNECTIONS } from '../../src/server/server.ts';
import { resolveServerConfig } from '../../src/config/server-conf.ts';
import { UsageError } from '../../src/errors.ts';
import { withServer } from '../../src/client/connect.ts';
import { SqliteStore } from '../../src/server/store-sqlite.ts';
import { SimMachine, BootImage, createEnrolToken, connect as simConnect, request, type SimConfig } from '../../bench/sim/machine.ts';
import { objectName } from '../../src/tpm/crypto.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const LOG = readFileSync(new URL('../data/qemu/uki-sb-on.bin', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'bootkey-workers-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('settings: workers, max-connections, listen-backlog keys; defaults; ranges refused with the key', () => {
  const r = resolveServerConfig({ env: {}, defaultFile: join(tmp, 'none.conf'), flags: { workers: '3', 'max-connections': '5000', 'listen-backlog': '8192' } });
  assert.equal([r.settings.workers, r.settings['max-connections'], r.settings['listen-backlog']], [3, 5000, 8192]);
  const f = join(tmp, 's.conf');
  writeFileSync(f, 'workers = 4\nmax-connections = 100\n');
  const fromFile = resolveServerConfig({ configFile: f, env: { BOOTKEY_LISTEN_BACKLOG: '1024' } });
  assert.equal([fromFile.settings.workers, fromFile.settings['max-connections'], fromFile.settings['listen-backlog']], [4, 100, 1024]);
  assert.equal(fromFile.origins.workers, { from: 'file', line: 1 });
  for (const [k, v] of [['workers', '0'], ['workers', '257'], ['listen-backlog', '70000'], ['max-connections', '0']] as const) {
    assert.throws(() => resolveServerConfig({ env: {}, defaultFile: join(tmp, 'none.conf'), flags: { [k]: v } }), (e: Error) => e instanceof UsageError && e.message.startsWith(`--${k}:`));
  }
  assert.is(DEFAULT_LISTEN_BACKLOG, 4096);
  assert.ok(DEFAULT_MAX_CONNECTIONS >= 1024, 'the default limit serves 1,024 machines at once');
});

test('backlog: the kernel clamps to net.core.somaxconn, and the server says so', () => {
  assert.equal(effectiveBacklog(4096, 4096), { backlog: 4096 });
  const c = effectiveBacklog(4096, 128);
  assert.is(c.backlog, 128);
  assert.match(c.warning!, /clamped by the kernel to net\.core\.somaxconn=128.*sysctl -w net\.core\.somaxconn=4096/);
  const f = join(tmp, 'somaxconn');
  writeFileSync(f, '511\n');
  assert.is(readSomaxconn(f), 511);
  assert.is(readSomaxconn(join(tmp, 'absent')), undefined);
  // a worker's share of a bucket: N shares make the configured rate
  assert.equal(shareOf({ burst: 60, perSecond: 5 }, 2), { burst: 30, perSecond: 2.5 });
  assert.equal(shareOf({ burst: 1, perSecond: 0.5 }, 4), { burst: 1, perSecond: 0.125 });
  assert.equal(shareOf({ burst: 20, perSecond: 0.5 }, 1), { burst: 20, perSecond: 0.5 });
});

function tlsOpen(port: number, ca: Buffer): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', minVersion: 'TLSv1.3' });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

test('connection limit 2: the third connection is reset at once (no TLS, no SYN retry); the client retries and gets through', async () => {
  const dir = join(tmp, 'limit');
  await initState(dir);
  const ca = readFileSync(join(dir, 'ca.pem'));
  const lines: string[] = [];
  const srv = await startServer({ stateDir: dir, listen: '127.0.0.1:0', maxConnections: 2, messageTimeoutMs: 20_000, log: (l) => lines.push(l) });
  try {
    assert.ok(lines.some((l) => /event=listening .*maxConnections=2 backlog=4096/.test(l)), lines.join('\n'));
    const a = await tlsOpen(srv.port, ca);
    const b = await tlsOpen(srv.port, ca);
    const t0 = performance.now();
    const err = await tlsOpen(srv.port, ca).then(() => undefined, (e: NodeJS.ErrnoException) => e);
    const ms = performance.now() - t0;
    assert.ok(err, 'the third connection must not get a TLS session');
    assert.is(err!.code, 'ECONNRESET', String(err));
    assert.ok(ms < 1000, `refused in ${ms.toFixed(0)} ms (a dropped SYN would take ≥ 1 s)`);
    assert.ok(lines.some((l) => /event=connection result=reset code=BUSY reason="2 connections open \(max-connections 2\)"/.test(l)), lines.join('\n'));
    assert.match(srv.metrics.render(), /bootkey_refusals_total\{request="connection",code="BUSY"\} 1/);
    // The real client: the first attempt is reset, a slot frees up, a later attempt gets through.
    const log: string[] = [];
    setTimeout(() => a.destroy(), 300);
    const got = await withServer({ servers: [`https://127.0.0.1:${srv.port}`], ca, backoffMs: 100, maxAttempts: 10, log: (l) => log.push(l) }, async (s) => s.server);
    assert.is(got, `https://127.0.0.1:${srv.port}`);
    assert.ok(log.some((l) => /attempt 1 failed: .*ECONNRESET/.test(l)), log.join('\n'));
    assert.ok(log.some((l) => /connected to/.test(l)), log.join('\n'));
    b.destroy();
  } finally {
    await srv.close();
  }
});

test('SQLite shared by two processes: each nonce accepted once, the token exactly its uses, every audit row kept', async () => {
  const file = join(tmp, 'race.db');
  const store = new SqliteStore(file);
  await store.migrate();
  const N = 3000;
  for (let i = 0; i < N; i++) await store.putNonce({ hash: createHash('sha256').update(`n${i}`).digest(), machine: 'm1', purpose: 'attest', expiresAt: Date.now() + 600_000 });
  await store.putEnrolToken({ id: 't-00000000000000aa', hash: Buffer.alloc(32), comment: 'race', created: Date.now(), expiresAt: Date.now() + 600_000, uses: 100, usesLeft: 100 });
  await store.close();
  // Both processes load, say "ready", and start together on one line from here.
  const ready: Promise<void>[] = [];
  const run = (who: string) => new Promise<{ nonceOk: number[]; tokenOk: number; other: Record<string, number> }>((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', 'test/server/_store-race.ts', file, '-', String(N), '150', '200', who], { cwd: ROOT });
    procs.push(c);
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => { out += d; });
    ready.push(new Promise((r) => c.stdout.on('data', () => /ready\n/.test(out) && r())));
    c.stderr.on('data', (d: Buffer) => { err += d; });
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.slice(out.indexOf('\n') + 1))) : reject(new Error(`race process ${who} exit ${code}: ${err}`))));
  });
  const procs: ChildProcess[] = [];
  const results = Promise.all([run('p1'), run('p2')]);
  await Promise.all(ready);
  for (const c of procs) c.stdin!.write('go\n');
  const [p, q] = await results;
  const both = p.nonceOk.filter((i) => q.nonceOk.includes(i));
  assert.equal(both, [], 'no nonce accepted by both processes');
  assert.is(p.nonceOk.length + q.nonceOk.length, N, 'every nonce accepted once');
  assert.ok(p.nonceOk.length > 0 && q.nonceOk.length > 0, `both processes won some nonces (${p.nonceOk.length}/${q.nonceOk.length}): they really raced`);
  assert.equal(Object.keys({ ...p.other, ...q.other }), ['used'], 'the losers saw NONCE_USED');
  assert.is(p.tokenOk + q.tokenOk, 100, 'the enrolment token gave exactly its 100 uses');
  const s2 = new SqliteStore(file);
  const rows = await s2.queryAudit({ limit: 10_000 });
  await s2.close();
  assert.is(rows.length, 400);
  assert.is(new Set(rows.map((r) => r.seq)).size, 400);
  console.log(`  race: nonces ${p.nonceOk.length}/${q.nonceOk.length}, token ${p.tokenOk}/${q.tokenOk}`);
  assert.equal([rows.filter((r) => r.peer === 'p1').length, rows.filter((r) => r.peer === 'p2').length], [200, 200]);
});

/** A `bootkey server --workers 2` child: its log lines, waiting for patterns. */
class Cli {
  out = '';
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'server', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => { this.out += d; });
    this.proc.stderr!.on('data', (d: Buffer) => { this.out += d; });
    this.exited = new Promise((r) => this.proc.once('exit', (c) => r(c)));
  }
  /** Waits for `re` in the output after character `from`. */
  async wait(re: RegExp, ms = 60_000, from = 0): Promise<RegExpExecArray> {
    const until = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.out.slice(from));
      if (m) return m;
      if (Date.now() > until || this.proc.exitCode !== null) throw new Error(`no ${re} in:\n${this.out}`);
      await sleep(50);
    }
  }
}

test('CLI --workers 2: both serve, a nonce is used once across workers, metrics summed, a killed worker is restarted, SIGTERM stops all', async () => {
  const dir = join(tmp, 'cli');
  await initState(dir);
  const ca = readFileSync(join(dir, 'ca.pem'));
  const adminToken = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  const cli = new Cli(['--state', dir, '--listen', '127.0.0.1:0', '--workers', '2', '--metrics', '127.0.0.1:0']);
  try {
    const ready = await cli.wait(/event=listening host=\S+ port=(\d+) workers=2 backlog=4096 pids=(\d+),(\d+)/);
    const port = Number(ready[1]);
    const pid1 = Number((await cli.wait(/event=worker-started worker=1 pid=(\d+)/))[1]);
    assert.match(cli.out, /event=listening host=\S+ port=\d+ releasedPcr=15 maxConnections=2048 worker=1/);
    assert.match(cli.out, /event=listening host=\S+ port=\d+ releasedPcr=15 maxConnections=2048 worker=2/);
    const metricsPort = Number((await cli.wait(/event=listening listener=metrics host=\S+ port=(\d+)/))[1]);
    const image = new BootImage(LOG);
    const cfg: SimConfig = { servers: [{ host: '127.0.0.1', port }], ca, backoffMs: 50, maxAttempts: 8, deadlineMs: 60_000 };
    cfg.enrolToken = await createEnrolToken({ server: `https://127.0.0.1:${port}`, ca, adminToken }, 10);
    const ms = Array.from({ length: 4 }, (_, i) => new SimMachine(i, image));
    for (const m of ms) await m.enroll(cfg);
    let released = 0;
    for (let round = 0; round < 2; round++) {
      await Promise.all(ms.map(async (m) => {
        m.reboot();
        await m.release(cfg);
        released++;
      }));
    }
    assert.match(cli.out, /event=release result=ok .* worker=1/);
    assert.match(cli.out, /event=release result=ok .* worker=2/);

    // One quote sent twice at once on two connections: released once, NONCE_USED for the other.
    const codes: string[] = [];
    for (let round = 0; round < 6; round++) {
      const m = ms[round % ms.length];
      m.reboot();
      const c0 = await simConnect(cfg.servers[0], ca, m.address, 10_000);
      const ch = await request(c0, { t: 'attest-begin', machine: m.id, akName: m.akName, ekName: objectName(m.ekPublic), releasedPcr: m.releasedPcr }, ['attest-challenge'], 10_000);
      c0.close();
      const q = m.quote(ch.pcrSelection, ch.nonce);
      const finish = { t: 'attest-finish', machine: m.id, akName: m.akName, ekName: objectName(m.ekPublic), releasedPcr: m.releasedPcr, nonce: ch.nonce, quote: q.quote, signature: q.signature, pcrs: q.pcrs, eventLog: image.log } as const;
      const [c1, c2] = await Promise.all([simConnect(cfg.servers[0], ca, m.address, 10_000), simConnect(cfg.servers[0], ca, m.address, 10_000)]);
      const rs = await Promise.all([c1, c2].map((c) => request(c, finish, ['released'], 10_000).then(() => 'released', (e: { code?: string }) => e.code ?? 'ERR')));
      c1.close();
      c2.close();
      codes.push(...rs);
    }
    released += 6;
    assert.is(codes.filter((c) => c === 'released').length, 6, codes.join(','));
    assert.is(codes.filter((c) => c === 'NONCE_USED').length, 6, codes.join(','));
    const used = [...cli.out.matchAll(/event=attest-finish result=refused code=NONCE_USED .* worker=(\d)/g)].map((x) => x[1]);
    assert.is(used.length, 6);

    // The metrics page is the sum over the workers.
    const page = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(page, new RegExp(`^bootkey_releases_total ${released}$`, 'm'), page);
    assert.match(page, /^bootkey_refusals_total\{request="attest-finish",code="NONCE_USED"\} 6$/m);
    assert.match(page, /^bootkey_workers 2$/m);

    // SIGKILL worker 1: the primary logs it and starts another worker 1; serving goes on.
    process.kill(pid1, 'SIGKILL');
    const gone = await cli.wait(/event=worker-exit worker=1 pid=\d+ signal=SIGKILL restartInMs=\d+/);
    const after = cli.out.indexOf(gone[0]);
    const again = await cli.wait(/event=worker-started worker=1 pid=(\d+)/, 60_000, after);
    assert.not.equal(Number(again[1]), pid1);
    await cli.wait(/event=listening host=\S+ port=\d+ releasedPcr=15 maxConnections=2048 worker=1/, 60_000, after);
    await sleep(500); // its "ready" message to the primary
    for (const m of ms) {
      m.reboot();
      await m.release(cfg);
    }
    const page2 = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(page2, /^bootkey_worker_restarts_total 1$/m, page2);
    assert.match(page2, /^bootkey_workers 2$/m, page2.split('\n').filter((l) => /worker/.test(l)).join('\n'));

    cli.proc.kill('SIGTERM');
    assert.is(await cli.exited, 0, cli.out);
    assert.match(cli.out, /event=stopped worker=1/);
    assert.match(cli.out, /event=stopped worker=2/);
    assert.match(cli.out, /event=stopped\n/);
  } finally {
    if (cli.proc.exitCode === null) cli.proc.kill('SIGKILL');
  }
});

test.run();
