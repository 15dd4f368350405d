/**
 * The PostgreSQL store (the `pg` package): the same semantics as the SQLite store, for any
 * number of replicas on one database.
 *
 * - Nonces: a single conditional `UPDATE … WHERE used_at IS NULL AND expires_at > now
 *   RETURNING` decides; under READ COMMITTED a concurrent second UPDATE waits for the row lock,
 *   re-checks the condition on the new row version and changes nothing, so a nonce is 'ok'
 *   exactly once across all replicas.
 * - No cache: every read goes to the database, so a revocation or policy change made through
 *   one replica is seen by every replica's next request.
 * - Multi-step changes (finish, commit, abort, delete, gc) are single transactions (rows locked
 *   with FOR UPDATE; retried on serialization failure/deadlock).
 * - The audit table is append-only (triggers raise on UPDATE, DELETE, TRUNCATE).
 * - A bounded pool (default 10 connections per replica). When the database is down or
 *   restarting, calls fail fast (connect timeout) with ServerError('UNAVAILABLE'), which the
 *   service answers as `error UNAVAILABLE` (clients retry); the pool reconnects by itself when
 *   the database is back.
 * @module
 */
import pg from 'pg';
import { MAX_REFUSED_LOG, type MachineCounts, type RefusedBoot, type AuditEntry, AuditRow, ConsumeResult, EnrollmentRecord, EnrolTokenRecord, MachineRecord, MachineState, NonceRecord, StagedRecord, StagedState, Store, TokenUseResult, RuntimeRecord } from './store.ts';
import { ServerError } from './errors.ts';
import { PG_MIGRATIONS, MIGRATION_LOCK } from './migrations-pg.ts';
import { machineFromRow, enrollmentFromRow, enrolTokenFromRow, tokenRefusal, num, countsFromRows, refusedBootFromRow, stagedFromRow, stagedUseUpdates, runtimeFromRow, runtimeParams, RUNTIME_COLUMNS, type Row } from './store-rows.ts';

type Queryable = Pick<pg.PoolClient, 'query'>;

export interface PgStoreOptions {
  /** postgres://user@host:port/db (libpq-style URL). */
  url: string;
  /** Pool size per process; default 10 (or `pool_max` in the URL's query). */
  max?: number;
  /** How long to wait for a connection (pool or server); default 3000 ms. */
  connectTimeoutMs?: number;
  /** statement_timeout; default 10 000 ms. */
  statementTimeoutMs?: number;
  /** Called for errors the pool reports on idle connections (e.g. the server restarted). */
  onError?: (e: Error) => void;
}

