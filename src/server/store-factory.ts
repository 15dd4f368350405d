/**
 * Chooses the store from the server's configuration: SQLite in the state directory (the
 * default, `sqlite` or no spec) or PostgreSQL (`postgres://USER@HOST:PORT/DB[?pool_max=N]`,
 * also `postgresql://`). The URL may also come from BOOTKEY_STORE. See docs/SCALE.md.
 * @module
 */
import { join } from 'node:path';
import type { Store } from './store.ts';
import { SqliteStore } from './store-sqlite.ts';
import { PgStore } from './store-pg.ts';
import { ServerError } from './errors.ts';

export const STORE_ENV = 'BOOTKEY_STORE';

export function createStore(spec: string | undefined, stateDir: string, o: { log?: (line: string) => void } = {}): Store {
  const s = (spec ?? '').trim();
  if (s === '' || s === 'sqlite') return new SqliteStore(join(stateDir, 'bootkey.db'));
  if (/^postgres(ql)?:\/\//i.test(s)) {
    return new PgStore({ url: s, onError: (e) => o.log?.(`event=store-error store=postgres error=${JSON.stringify(e.message)}`) });
  }
  throw new ServerError('CONFIG', `--store: expected "sqlite" or postgres://USER@HOST:PORT/DB, got "${s.replace(/:[^:@/]*@/, ':***@')}"`);
}

/** Redacts a password from a store URL for logs. */
export function describeStore(spec: string | undefined): string {
  const s = (spec ?? '').trim();
  if (s === '' || s === 'sqlite') return 'sqlite';
  return s.replace(/:\/\/([^:@/]*):[^@/]*@/, '://$1:***@');
}
