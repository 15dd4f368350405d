/**
 * The PostgreSQL store against a real PostgreSQL (scripts/pg.sh: loopback, temporary data
 * directory): the shared store contract (the same tests as SQLite), then the database going
 * away (UNAVAILABLE, fast) and coming back (the pool recovers). Cross-replica tests with two
 * servers: test/server/replicas-pg.test.ts. Skipped, with the reason, only when the PostgreSQL
 * server binaries are not installed (scripts/setup.sh installs them).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgStore } from '../../src/server/store-pg.ts';
import { createStore } from '../../src/server/store-factory.ts';
import { SqliteStore } from '../../src/server/store-sqlite.ts';
import { ServerError } from '../../src/server/errors.ts';
import { sha256 } from '../../src/server/secrets.ts';
import { startPg, createDatabase, type Pg } from '../../bench/sim/pg.ts';
import { storeContract } from './store-contract.ts';

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

  test.after(() => pgc.destroy());
  test.run();
}
