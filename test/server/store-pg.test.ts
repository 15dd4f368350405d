/**
 * The PostgreSQL store against a real PostgreSQL (scripts/pg.sh: loopback, temporary data
 * directory): the shared store contract (the same tests as SQLite), then the database going
 * away (UNAVAILABLE, fast) and coming back (the pool recovers), then two replicas (two
 * startServer on one database, simulated machines from bench/sim): a nonce from A accepted by B
 * once, revocation and policy changes on one seen by the other at once, a complete audit log,
 * PostgreSQL restarted under a client that retries, and the real client (src/client) failing over
 * past a dead server and retrying UNAVAILABLE. Skipped, with the reason, only when the PostgreSQL
 * server binaries are not installed (scripts/setup.sh installs them).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { withServer, type ServerSession } from '../../src/client/connect.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgStore } from '../../src/server/store-pg.ts';
import { PG_MIGRATIONS } from '../../src/server/migrations-pg.ts';
import { createStore } from '../../src/server/store-factory.ts';
import { SqliteStore } from '../../src/server/store-sqlite.ts';
import { ServerError } from '../../src/server/errors.ts';
import { sha256 } from '../../src/server/secrets.ts';
import { startPg, createDatabase, type Pg } from '../../bench/sim/pg.ts';
import { storeContract } from './store-contract.ts';
import { initState } from '../../src/server/pki.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import { adminRequest } from '../../src/server/admin-client.ts';
import type { MessageOf } from '../../src/protocol/messages.ts';
import { SimMachine, BootImage, enrollAll, createEnrolToken, openReleased, connect, request, ClientFailure, type SimConfig, type Target } from '../../bench/sim/machine.ts';

const started = startPg({ fsync: false });
if ('missing' in started) {
  console.log(`SKIP test/server/store-pg.test.ts: ${started.missing}`);
  test.skip('PostgreSQL store (PostgreSQL not installed)', () => undefined);
  test.run();
} else {
  const pgc: Pg = started;
  let url: string;
  let a: PgStore;

  storeContract({
    name: 'postgres',
    async open() {
      url = await createDatabase(pgc.url, 'contract');
      a = new PgStore({ url });
      const b = new PgStore({ url });
      await Promise.all([a.migrate(), b.migrate()]);
      return { a, b };
    },
    async exec(sql) {
      const x = new PgStore({ url });
      try {
        return await x.pool.query(sql);
      } finally {
        await x.close();
      }
    },
    async schemaRows() {
      const x = new PgStore({ url });
      try {
        return Number((await x.pool.query('SELECT COUNT(*) AS n FROM schema_version')).rows[0].n);
      } finally {
        await x.close();
      }
    },
    async rawRows(table) {
      const x = new PgStore({ url });
      try {
        return (await x.pool.query(`SELECT * FROM ${table}`)).rows as Record<string, unknown>[];
      } finally {
        await x.close();
      }
    },
    async assertNotAtRest(share) {
      const x = new PgStore({ url });
      try {
        const r = await x.pool.query("SELECT string_agg(encode(share_sealed, 'hex'), '') AS s FROM machines");
        assert.not.ok(String(r.rows[0].s).includes(share.toString('hex')), 'a share is stored in clear');
        await x.pool.query('CHECKPOINT');
      } finally {
        await x.close();
      }
    },
    async close() {},
  });

  test('factory: sqlite by default, postgres by URL; bad specs are CONFIG errors', async () => {
    const d = mkdtempSync(join(tmpdir(), 'bootkey-factory-'));
    for (const spec of [undefined, 'sqlite', '']) {
      const s = createStore(spec, d);
      assert.ok(s instanceof SqliteStore);
      await s.close();
    }
    rmSync(d, { recursive: true, force: true });
    const p = createStore(pgc.url + '?pool_max=3', '/tmp');
    assert.ok(p instanceof PgStore);
    assert.is((p as PgStore).pool.options.max, 3);
    await p.close();
    assert.throws(() => createStore('mysql://x', '/tmp'), (e: unknown) => e instanceof ServerError && e.code === 'CONFIG');
    assert.throws(() => createStore('postgres://x/?pool_max=0', '/tmp'), (e: unknown) => e instanceof ServerError && e.code === 'CONFIG');
  });

  test('database down: UNAVAILABLE within the connect timeout; back up: the same pool recovers', async () => {
    const dburl = await createDatabase(pgc.url, 'downup');
    const s = new PgStore({ url: dburl, max: 4, connectTimeoutMs: 1500 });
    await s.migrate();
    await s.putNonce({ hash: sha256('n1'), machine: 'm-1', purpose: 'attest', expiresAt: Date.now() + 600_000 });
    pgc.stop();
    try {
      for (const call of [() => s.getMachine('m-1'), () => s.consumeNonce(sha256('n1'), 'm-1', Date.now()), () => s.gc(Date.now(), 0)]) {
        const t0 = Date.now();
        try {
          await call();
          assert.unreachable('the database is down');
        } catch (e) {
          assert.instance(e, ServerError);
          assert.is((e as ServerError).code, 'UNAVAILABLE', (e as Error).message);
        }
        assert.ok(Date.now() - t0 < 5000, 'fails fast');
      }
    } finally {
      pgc.start();
    }
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      try {
        assert.is(await s.consumeNonce(sha256('n1'), 'm-1', Date.now()), 'ok', 'the nonce survived the restart, unused');
        ok = true;
      } catch (e) {
        if (!(e instanceof ServerError && e.code === 'UNAVAILABLE')) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.ok(ok, 'recovered');
    await s.close();
  });

  test('least privilege: a role without DDL rights and without UPDATE/DELETE on audit runs the store; audit changes are refused by privilege too', async () => {
    const dburl = await createDatabase(pgc.url, 'privs');
    const owner = new PgStore({ url: dburl });
    await owner.migrate();
    await owner.pool.query(`DROP ROLE IF EXISTS bootkey_app; CREATE ROLE bootkey_app LOGIN;
      REVOKE CREATE ON SCHEMA public FROM PUBLIC;
      GRANT USAGE ON SCHEMA public TO bootkey_app;
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bootkey_app;
      GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO bootkey_app;
      REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM bootkey_app;`);
    await owner.close();
    const u = new URL(dburl);
    u.username = 'bootkey_app';
    const app = new PgStore({ url: u.toString() });
    await app.migrate();
    assert.is(await app.schemaVersion(), PG_MIGRATIONS.length);
    await app.audit({ time: 1, who: 'admin', action: 'x', result: 'ok' });
    await app.putNonce({ hash: sha256('p'), machine: 'm-1', purpose: 'attest', expiresAt: Date.now() + 60_000 });
    assert.is(await app.consumeNonce(sha256('p'), 'm-1', Date.now()), 'ok');
    for (const sql of ["UPDATE audit SET result = 'forged'", 'DELETE FROM audit', 'TRUNCATE audit', 'DROP TABLE audit']) {
      try {
        await app.pool.query(sql);
        assert.unreachable(sql);
      } catch (e) {
        assert.match((e as Error).message, /permission denied|must be owner|append-only/, sql);
      }
    }
    assert.is((await app.queryAudit({})).length, 1);
    await app.close();
  });

  // ---------- two replicas (startServer ×2) on one PostgreSQL database ----------

  let root: string;
  let A: RunningServer;
  let B: RunningServer;
  let cfg: SimConfig;
  let token: string;
  let replUrl: string;
  const img = new BootImage(readFileSync(new URL('../data/qemu/uki-sb-on.bin', import.meta.url)));
  const T = (s: RunningServer): Target => ({ host: '127.0.0.1', port: s.port });
  const admin = (s: RunningServer, op: string, f: Record<string, unknown> = {}) => adminRequest({ server: `https://127.0.0.1:${s.port}`, ca: cfg.ca, adminToken: token }, op, f);

  /** attest-begin on `begin`, attest-finish message built; returns the finish message. */
  async function begin(m: SimMachine, s: RunningServer): Promise<MessageOf<'attest-finish'>> {
    const c = await connect(T(s), cfg.ca, m.address, 10_000);
    try {
      const ch = await request(c, { t: 'attest-begin', machine: m.id, akName: m.akName, ...m.binding() }, ['attest-challenge'], 10_000);
      const q = m.quote(ch.pcrSelection, ch.nonce);
      return { t: 'attest-finish', machine: m.id, akName: m.akName, ...m.binding(), nonce: ch.nonce, quote: q.quote, signature: q.signature, pcrs: q.pcrs, eventLog: img.log };
    } finally {
      c.close();
    }
  }
  async function finish(m: SimMachine, s: RunningServer, fin: MessageOf<'attest-finish'>): Promise<string> {
    const c = await connect(T(s), cfg.ca, m.address, 10_000);
    try {
      const r = await request(c, fin, ['released'], 10_000);
      assert.ok(openReleased(m, r).equals(m.share!), 'the released blob holds this machine\'s share');
      return 'released';
    } catch (e) {
      if (e instanceof ClientFailure) return e.code;
      throw e;
    } finally {
      c.close();
    }
  }

  test('replicas: setup (two servers, one database, one state directory); enrolment through A and B', async () => {
    root = mkdtempSync(join(tmpdir(), 'bootkey-pg-replicas-'));
    await initState(join(root, 'state'));
    replUrl = await createDatabase(pgc.url, 'replicas');
    A = await startServer({ stateDir: join(root, 'state'), listen: '127.0.0.1:0', store: new PgStore({ url: replUrl, max: 4 }) });
    B = await startServer({ stateDir: join(root, 'state'), listen: '127.0.0.1:0', store: new PgStore({ url: replUrl, max: 4, connectTimeoutMs: 1000 }) });
    token = readFileSync(join(root, 'state', 'admin.token'), 'utf8').trim();
    const ca = readFileSync(join(root, 'state', 'ca.pem'));
    cfg = { servers: [T(A), T(B)], ca, enrolToken: await createEnrolToken({ server: `https://127.0.0.1:${A.port}`, ca, adminToken: token }, 4), backoffMs: 50 };
    const ms = Array.from({ length: 4 }, (_, i) => new SimMachine(i, img, { ek: i === 3 ? 'rsa' : 'ecc' }));
    assert.equal(await enrollAll(ms, cfg, 4), []);
    const list = (await admin(B, 'list')) as { id: string; state: string }[];
    assert.equal(list.map((x) => x.state), ['active', 'active', 'active', 'active']);
    machines.push(...ms);
  });
  const machines: SimMachine[] = [];

  test('replicas: a nonce issued by A is accepted by B, once; replays to either are NONCE_USED', async () => {
    const m = machines[0];
    m.reboot();
    const fin = await begin(m, A);
    assert.is(await finish(m, B, fin), 'released');
    assert.is(await finish(m, A, fin), 'NONCE_USED');
    assert.is(await finish(m, B, fin), 'NONCE_USED');
  });

  test('replicas: the same attest-finish raced to A and B 20 times: exactly one release', async () => {
    const m = machines[1];
    m.reboot();
    const fin = await begin(m, B);
    const r = await Promise.all(Array.from({ length: 20 }, (_, i) => finish(m, i % 2 ? A : B, fin)));
    assert.is(r.filter((x) => x === 'released').length, 1, r.join(','));
    assert.is(r.filter((x) => x === 'NONCE_USED').length, 19, r.join(','));
  });

  test('replicas: revoke on A refuses on B at once; unrevoke on B releases on A; set-policy on A applies on B', async () => {
    const m = machines[2];
    m.reboot();
    let fin = await begin(m, B);
    await admin(A, 'revoke', { machine: m.id });
    assert.is(await finish(m, B, fin), 'REVOKED', 'a nonce issued before the revocation is refused after it');
    await assert_refused(() => m.release({ ...cfg, servers: [T(B)] }), 'REVOKED');
    await admin(B, 'unrevoke', { machine: m.id });
    m.reboot();
    assert.ok(openReleased(m, (await m.release({ ...cfg, servers: [T(A)] })).released).equals(m.share!));
    // a policy that this boot cannot pass (another UKI allowed), set through A
    const shown = (await admin(B, 'show', { machine: m.id })) as { policy: { rules: { bootChain: { stages: { allowed: { digest: string }[] }[] } } } };
    const p = JSON.parse(JSON.stringify(shown.policy)) as typeof shown.policy;
    p.rules.bootChain.stages[0].allowed[0].digest = '00'.repeat(32);
    await admin(A, 'set-policy', { machine: m.id, policy: JSON.stringify(p) });
    m.reboot();
    fin = await begin(m, A);
    assert.is(await finish(m, B, fin), 'POLICY');
    await admin(A, 'set-policy', { machine: m.id, policy: JSON.stringify(shown.policy) });
    m.reboot();
    fin = await begin(m, B);
    assert.is(await finish(m, B, fin), 'released');
  });

  async function assert_refused(fn: () => Promise<unknown>, code: string): Promise<void> {
    try {
      await fn();
    } catch (e) {
      assert.is((e as ClientFailure).code, code, (e as Error).message);
      return;
    }
    assert.unreachable(`expected ${code}`);
  }

  test('replicas: the audit log is complete (every release and refusal through either replica)', async () => {
    const rows = (await admin(A, 'audit', { limit: 10000 })) as { action: string; result: string; code?: string; machine?: string; seq: number }[];
    const count = (pred: (r: (typeof rows)[number]) => boolean) => rows.filter(pred).length;
    // releases: m0 1, m1 1, m2 2 ; refusals: m0 2 NONCE_USED, m1 19 NONCE_USED, m2 REVOKED×2, POLICY×1
    assert.is(count((r) => r.action === 'release' && r.result === 'ok'), 4);
    assert.is(count((r) => r.code === 'NONCE_USED'), 21);
    assert.is(count((r) => r.code === 'REVOKED'), 2);
    assert.is(count((r) => r.code === 'POLICY'), 1);
    assert.is(count((r) => r.action === 'enroll-commit'), 4);
    for (const op of ['admin-revoke', 'admin-unrevoke', 'admin-set-policy']) assert.ok(rows.some((r) => r.action === op), op);
    const seqs = rows.map((r) => r.seq);
    assert.equal(seqs, [...seqs].sort((x, y) => x - y));
  });

  test('replicas: PostgreSQL restarted: requests meanwhile get UNAVAILABLE, the client retries and gets its key; nothing enrolled is lost', async () => {
    const m = machines[3];
    m.reboot();
    pgc.stop();
    const t0 = Date.now();
    await assert_refused(() => m.release({ ...cfg, maxAttempts: 1 }), 'UNAVAILABLE');
    assert.ok(Date.now() - t0 < 5000, 'refused fast');
    const later = m.release({ ...cfg, maxAttempts: 30, backoffMs: 100, maxBackoffMs: 500 });
    await new Promise((r) => setTimeout(r, 1500));
    pgc.start();
    const r = await later;
    assert.ok(openReleased(m, r.released).equals(m.share!));
    const list = (await admin(A, 'list')) as { id: string }[];
    assert.equal(list.map((x) => x.id).sort(), machines.map((x) => x.id).sort());
  });

  test('replicas: the real client (src/client/connect.ts) fails over past a dead server and retries UNAVAILABLE until the database is back', async () => {
    const m = machines[0];
    const dead = await new Promise<number>((resolve) => {
      const srv = net.createServer();
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const flow = async (s: ServerSession): Promise<MessageOf<'released'>> => {
      const ch = await s.request({ t: 'attest-begin', machine: m.id, akName: m.akName, ...m.binding() }, ['attest-challenge']);
      const q = m.quote(ch.pcrSelection, ch.nonce);
      return s.request({ t: 'attest-finish', machine: m.id, akName: m.akName, ...m.binding(), nonce: ch.nonce, quote: q.quote, signature: q.signature, pcrs: q.pcrs, eventLog: img.log }, ['released']);
    };
    const opts = { servers: [`https://127.0.0.1:${dead}`, `https://127.0.0.1:${B.port}`], ca: cfg.ca, deadlineMs: 30_000, maxAttempts: 20, backoffMs: 200, maxBackoffMs: 1000 };
    m.reboot();
    assert.ok(openReleased(m, await withServer(opts, flow)).equals(m.share!), 'through the live replica');
    m.reboot();
    pgc.stop();
    const pending = withServer(opts, flow);
    await new Promise((r) => setTimeout(r, 1500));
    pgc.start();
    assert.ok(openReleased(m, await pending).equals(m.share!), 'after the database came back');
  });

  test.after(async () => {
    await A?.close();
    await B?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test.after(() => pgc.destroy());
  test.run();
}
