/**
 * Two server replicas on one PostgreSQL database (scripts/pg.sh via bench/sim/pg.ts, as
 * test/server/store-pg.test.ts) continue one machine's runtime chain: reports alternate between
 * the replicas and each starts where the other stopped; a stale copy of the chain on one replica
 * cannot fork it (compare-and-set). Skipped when PostgreSQL is not installed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPg, createDatabase, type Pg } from '../../bench/sim/pg.ts';
import { PgStore } from '../../src/server/store-pg.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import { tempDir, serverState, newEnrolToken, machine, luksImage, enrollMachine, unlockImage, type TestServer, type Machine } from '../e2e/helpers.ts';
import { readToken } from '../../src/initrd/unlock.ts';
import { attestRuntime } from '../../src/agent/agent.ts';
import { withServer } from '../../src/client/connect.ts';
import { ImaLog, runtimePolicy } from './helpers.ts';

const started = startPg({ fsync: false });
if ('missing' in started) {
  console.log(`SKIP test/runtime/pg.test.ts: ${started.missing}`);
  test.skip('runtime chain on PostgreSQL replicas (PostgreSQL not installed)', () => undefined);
  test.run();
} else {
  const pgc: Pg = started;
  const tmp = tempDir('runtime-pg');
  const servers: RunningServer[] = [];
  const srv: TestServer[] = [];
  let m: Machine;

  test.after(async () => {
    await m?.stop();
    for (const s of servers) await s.close();
    pgc.stop();
    tmp.cleanup();
  });

  test('reports alternate between two PostgreSQL replicas and continue one chain', async () => {
    const url = await createDatabase(pgc.url, 'runtime');
    const state = await serverState(tmp.dir);
    const lots = { burst: 10_000, perSecond: 10_000 };
    for (let i = 0; i < 2; i++) {
      const s = await startServer({ stateDir: state, listen: '127.0.0.1:0', store: new PgStore({ url }), log: () => undefined, rateLimit: { perPeer: lots, perMachine: lots } });
      servers.push(s);
      srv.push({ url: `https://127.0.0.1:${s.port}`, port: s.port, state, ca: readFileSync(join(state, 'ca.pem'), 'utf8'), adminToken: readFileSync(join(state, 'admin.token'), 'utf8').trim(), enrolToken: '', close: () => s.close() });
    }
    srv[0].enrolToken = await newEnrolToken(srv[0], 5);
    m = await machine();
    const img = await luksImage(tmp.dir);
    const id = (await enrollMachine(srv[0], m, img)).machine;
    await unlockImage(m, img.image);
    const token = (await readToken(img.image)).token;
    const files: Record<string, string> = {};
    for (let i = 0; i < 12; i++) files[`/usr/bin/tool${i}`] = `tool ${i}`;
    await withServer({ servers: [srv[1].url], ca: srv[1].ca, deadlineMs: 10_000 }, (s) => s.request({ t: 'admin', adminToken: srv[1].adminToken, op: 'set-runtime-policy', machine: id, runtimePolicy: runtimePolicy(files) }, ['admin-result']));
    const ima = await ImaLog.start(m.tpm);
    let expectFrom = 0;
    for (let r = 0; r < 6; r++) {
      await ima.measure(`/usr/bin/tool${2 * r}`, files[`/usr/bin/tool${2 * r}`]);
      await ima.measure(`/usr/bin/tool${2 * r + 1}`, files[`/usr/bin/tool${2 * r + 1}`]);
      const which = r % 2;
      const out = await attestRuntime({ tpm: m.tpm, token: { ...token, servers: [srv[which].url] }, imaList: { path: '(test)', bank: 'sha256' }, readList: () => ima.bytes(), deadlineMs: 20_000 });
      assert.is(out.result.state, 'attesting', out.result.message);
      assert.is(out.from, expectFrom, `report ${r} on replica ${which} starts where the chain stands`);
      assert.is(out.result.count, ima.entries.length);
      expectFrom = ima.entries.length;
    }
    // A stale copy of the row (as a replica that read before another wrote) cannot overwrite it.
    const store = new PgStore({ url });
    try {
      const rt = (await store.getRuntime(id))!;
      assert.ok(await store.saveRuntime({ ...rt, updated: rt.updated + 1 }));
      assert.not.ok(await store.saveRuntime({ ...rt, count: 0 }), 'the compare-and-set refuses the stale version');
      assert.is((await store.getRuntime(id))!.count, ima.entries.length);
    } finally {
      await store.close();
    }
  });

  test.run();
}
