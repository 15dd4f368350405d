/**
 * SqliteStore's group commit (the writes of one event-loop turn in one transaction): a failing
 * write rejects only its own caller and undoes only itself; a nonce is still accepted once when
 * both attempts land in the same batch; every write is committed when its promise settles.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/server/store-sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'bootkey-batch-'));
const file = join(dir, 'b.db');
const store = new SqliteStore(file);
// fixed times: other suites in the same process may move Date.now
const NOW = 1_700_000_000_000;
const later = NOW + 60_000;

test.before(async () => {
  await store.migrate();
});
test.after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a failing write in a batch rejects alone; the others commit', async () => {
  const h1 = randomBytes(32), h2 = randomBytes(32);
  // no await in between: the three land in one batch
  const r = await Promise.allSettled([
    store.putNonce({ hash: h1, machine: 'm-a', purpose: 'attest', expiresAt: later }),
    store.putNonce({ hash: h1, machine: 'm-b', purpose: 'attest', expiresAt: later }), // same primary key
    store.putNonce({ hash: h2, machine: 'm-a', purpose: 'attest', expiresAt: later }),
  ]);
  assert.equal(r.map((x) => x.status), ['fulfilled', 'rejected', 'fulfilled']);
  assert.match(String((r[1] as PromiseRejectedResult).reason), /UNIQUE|constraint/i);
  // committed and visible to another connection once the promises settled
  const other = new Database(file, { readonly: true });
  try {
    const rows = other.prepare('SELECT machine FROM nonces WHERE hash IN (?, ?) ORDER BY machine').all(h1, h2) as { machine: string }[];
    assert.equal(rows.map((x) => x.machine), ['m-a', 'm-a']);
  } finally {
    other.close();
  }
  assert.is(await store.consumeNonce(h1, 'm-a', NOW), 'ok', 'the first insert was kept');
  assert.is(await store.consumeNonce(h1, 'm-b', NOW), 'unknown', 'the refused insert left nothing');
});

test('two uses of one nonce in the same batch: one ok, one used', async () => {
  const h = randomBytes(32);
  await store.putNonce({ hash: h, machine: 'm-c', purpose: 'attest', expiresAt: later });
  const now = NOW;
  const r = await Promise.all([store.consumeNonce(h, 'm-c', now), store.consumeNonce(h, 'm-c', now), store.consumeNonce(h, 'm-x', now)]);
  assert.equal(r, ['ok', 'used', 'unknown']);
});

test('audit rows and results of one batch are all kept, in order', async () => {
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.audit({ time: i, who: 'machine', machine: 'm-d', action: 'release', result: 'ok', reasons: [`n${i}`] })));
  const rows = await store.queryAudit({ machine: 'm-d', limit: 100 });
  assert.equal(rows.map((x) => x.reasons?.[0]), Array.from({ length: 20 }, (_, i) => `n${i}`));
});

test.run();
