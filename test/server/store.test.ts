/**
 * The SQLite store (through the shared store contract, test/server/store-contract.ts: single-use
 * nonces under concurrent mark-used from two connections like two replicas, expiry, append-only
 * audit, encryption at rest, idempotent migrations, all-or-nothing enrolment transactions,
 * garbage collection) and the vault (wrong master key, key sources).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/server/store-sqlite.ts';
import { Vault, loadMasterKey, parseMasterKey } from '../../src/server/secrets.ts';
import { ServerError } from '../../src/server/errors.ts';
import { storeContract } from './store-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'bootkey-store-'));
const file = join(dir, 'bootkey.db');
let a: SqliteStore;

storeContract({
  name: 'sqlite',
  async open() {
    a = new SqliteStore(file);
    await a.migrate();
    const b = new SqliteStore(file);
    await b.migrate();
    return { a, b };
  },
  async exec(sql) {
    return a.db.prepare(sql).run();
  },
  async schemaRows() {
    return (a.db.prepare('SELECT COUNT(*) AS n FROM schema_version').get() as { n: number }).n;
  },
  async rawRows(table) {
    return a.db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[];
  },
  async afterMigrate() {
    assert.is((a.db.pragma('journal_mode', { simple: true }) as string).toLowerCase(), 'wal');
  },
  async assertNotAtRest(share) {
    for (const f of [file, file + '-wal']) {
      if (existsSync(f)) assert.not.ok(readFileSync(f).includes(share), `${f} holds the share in clear`);
    }
    a.db.pragma('wal_checkpoint(TRUNCATE)');
    assert.not.ok(readFileSync(file).includes(share));
  },
  async close() {},
});

test('wrong master key fails cleanly (DECRYPT); bad key sources are MASTER_KEY errors', async () => {
  const v = new Vault(randomBytes(32));
  const sealed = v.seal(randomBytes(32), 'm-enc');
  const other = new Vault(randomBytes(32));
  assert.throws(() => other.open(sealed, 'm-enc'), (e: unknown) => e instanceof ServerError && e.code === 'DECRYPT' && /wrong master key/.test(e.message));
  assert.throws(() => parseMasterKey('abcd'), (e: unknown) => e instanceof ServerError && e.code === 'MASTER_KEY');
  const k = randomBytes(32);
  assert.ok(loadMasterKey(dir, { BOOTKEY_MASTER_KEY: k.toString('hex') }).equals(k));
  assert.ok(loadMasterKey(dir, { BOOTKEY_MASTER_KEY: k.toString('base64') }).equals(k));
  assert.throws(() => loadMasterKey(dir, {}), (e: unknown) => e instanceof ServerError && e.code === 'MASTER_KEY');
  writeFileSync(join(dir, 'master.key'), k, { mode: 0o644 });
  assert.throws(() => loadMasterKey(dir, {}), /chmod 600/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
