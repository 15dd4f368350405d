/**
 * The SQLite store and the vault: single-use nonces under concurrent mark-used (two
 * connections, like two replicas), expiry, append-only audit, encryption at rest, wrong master
 * key, idempotent migrations, all-or-nothing enrolment transactions, garbage collection.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/server/store-sqlite.ts';
import type { MachineRecord } from '../../src/server/store.ts';
import { Vault, loadMasterKey, parseMasterKey, sha256 } from '../../src/server/secrets.ts';
import { ServerError } from '../../src/server/errors.ts';

let dir: string;
let file: string;
let a: SqliteStore;
let b: SqliteStore;
const vault = new Vault(randomBytes(32));

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bootkey-store-'));
  file = join(dir, 'bootkey.db');
  a = new SqliteStore(file);
  await a.migrate();
  b = new SqliteStore(file);
  await b.migrate();
});
test.after(async () => {
  await a.close();
  await b.close();
  rmSync(dir, { recursive: true, force: true });
});

function machine(id: string, share: Buffer, over: Partial<MachineRecord> = {}): MachineRecord {
  const now = Date.now();
  return {
    id, machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), ekName: Buffer.from('ekname-' + id), akPublic: Buffer.from('ak'), akName: Buffer.from('akname'),
    policy: '{}', shareSealed: vault.seal(share, id), state: 'active', releasedPcr: 15, created: now, updated: now, ...over,
  };
}

test('migrations are idempotent and recorded', async () => {
  assert.is(await a.schemaVersion(), 1);
  await a.migrate();
  await b.migrate();
  assert.is(await b.schemaVersion(), 1);
  const rows = a.db.prepare('SELECT COUNT(*) AS n FROM schema_version').get() as { n: number };
  assert.is(rows.n, 1);
  assert.is((a.db.pragma('journal_mode', { simple: true }) as string).toLowerCase(), 'wal');
});

test('nonce: exactly one of many concurrent mark-used wins, across two connections', async () => {
  const h = sha256(randomBytes(32));
  await a.putNonce({ hash: h, machine: 'm-1', purpose: 'attest', expiresAt: Date.now() + 60_000 });
  const now = Date.now();
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).consumeNonce(h, 'm-1', now)));
  assert.is(results.filter((r) => r === 'ok').length, 1);
  assert.is(results.filter((r) => r === 'used').length, 39);
});

test('nonce: expired, unknown, other machine', async () => {
  const h = sha256(randomBytes(32));
  await a.putNonce({ hash: h, machine: 'm-1', purpose: 'attest', expiresAt: 1000 });
  assert.is(await a.consumeNonce(h, 'm-2', 2000), 'unknown');
  assert.is(await a.consumeNonce(h, 'm-1', 2000), 'expired');
  assert.is(await a.consumeNonce(h, 'm-1', 500), 'used', 'an expired nonce is burnt');
  assert.is(await a.consumeNonce(sha256('never'), 'm-1', 500), 'unknown');
});

test('audit is append-only: UPDATE and DELETE refused by triggers', async () => {
  await a.audit({ time: 1, who: 'admin', action: 'x', result: 'ok', machine: 'm-1', reasons: ['r'], peer: '1.2.3.4' });
  assert.throws(() => a.db.prepare("UPDATE audit SET result = 'forged'").run(), /append-only/);
  assert.throws(() => a.db.prepare('DELETE FROM audit').run(), /append-only/);
  const rows = await b.queryAudit({ machine: 'm-1' });
  assert.is(rows.length, 1);
  assert.equal(rows[0].reasons, ['r']);
  assert.is(rows[0].peer, '1.2.3.4');
});

test('encryption at rest: the share bytes are nowhere in the database files; AAD binds the machine id', async () => {
  const share = randomBytes(32);
  await a.createMachine(machine('m-enc', share));
  const got = (await b.getMachine('m-enc'))!;
  assert.ok(vault.open(got.shareSealed, 'm-enc').equals(share));
  assert.throws(() => vault.open(got.shareSealed, 'm-other'), (e: unknown) => e instanceof ServerError && e.code === 'DECRYPT');
  for (const f of [file, file + '-wal']) {
    if (existsSync(f)) assert.not.ok(readFileSync(f).includes(share), `${f} holds the share in clear`);
  }
  a.db.pragma('wal_checkpoint(TRUNCATE)');
  assert.not.ok(readFileSync(file).includes(share));
});

test('wrong master key fails cleanly (DECRYPT); bad key sources are MASTER_KEY errors', async () => {
  const got = (await a.getMachine('m-enc'))!;
  const other = new Vault(randomBytes(32));
  assert.throws(() => other.open(got.shareSealed, 'm-enc'), (e: unknown) => e instanceof ServerError && e.code === 'DECRYPT' && /wrong master key/.test(e.message));
  assert.throws(() => parseMasterKey('abcd'), (e: unknown) => e instanceof ServerError && e.code === 'MASTER_KEY');
  const k = randomBytes(32);
  assert.ok(loadMasterKey(dir, { BOOTKEY_MASTER_KEY: k.toString('hex') }).equals(k));
  assert.ok(loadMasterKey(dir, { BOOTKEY_MASTER_KEY: k.toString('base64') }).equals(k));
  assert.throws(() => loadMasterKey(dir, {}), (e: unknown) => e instanceof ServerError && e.code === 'MASTER_KEY');
  writeFileSync(join(dir, 'master.key'), k, { mode: 0o644 });
  assert.throws(() => loadMasterKey(dir, {}), /chmod 600/);
});

test('enrolment transactions: finish once; commit supersedes the old record of the same EK; abort removes the pending machine', async () => {
  const now = Date.now();
  const enr = (id: string) => ({ id, machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), akPublic: Buffer.from('ak'), secretHash: sha256('s'), nonce: randomBytes(32), expiresAt: now + 300_000, created: now });
  await a.createMachine(machine('m-old', randomBytes(32), { ekName: Buffer.from('same-ek') }));
  await a.putEnrollment(enr('e-1'));
  assert.ok(await a.finishEnrollment('e-1', machine('m-new', randomBytes(32), { ekName: Buffer.from('same-ek'), state: 'pending' })));
  assert.not.ok(await b.finishEnrollment('e-1', machine('m-new2', randomBytes(32), { state: 'pending' })));
  assert.is(await a.getMachine('m-new2'), undefined, 'nothing half-written');
  assert.is(await a.commitEnrollment('e-1', now), 'm-new');
  assert.is((await a.getMachine('m-new'))!.state, 'active');
  assert.is(await a.getMachine('m-old'), undefined, 're-enrolment supersedes the old record');
  assert.is(await a.commitEnrollment('e-1', now), undefined);

  await a.putEnrollment(enr('e-2'));
  await a.finishEnrollment('e-2', machine('m-p', randomBytes(32), { state: 'pending' }));
  assert.ok(await a.abortEnrollment('e-2'));
  assert.is(await a.getMachine('m-p'), undefined);
});

test('gc: pending machines older than the cut-off and expired enrolments go; active ones stay', async () => {
  const now = Date.now();
  await a.createMachine(machine('m-stale', randomBytes(32), { state: 'pending', created: now - 11 * 60_000 }));
  await a.createMachine(machine('m-fresh', randomBytes(32), { state: 'pending', created: now }));
  const n = await a.gc(now, now - 10 * 60_000);
  assert.is(n, 1);
  assert.is(await a.getMachine('m-stale'), undefined);
  assert.ok(await a.getMachine('m-fresh'));
  assert.ok(await a.getMachine('m-new'));
});

test.run();