const INT8_OID = 20;
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/** Node/pg/PostgreSQL errors that mean "the database is not reachable right now". */
export function isUnavailable(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  const code = err?.code ?? '';
  if (/^(08|57P0[123]|53300|53400)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN'].includes(code)) return true;
  const m = err?.message ?? '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|the database system is (starting up|shutting down|in recovery)|terminating connection|Connection ended unexpectedly|not queryable/i.test(m);
}

function wrap(e: unknown, what: string): never {
  if (e instanceof ServerError) throw e;
  if (isUnavailable(e)) throw new ServerError('UNAVAILABLE', `the database is unavailable (${what}): ${(e as Error).message}; retry shortly`);
  throw e;
}

/** Parses the URL, taking bootkey's own `pool_max` parameter out of it. */
export function parsePgUrl(url: string): { url: string; max?: number } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ServerError('CONFIG', `store URL "${url.replace(/:[^:@/]*@/, ':***@')}" is not a URL (postgres://USER[:PASSWORD]@HOST:PORT/DB)`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new ServerError('CONFIG', `store URL: expected postgres://…, got ${u.protocol}`);
  const pm = u.searchParams.get('pool_max');
  u.searchParams.delete('pool_max');
  let max: number | undefined;
  if (pm !== null) {
    if (!/^\d+$/.test(pm) || Number(pm) < 1 || Number(pm) > 1000) throw new ServerError('CONFIG', 'store URL: pool_max must be an integer 1..1000');
    max = Number(pm);
  }
  return { url: u.toString(), max };
}

export class PgStore implements Store {
  readonly pool: pg.Pool;
  private closed = false;

  constructor(o: PgStoreOptions) {
    const { url, max } = parsePgUrl(o.url);
    this.pool = new pg.Pool({
      connectionString: url,
      max: o.max ?? max ?? 10,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 3000,
      idleTimeoutMillis: 30_000,
      statement_timeout: o.statementTimeoutMs ?? 10_000,
      query_timeout: (o.statementTimeoutMs ?? 10_000) + 2000,
      application_name: 'bootkey-server',
      types,
    } as pg.PoolConfig);
    // An idle connection that dies (server restart) must not crash the process; the pool drops it.
    this.pool.on('error', (e) => o.onError?.(e));
  }

  private async q(sql: string, params: unknown[] = [], what = 'query', c: Queryable = this.pool): Promise<pg.QueryResult<Row>> {
    try {
      return await c.query<Row>(sql, params);
    } catch (e) {
      wrap(e, what);
    }
  }

  /** Runs `fn` in one transaction (retried on serialization failure/deadlock). */
  async tx<T>(what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let c: pg.PoolClient;
      try {
        c = await this.pool.connect();
      } catch (e) {
        wrap(e, what);
      }
      let broken = false;
      try {
        await c.query('BEGIN');
        const r = await fn(c);
        await c.query('COMMIT');
        return r;
      } catch (e) {
        const code = (e as { code?: string }).code;
        await c.query('ROLLBACK').catch(() => { broken = true; });
        if ((code === '40001' || code === '40P01') && attempt < 5) continue;
        if (isUnavailable(e) || (e instanceof ServerError && e.code === 'UNAVAILABLE')) broken = true;
        wrap(e, what);
      } finally {
        c.release(broken || undefined);
      }
    }
  }

  async migrate(): Promise<void> {
    // Up to date already: no DDL and no lock, so that a role without CREATE rights (tables
    // created by an owner role, see docs/SCALE.md) can run the server.
    const has = (await this.q("SELECT to_regclass('schema_version') IS NOT NULL AS has", [], 'migrate')).rows[0].has === true;
    if (has && (await this.schemaVersion()) >= PG_MIGRATIONS.length) return;
    await this.tx('migrate', async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)');
      const cur = num((await c.query<Row>('SELECT COALESCE(MAX(version), 0) AS v FROM schema_version')).rows[0].v);
      for (let v = cur + 1; v <= PG_MIGRATIONS.length; v++) {
        await c.query(PG_MIGRATIONS[v - 1]);
        await c.query('INSERT INTO schema_version (version, applied) VALUES ($1, $2)', [v, Date.now()]);
      }
    });
  }

  async schemaVersion(): Promise<number> {
    return num((await this.q('SELECT COALESCE(MAX(version), 0) AS v FROM schema_version', [], 'schema version')).rows[0].v);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  private insertMachine(c: Queryable, m: MachineRecord): Promise<pg.QueryResult<Row>> {
    return this.q(`INSERT INTO machines (id, machine_id, hostname, ek_public, ek_name, ak_public, ak_name, policy, share_sealed, state,
        released_pcr, created, updated, last_result, last_time, last_reasons, last_reset_count, last_restart_count)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`, [
      m.id, m.machineId, m.hostname, m.ekPublic, m.ekName, m.akPublic, m.akName, m.policy, m.shareSealed, m.state,
      m.releasedPcr, m.created, m.updated, m.lastResult ?? null, m.lastTime ?? null, m.lastReasons ? JSON.stringify(m.lastReasons) : null,
      m.lastResetCount ?? null, m.lastRestartCount ?? null,
    ], 'insert machine', c);
  }

  async createMachine(m: MachineRecord): Promise<void> {
    await this.insertMachine(this.pool, m);
  }

  async getMachine(id: string): Promise<MachineRecord | undefined> {
    const r = await this.q('SELECT * FROM machines WHERE id = $1', [id], 'get machine');
    return r.rows[0] ? machineFromRow(r.rows[0]) : undefined;
  }

  async listMachines(): Promise<MachineRecord[]> {
    return (await this.q('SELECT * FROM machines ORDER BY created, id', [], 'list machines')).rows.map(machineFromRow);
  }

  async machinesByEkName(ekName: Buffer): Promise<MachineRecord[]> {
    return (await this.q('SELECT * FROM machines WHERE ek_name = $1 ORDER BY created, id', [ekName], 'machines by EK')).rows.map(machineFromRow);
  }

  async setMachineState(id: string, state: MachineState, now: number, from?: MachineState[]): Promise<boolean> {
    const r = from && from.length
      ? await this.q('UPDATE machines SET state = $1, updated = $2 WHERE id = $3 AND state = ANY($4::text[])', [state, now, id, from], 'set state')
      : await this.q('UPDATE machines SET state = $1, updated = $2 WHERE id = $3', [state, now, id], 'set state');
    return r.rowCount === 1;
  }

  async setPolicy(id: string, policy: string, now: number): Promise<boolean> {
    return (await this.q('UPDATE machines SET policy = $1, updated = $2 WHERE id = $3', [policy, now, id], 'set policy')).rowCount === 1;
  }

  async setShare(id: string, shareSealed: Buffer, now: number): Promise<boolean> {
    return (await this.q('UPDATE machines SET share_sealed = $1, updated = $2 WHERE id = $3', [shareSealed, now, id], 'set share')).rowCount === 1;
  }

  async recordResult(id: string, r: { result: string; time: number; reasons?: string[]; resetCount?: number; restartCount?: number }): Promise<void> {
    const reasons = r.reasons ? JSON.stringify(r.reasons) : null;
    if (r.resetCount !== undefined && r.restartCount !== undefined) {
      await this.q('UPDATE machines SET last_result = $1, last_time = $2, last_reasons = $3, last_reset_count = $4, last_restart_count = $5 WHERE id = $6',
        [r.result, r.time, reasons, r.resetCount, r.restartCount, id], 'record result');
    } else {
      await this.q('UPDATE machines SET last_result = $1, last_time = $2, last_reasons = $3 WHERE id = $4', [r.result, r.time, reasons, id], 'record result');
    }
  }

  async deleteMachine(id: string): Promise<boolean> {
    return this.tx('delete machine', async (c) => {
      await c.query('DELETE FROM nonces WHERE machine = $1', [id]);
      await c.query('DELETE FROM enrollments WHERE machine = $1', [id]);
      await c.query('DELETE FROM refused_boots WHERE machine = $1', [id]);
      await c.query('DELETE FROM staged WHERE machine = $1', [id]);
      await c.query('DELETE FROM runtime WHERE machine = $1', [id]);
      return (await c.query('DELETE FROM machines WHERE id = $1', [id])).rowCount === 1;
    });
  }

  async gc(now: number, pendingCreatedBefore: number): Promise<number> {
    return this.tx('gc', async (c) => {
      const old = (await c.query<{ id: string }>("SELECT id FROM machines WHERE state = 'pending' AND created < $1 FOR UPDATE SKIP LOCKED", [pendingCreatedBefore])).rows.map((r) => r.id);
      if (old.length) {
        await c.query('DELETE FROM enrollments WHERE machine = ANY($1::text[])', [old]);
        await c.query('DELETE FROM machines WHERE id = ANY($1::text[])', [old]);
      }
      await c.query('DELETE FROM enrollments WHERE machine IS NULL AND expires_at < $1', [now]);
      // Keep expired nonces a while so that a late replay is still reported as expired/used.
      await c.query('DELETE FROM nonces WHERE expires_at < $1', [now - 3600_000]);
      return old.length;
    });
  }

  async putNonce(n: NonceRecord): Promise<void> {
    await this.q('INSERT INTO nonces (hash, machine, purpose, expires_at) VALUES ($1, $2, $3, $4)', [n.hash, n.machine, n.purpose, n.expiresAt], 'put nonce');
  }

  async consumeNonce(hash: Buffer, machine: string, now: number, purpose: NonceRecord['purpose'] = 'attest'): Promise<ConsumeResult> {
    // One conditional UPDATE decides, atomically across every replica (see the module doc).
    const won = await this.q('UPDATE nonces SET used_at = $1 WHERE hash = $2 AND machine = $3 AND purpose = $4 AND used_at IS NULL AND expires_at > $1 RETURNING 1 AS ok',
      [now, hash, machine, purpose], 'consume nonce');
    if (won.rowCount === 1) return 'ok';
    const r = (await this.q('SELECT machine, purpose, expires_at, used_at FROM nonces WHERE hash = $1', [hash], 'consume nonce')).rows[0];
    if (!r || r.machine !== machine || r.purpose !== purpose) return 'unknown';
    if (r.used_at !== null) return 'used';
    // Expired: burn it too, so that it can never be accepted later.
    await this.q('UPDATE nonces SET used_at = $1 WHERE hash = $2 AND used_at IS NULL', [now, hash], 'consume nonce');
    return 'expired';
  }

  async putEnrollment(e: EnrollmentRecord): Promise<void> {
    await this.q(`INSERT INTO enrollments (id, machine_id, hostname, ek_public, ak_public, secret_hash, nonce, expires_at, created, machine, token_id)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [e.id, e.machineId, e.hostname, e.ekPublic, e.akPublic, e.secretHash, e.nonce, e.expiresAt, e.created, e.machine ?? null, e.tokenId ?? null], 'put enrolment');
  }

  async getEnrollment(id: string): Promise<EnrollmentRecord | undefined> {
    const r = await this.q('SELECT * FROM enrollments WHERE id = $1', [id], 'get enrolment');
    return r.rows[0] ? enrollmentFromRow(r.rows[0]) : undefined;
  }

  async finishEnrollment(enrollment: string, m: MachineRecord): Promise<boolean> {
    return this.tx('finish enrolment', async (c) => {
      const ok = (await c.query('UPDATE enrollments SET machine = $1 WHERE id = $2 AND machine IS NULL', [m.id, enrollment])).rowCount === 1;
      if (!ok) return false;
      await this.insertMachine(c, m);
      return true;
    });
  }

  async commitEnrollment(enrollment: string, now: number): Promise<string | undefined> {
    return this.tx('commit enrolment', async (c) => {
      const e = (await c.query<{ machine: string }>('SELECT machine FROM enrollments WHERE id = $1 AND machine IS NOT NULL FOR UPDATE', [enrollment])).rows[0];
      if (!e) return undefined;
      const m = (await c.query<{ ek_name: Buffer }>("SELECT ek_name FROM machines WHERE id = $1 AND state = 'pending' FOR UPDATE", [e.machine])).rows[0];
      if (!m) return undefined;
      await c.query("UPDATE machines SET state = 'active', updated = $1 WHERE id = $2", [now, e.machine]);
      const old = (await c.query<{ id: string }>("SELECT id FROM machines WHERE ek_name = $1 AND id <> $2 AND state = 'active' FOR UPDATE", [m.ek_name, e.machine])).rows.map((r) => r.id);
      if (old.length) {
        await c.query('DELETE FROM nonces WHERE machine = ANY($1::text[])', [old]);
        await c.query('DELETE FROM machines WHERE id = ANY($1::text[])', [old]);
      }
      await c.query('DELETE FROM enrollments WHERE id = $1', [enrollment]);
      return e.machine;
    });
  }

  async abortEnrollment(enrollment: string): Promise<boolean> {
    return this.tx('abort enrolment', async (c) => {
      const e = (await c.query<{ machine: string | null }>('SELECT machine FROM enrollments WHERE id = $1 FOR UPDATE', [enrollment])).rows[0];
      if (!e) return false;
      if (e.machine) await c.query("DELETE FROM machines WHERE id = $1 AND state = 'pending'", [e.machine]);
      await c.query('DELETE FROM enrollments WHERE id = $1', [enrollment]);
      return true;
    });
  }

  async putEnrolToken(t: EnrolTokenRecord): Promise<void> {
    await this.q(`INSERT INTO enrol_tokens (id, hash, comment, created, expires_at, uses, uses_left, revoked_at, last_used)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [t.id, t.hash, t.comment, t.created, t.expiresAt, t.uses, t.usesLeft, t.revokedAt ?? null, t.lastUsed ?? null], 'put enrolment token');
  }

  async getEnrolToken(id: string): Promise<EnrolTokenRecord | undefined> {
    const r = await this.q('SELECT * FROM enrol_tokens WHERE id = $1', [id], 'get enrolment token');
    return r.rows[0] ? enrolTokenFromRow(r.rows[0]) : undefined;
  }

  async listEnrolTokens(): Promise<EnrolTokenRecord[]> {
    return (await this.q('SELECT * FROM enrol_tokens ORDER BY created, id', [], 'list enrolment tokens')).rows.map(enrolTokenFromRow);
  }

  async useEnrolToken(id: string, now: number): Promise<TokenUseResult> {
    // One conditional UPDATE decides (row lock + re-check under READ COMMITTED, as for nonces).
    const won = await this.q('UPDATE enrol_tokens SET uses_left = uses_left - 1, last_used = $1 WHERE id = $2 AND revoked_at IS NULL AND expires_at > $1 AND uses_left > 0 RETURNING 1 AS ok',
      [now, id], 'use enrolment token');
    if (won.rowCount === 1) return 'ok';
    const r = (await this.q('SELECT * FROM enrol_tokens WHERE id = $1', [id], 'use enrolment token')).rows[0];
    return r ? tokenRefusal(enrolTokenFromRow(r), now) : 'unknown';
  }

  async revokeEnrolToken(id: string, now: number): Promise<boolean> {
    return (await this.q('UPDATE enrol_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [now, id], 'revoke enrolment token')).rowCount === 1;
  }

  async machineStats(): Promise<MachineCounts> {
    const r = await this.q("SELECT state, SUM(CASE WHEN last_result LIKE 'refused:%' THEN 1 ELSE 0 END) AS failed, COUNT(*) AS n FROM machines GROUP BY state", [], 'machine stats');
    return countsFromRows(r.rows as { state: unknown; failed: unknown; n: unknown }[]);
  }

  async putRefusedBoot(rb: RefusedBoot): Promise<void> {
    if (rb.eventLog.length > MAX_REFUSED_LOG) throw new ServerError('INTERNAL', `refused boot log of ${rb.eventLog.length} bytes exceeds ${MAX_REFUSED_LOG}`);
    await this.q(`INSERT INTO refused_boots (machine, time, code, event_log, pcrs) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (machine) DO UPDATE SET time = excluded.time, code = excluded.code, event_log = excluded.event_log, pcrs = excluded.pcrs`,
    [rb.machine, rb.time, rb.code, rb.eventLog, rb.pcrs], 'put refused boot');
  }

  async getRefusedBoot(machine: string): Promise<RefusedBoot | undefined> {
    const r = await this.q('SELECT * FROM refused_boots WHERE machine = $1', [machine], 'get refused boot');
    return r.rows[0] ? refusedBootFromRow(r.rows[0]) : undefined;
  }

  async getNamedPolicy(name: string): Promise<string | undefined> {
    const r = await this.q('SELECT policy FROM policies WHERE name = $1', [name], 'get policy');
    return r.rows[0]?.policy as string | undefined;
  }

  async putNamedPolicy(name: string, policy: string, now: number): Promise<void> {
    await this.q('INSERT INTO policies (name, policy, updated) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, updated = excluded.updated',
      [name, policy, now], 'put policy');
  }

  async putStaged(x: StagedRecord): Promise<void> {
    await this.q(`INSERT INTO staged (id, machine, state, created, updated, label, mode, prediction, known_good, summary, used, unused)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
    [x.id, x.machine, x.state, x.created, x.updated, x.label, x.mode, x.prediction, JSON.stringify(x.knownGood), JSON.stringify(x.summary), x.used ? 1 : 0, x.unused], 'put staged boot');
  }

  async getStaged(id: string): Promise<StagedRecord | undefined> {
    const r = (await this.q('SELECT * FROM staged WHERE id = $1', [id], 'get staged boot')).rows[0];
    return r ? stagedFromRow(r) : undefined;
  }

  async listStaged(machine?: string): Promise<StagedRecord[]> {
    const r = machine
      ? await this.q('SELECT * FROM staged WHERE machine = $1 ORDER BY created, id', [machine], 'list staged boots')
      : await this.q('SELECT * FROM staged ORDER BY created, id', [], 'list staged boots');
    return r.rows.map(stagedFromRow);
  }

  async setStagedState(id: string, state: StagedState, now: number, from: StagedState[]): Promise<boolean> {
    return (await this.q('UPDATE staged SET state = $1, updated = $2 WHERE id = $3 AND state = ANY($4::text[])', [state, now, id, from], 'set staged state')).rowCount === 1;
  }

  async recordStagedUse(machine: string, matched: string[], keep: number, now: number): Promise<string[]> {
    return this.tx('record staged use', async (c) => {
      const rows = (await c.query<Row>("SELECT * FROM staged WHERE machine = $1 AND state = 'active' FOR UPDATE", [machine])).rows.map(stagedFromRow);
      const retired: string[] = [];
      for (const u of stagedUseUpdates(rows, matched, keep)) {
        await c.query('UPDATE staged SET used = $1, unused = $2, state = $3, updated = $4 WHERE id = $5', [u.used ? 1 : 0, u.unused, u.retire ? 'retired' : 'active', now, u.id]);
        if (u.retire) retired.push(u.id);
      }
      return retired;
    });
  }

  async getRuntime(machine: string): Promise<RuntimeRecord | undefined> {
    const r = (await this.q('SELECT * FROM runtime WHERE machine = $1', [machine], 'get runtime')).rows[0];
    return r ? runtimeFromRow(r) : undefined;
  }

  async putRuntimePolicy(hash: string, policy: string, now: number): Promise<void> {
    await this.q('INSERT INTO runtime_policies (hash, policy, created) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING', [hash, policy, now], 'put runtime policy');
  }

  async getRuntimePolicy(hash: string): Promise<string | undefined> {
    const r = (await this.q('SELECT policy FROM runtime_policies WHERE hash = $1', [hash], 'get runtime policy')).rows[0];
    return r ? (r.policy as string) : undefined;
  }

  async listRuntime(): Promise<RuntimeRecord[]> {
    return (await this.q('SELECT * FROM runtime ORDER BY machine', [], 'list runtime')).rows.map(runtimeFromRow);
  }

  async saveRuntime(r: RuntimeRecord): Promise<boolean> {
    const params = runtimeParams(r, r.version + 1);
    if (r.version === 0) {
      const q = `INSERT INTO runtime (${RUNTIME_COLUMNS.join(', ')}) VALUES (${RUNTIME_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (machine) DO NOTHING`;
      return (await this.q(q, params, 'save runtime')).rowCount === 1;
    }
    const n = RUNTIME_COLUMNS.length;
    const q = `UPDATE runtime SET ${RUNTIME_COLUMNS.slice(1).map((c, i) => `${c} = $${i + 1}`).join(', ')} WHERE machine = $${n} AND version = $${n + 1}`;
    return (await this.q(q, [...params.slice(1), r.machine, r.version], 'save runtime')).rowCount === 1;
  }

  async audit(e: AuditEntry): Promise<void> {
    await this.q('INSERT INTO audit (time, who, machine, action, result, code, reasons, peer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [e.time, e.who, e.machine ?? null, e.action, e.result, e.code ?? null, e.reasons ? JSON.stringify(e.reasons) : null, e.peer ?? null], 'audit');
  }

  async queryAudit(q: { machine?: string; limit?: number }): Promise<AuditRow[]> {
    const limit = Math.min(Math.max(q.limit ?? 100, 1), 100000);
    const rows = (q.machine
      ? await this.q('SELECT * FROM audit WHERE machine = $1 ORDER BY seq DESC LIMIT $2', [q.machine, limit], 'query audit')
      : await this.q('SELECT * FROM audit ORDER BY seq DESC LIMIT $1', [limit], 'query audit')).rows;
    return rows.reverse().map((r) => {
      const a: AuditRow = { seq: num(r.seq), time: num(r.time), who: r.who as string, action: r.action as string, result: r.result as string };
      if (r.machine != null) a.machine = r.machine as string;
      if (r.code != null) a.code = r.code as string;
      if (r.reasons != null) a.reasons = JSON.parse(r.reasons as string) as string[];
      if (r.peer != null) a.peer = r.peer as string;
      return a;
    });
  }
}
