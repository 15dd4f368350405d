/**
 * The SQLite store (better-sqlite3): WAL mode, a busy timeout so that several processes (two
 * replicas on one host) can share the file, every multi-step change in one transaction, and
 * an append-only audit table enforced by triggers. Schema changes are numbered migrations
 * recorded in `schema_version`; `migrate()` is idempotent.
 * @module
 */
import Database from 'better-sqlite3';
import { MAX_REFUSED_LOG, type MachineCounts, type RefusedBoot, type AuditEntry, AuditRow, ConsumeResult, EnrollmentRecord, EnrolTokenRecord, MachineRecord, MachineState, NonceRecord, StagedRecord, StagedState, Store, TokenUseResult, RuntimeRecord } from './store.ts';
import { ServerError } from './errors.ts';
import { machineFromRow, enrollmentFromRow, enrolTokenFromRow, tokenRefusal, countsFromRows, refusedBootFromRow, stagedFromRow, stagedUseUpdates, runtimeFromRow, runtimeParams, RUNTIME_COLUMNS, type Row } from './store-rows.ts';

const MIGRATIONS: string[] = [
  // 1: initial schema
  `CREATE TABLE machines (
     id TEXT PRIMARY KEY,
     machine_id TEXT NOT NULL,
     hostname TEXT NOT NULL,
     ek_public BLOB NOT NULL,
     ek_name BLOB NOT NULL,
     ak_public BLOB NOT NULL,
     ak_name BLOB NOT NULL,
     policy TEXT NOT NULL,
     share_sealed BLOB NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
     released_pcr INTEGER NOT NULL,
     created INTEGER NOT NULL,
     updated INTEGER NOT NULL,
     last_result TEXT,
     last_time INTEGER,
     last_reasons TEXT,
     last_reset_count INTEGER,
     last_restart_count INTEGER
   );
   CREATE INDEX machines_ek_name ON machines (ek_name);
   CREATE TABLE nonces (
     hash BLOB PRIMARY KEY,
     machine TEXT NOT NULL,
     purpose TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     used_at INTEGER
   );
   CREATE INDEX nonces_expires ON nonces (expires_at);
   CREATE TABLE enrollments (
     id TEXT PRIMARY KEY,
     machine_id TEXT NOT NULL,
     hostname TEXT NOT NULL,
     ek_public BLOB NOT NULL,
     ak_public BLOB NOT NULL,
     secret_hash BLOB NOT NULL,
     nonce BLOB NOT NULL,
     expires_at INTEGER NOT NULL,
     created INTEGER NOT NULL,
     machine TEXT
   );
   CREATE TABLE policies (
     name TEXT PRIMARY KEY,
     policy TEXT NOT NULL,
     updated INTEGER NOT NULL
   );
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     time INTEGER NOT NULL,
     who TEXT NOT NULL,
     machine TEXT,
     action TEXT NOT NULL,
     result TEXT NOT NULL,
     code TEXT,
     reasons TEXT,
     peer TEXT
   );
   CREATE INDEX audit_machine ON audit (machine, seq);
   CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
   CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;`,
  // 2: enrolment tokens (hashed; scoped to enrolment), and which token started an enrolment
  `CREATE TABLE enrol_tokens (
     id TEXT PRIMARY KEY,
     hash BLOB NOT NULL,
     comment TEXT NOT NULL,
     created INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     uses INTEGER NOT NULL,
     uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
     revoked_at INTEGER,
     last_used INTEGER
   );
   ALTER TABLE enrollments ADD COLUMN token_id TEXT;`,
  // 3: the event log of each machine's last refused attestation (latest only, bounded), for the dashboard's diff
  `CREATE TABLE refused_boots (
     machine TEXT PRIMARY KEY,
     time INTEGER NOT NULL,
     code TEXT NOT NULL,
     event_log BLOB NOT NULL,
     pcrs TEXT NOT NULL
   );`,
  // 4: boots staged by machines for themselves (issue 11 §3)
  `CREATE TABLE staged (
     id TEXT PRIMARY KEY,
     machine TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired', 'dropped')),
     created INTEGER NOT NULL,
     updated INTEGER NOT NULL,
     label TEXT NOT NULL,
     mode TEXT NOT NULL,
     prediction TEXT NOT NULL,
     known_good TEXT NOT NULL,
     summary TEXT NOT NULL,
     used INTEGER NOT NULL,
     unused INTEGER NOT NULL
   );
   CREATE INDEX staged_machine ON staged (machine, created);`,
  // 5: runtime (IMA) attestation per machine (issue 12): policy, limits, the verified chain, the verdict
  `CREATE TABLE runtime (
     machine TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     policy_hash TEXT,
     stale_limit INTEGER,
     state TEXT NOT NULL CHECK (state IN ('new', 'attesting', 'failed')),
     reset_count INTEGER,
     restart_count INTEGER,
     boot_digest BLOB,
     count INTEGER NOT NULL,
     pcr10 TEXT NOT NULL,
     learned_keys TEXT NOT NULL,
     last_report INTEGER,
     reason TEXT,
     failed_at INTEGER,
     failures TEXT NOT NULL,
     approved_until INTEGER,
     updated INTEGER NOT NULL
   );
   CREATE TABLE runtime_policies (
     hash TEXT PRIMARY KEY,
     policy TEXT NOT NULL,
     created INTEGER NOT NULL
   );`,
];



export class SqliteStore implements Store {
  readonly db: Database.Database;

  /** Opens (creating if needed) the database file; call migrate() before use. */
  constructor(readonly file: string) {
    try {
      this.db = new Database(file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('busy_timeout = 5000');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma('synchronous = NORMAL');
    } catch (e) {
      throw new ServerError('STORE', `cannot open the database ${file}: ${(e as Error).message}`);
    }
  }

  async migrate(): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied INTEGER NOT NULL)');
    const apply = this.db.transaction(() => {
      const cur = (this.db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0;
      for (let v = cur + 1; v <= MIGRATIONS.length; v++) {
        this.db.exec(MIGRATIONS[v - 1]);
        this.db.prepare('INSERT INTO schema_version (version, applied) VALUES (?, ?)').run(v, Date.now());
      }
    });
    apply.immediate();
  }

  async schemaVersion(): Promise<number> {
    return (this.db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private insertMachine(m: MachineRecord): void {
    this.db.prepare(`INSERT INTO machines (id, machine_id, hostname, ek_public, ek_name, ak_public, ak_name, policy, share_sealed, state,
        released_pcr, created, updated, last_result, last_time, last_reasons, last_reset_count, last_restart_count)
      VALUES (@id, @machineId, @hostname, @ekPublic, @ekName, @akPublic, @akName, @policy, @shareSealed, @state,
        @releasedPcr, @created, @updated, @lastResult, @lastTime, @lastReasons, @lastResetCount, @lastRestartCount)`).run({
      ...m,
      lastResult: m.lastResult ?? null,
      lastTime: m.lastTime ?? null,
      lastReasons: m.lastReasons ? JSON.stringify(m.lastReasons) : null,
      lastResetCount: m.lastResetCount ?? null,
      lastRestartCount: m.lastRestartCount ?? null,
    });
  }

  async createMachine(m: MachineRecord): Promise<void> {
    this.insertMachine(m);
  }

  async getMachine(id: string): Promise<MachineRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM machines WHERE id = ?').get(id) as Row | undefined;
    return r ? machineFromRow(r) : undefined;
  }

  async listMachines(): Promise<MachineRecord[]> {
    return (this.db.prepare('SELECT * FROM machines ORDER BY created, id').all() as Row[]).map(machineFromRow);
  }

  async machinesByEkName(ekName: Buffer): Promise<MachineRecord[]> {
    return (this.db.prepare('SELECT * FROM machines WHERE ek_name = ? ORDER BY created, id').all(ekName) as Row[]).map(machineFromRow);
  }

  async setMachineState(id: string, state: MachineState, now: number, from?: MachineState[]): Promise<boolean> {
    if (from && from.length) {
      const q = `UPDATE machines SET state = ?, updated = ? WHERE id = ? AND state IN (${from.map(() => '?').join(',')})`;
      return this.db.prepare(q).run(state, now, id, ...from).changes === 1;
    }
    return this.db.prepare('UPDATE machines SET state = ?, updated = ? WHERE id = ?').run(state, now, id).changes === 1;
  }

  async setPolicy(id: string, policy: string, now: number): Promise<boolean> {
    return this.db.prepare('UPDATE machines SET policy = ?, updated = ? WHERE id = ?').run(policy, now, id).changes === 1;
  }

  async setShare(id: string, shareSealed: Buffer, now: number): Promise<boolean> {
    return this.db.prepare('UPDATE machines SET share_sealed = ?, updated = ? WHERE id = ?').run(shareSealed, now, id).changes === 1;
  }

  async recordResult(id: string, r: { result: string; time: number; reasons?: string[]; resetCount?: number; restartCount?: number }): Promise<void> {
    const reasons = r.reasons ? JSON.stringify(r.reasons) : null;
    if (r.resetCount !== undefined && r.restartCount !== undefined) {
      this.db.prepare('UPDATE machines SET last_result = ?, last_time = ?, last_reasons = ?, last_reset_count = ?, last_restart_count = ? WHERE id = ?')
        .run(r.result, r.time, reasons, r.resetCount, r.restartCount, id);
    } else {
      this.db.prepare('UPDATE machines SET last_result = ?, last_time = ?, last_reasons = ? WHERE id = ?').run(r.result, r.time, reasons, id);
    }
  }

  async deleteMachine(id: string): Promise<boolean> {
    const tx = this.db.transaction(() => {
      this.db.prepare('DELETE FROM nonces WHERE machine = ?').run(id);
      this.db.prepare('DELETE FROM enrollments WHERE machine = ?').run(id);
      this.db.prepare('DELETE FROM refused_boots WHERE machine = ?').run(id);
      this.db.prepare('DELETE FROM staged WHERE machine = ?').run(id);
      this.db.prepare('DELETE FROM runtime WHERE machine = ?').run(id);
      return this.db.prepare('DELETE FROM machines WHERE id = ?').run(id).changes === 1;
    });
    return tx.immediate();
  }

  async gc(now: number, pendingCreatedBefore: number): Promise<number> {
    const tx = this.db.transaction(() => {
      const old = (this.db.prepare("SELECT id FROM machines WHERE state = 'pending' AND created < ?").all(pendingCreatedBefore) as { id: string }[]).map((r) => r.id);
      for (const id of old) {
        this.db.prepare('DELETE FROM enrollments WHERE machine = ?').run(id);
        this.db.prepare('DELETE FROM machines WHERE id = ?').run(id);
      }
      this.db.prepare('DELETE FROM enrollments WHERE machine IS NULL AND expires_at < ?').run(now);
      // Keep expired nonces a while so that a late replay is still reported as expired/used.
      this.db.prepare('DELETE FROM nonces WHERE expires_at < ?').run(now - 3600_000);
      return old.length;
    });
    return tx.immediate();
  }

  async putNonce(n: NonceRecord): Promise<void> {
    this.db.prepare('INSERT INTO nonces (hash, machine, purpose, expires_at) VALUES (?, ?, ?, ?)').run(n.hash, n.machine, n.purpose, n.expiresAt);
  }

  async consumeNonce(hash: Buffer, machine: string, now: number, purpose: NonceRecord['purpose'] = 'attest'): Promise<ConsumeResult> {
    // One UPDATE decides atomically (SQLite serialises writers across connections and processes).
    const changed = this.db.prepare('UPDATE nonces SET used_at = ? WHERE hash = ? AND machine = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?').run(now, hash, machine, purpose, now).changes;
    if (changed === 1) return 'ok';
    const r = this.db.prepare('SELECT machine, purpose, expires_at, used_at FROM nonces WHERE hash = ?').get(hash) as { machine: string; purpose: string; expires_at: number; used_at: number | null } | undefined;
    if (!r || r.machine !== machine || r.purpose !== purpose) return 'unknown';
    if (r.used_at !== null) return 'used';
    // Expired: burn it too, so that it can never be accepted later.
    this.db.prepare('UPDATE nonces SET used_at = ? WHERE hash = ? AND used_at IS NULL').run(now, hash);
    return 'expired';
  }

  async putEnrollment(e: EnrollmentRecord): Promise<void> {
    this.db.prepare(`INSERT INTO enrollments (id, machine_id, hostname, ek_public, ak_public, secret_hash, nonce, expires_at, created, machine, token_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(e.id, e.machineId, e.hostname, e.ekPublic, e.akPublic, e.secretHash, e.nonce, e.expiresAt, e.created, e.machine ?? null, e.tokenId ?? null);
  }

  async getEnrollment(id: string): Promise<EnrollmentRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM enrollments WHERE id = ?').get(id) as Row | undefined;
    return r ? enrollmentFromRow(r) : undefined;
  }

  async finishEnrollment(enrollment: string, m: MachineRecord): Promise<boolean> {
    const tx = this.db.transaction(() => {
      const ok = this.db.prepare('UPDATE enrollments SET machine = ? WHERE id = ? AND machine IS NULL').run(m.id, enrollment).changes === 1;
      if (!ok) return false;
      this.insertMachine(m);
      return true;
    });
    return tx.immediate();
  }

  async commitEnrollment(enrollment: string, now: number): Promise<string | undefined> {
    const tx = this.db.transaction((): string | undefined => {
      const e = this.db.prepare('SELECT machine FROM enrollments WHERE id = ? AND machine IS NOT NULL').get(enrollment) as { machine: string } | undefined;
      if (!e) return undefined;
      const m = this.db.prepare("SELECT ek_name FROM machines WHERE id = ? AND state = 'pending'").get(e.machine) as { ek_name: Buffer } | undefined;
      if (!m) return undefined;
      this.db.prepare("UPDATE machines SET state = 'active', updated = ? WHERE id = ?").run(now, e.machine);
      const old = (this.db.prepare("SELECT id FROM machines WHERE ek_name = ? AND id <> ? AND state = 'active'").all(m.ek_name, e.machine) as { id: string }[]).map((r) => r.id);
      for (const id of old) {
        this.db.prepare('DELETE FROM nonces WHERE machine = ?').run(id);
        this.db.prepare('DELETE FROM machines WHERE id = ?').run(id);
      }
      this.db.prepare('DELETE FROM enrollments WHERE id = ?').run(enrollment);
      return e.machine;
    });
    return tx.immediate();
  }

  async abortEnrollment(enrollment: string): Promise<boolean> {
    const tx = this.db.transaction(() => {
      const e = this.db.prepare('SELECT machine FROM enrollments WHERE id = ?').get(enrollment) as { machine: string | null } | undefined;
      if (!e) return false;
      if (e.machine) this.db.prepare("DELETE FROM machines WHERE id = ? AND state = 'pending'").run(e.machine);
      this.db.prepare('DELETE FROM enrollments WHERE id = ?').run(enrollment);
      return true;
    });
    return tx.immediate();
  }

  async putEnrolToken(t: EnrolTokenRecord): Promise<void> {
    this.db.prepare(`INSERT INTO enrol_tokens (id, hash, comment, created, expires_at, uses, uses_left, revoked_at, last_used)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(t.id, t.hash, t.comment, t.created, t.expiresAt, t.uses, t.usesLeft, t.revokedAt ?? null, t.lastUsed ?? null);
  }

  async getEnrolToken(id: string): Promise<EnrolTokenRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM enrol_tokens WHERE id = ?').get(id) as Row | undefined;
    return r ? enrolTokenFromRow(r) : undefined;
  }

  async listEnrolTokens(): Promise<EnrolTokenRecord[]> {
    return (this.db.prepare('SELECT * FROM enrol_tokens ORDER BY created, id').all() as Row[]).map(enrolTokenFromRow);
  }

  async useEnrolToken(id: string, now: number): Promise<TokenUseResult> {
    const changed = this.db.prepare('UPDATE enrol_tokens SET uses_left = uses_left - 1, last_used = ? WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND uses_left > 0')
      .run(now, id, now).changes;
    if (changed === 1) return 'ok';
    const r = this.db.prepare('SELECT * FROM enrol_tokens WHERE id = ?').get(id) as Row | undefined;
    return r ? tokenRefusal(enrolTokenFromRow(r), now) : 'unknown';
  }

  async revokeEnrolToken(id: string, now: number): Promise<boolean> {
    return this.db.prepare('UPDATE enrol_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes === 1;
  }

  async getNamedPolicy(name: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT policy FROM policies WHERE name = ?').get(name) as { policy: string } | undefined;
    return r?.policy;
  }

  async putNamedPolicy(name: string, policy: string, now: number): Promise<void> {
    this.db.prepare('INSERT INTO policies (name, policy, updated) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, updated = excluded.updated').run(name, policy, now);
  }

  async machineStats(): Promise<MachineCounts> {
    const rows = this.db.prepare("SELECT state, SUM(CASE WHEN last_result LIKE 'refused:%' THEN 1 ELSE 0 END) AS failed, COUNT(*) AS n FROM machines GROUP BY state").all() as { state: string; failed: number; n: number }[];
    return countsFromRows(rows);
  }

  async putRefusedBoot(r: RefusedBoot): Promise<void> {
    if (r.eventLog.length > MAX_REFUSED_LOG) throw new ServerError('INTERNAL', `refused boot log of ${r.eventLog.length} bytes exceeds ${MAX_REFUSED_LOG}`);
    this.db.prepare('INSERT INTO refused_boots (machine, time, code, event_log, pcrs) VALUES (?, ?, ?, ?, ?) ON CONFLICT (machine) DO UPDATE SET time = excluded.time, code = excluded.code, event_log = excluded.event_log, pcrs = excluded.pcrs')
      .run(r.machine, r.time, r.code, r.eventLog, r.pcrs);
  }

  async getRefusedBoot(machine: string): Promise<RefusedBoot | undefined> {
    const r = this.db.prepare('SELECT * FROM refused_boots WHERE machine = ?').get(machine) as Row | undefined;
    return r ? refusedBootFromRow(r) : undefined;
  }

  async putStaged(x: StagedRecord): Promise<void> {
    this.db.prepare(`INSERT INTO staged (id, machine, state, created, updated, label, mode, prediction, known_good, summary, used, unused)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(x.id, x.machine, x.state, x.created, x.updated, x.label, x.mode, x.prediction, JSON.stringify(x.knownGood), JSON.stringify(x.summary), x.used ? 1 : 0, x.unused);
  }

  async getStaged(id: string): Promise<StagedRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM staged WHERE id = ?').get(id) as Row | undefined;
    return r ? stagedFromRow(r) : undefined;
  }

  async listStaged(machine?: string): Promise<StagedRecord[]> {
    const rows = (machine ? this.db.prepare('SELECT * FROM staged WHERE machine = ? ORDER BY created, id').all(machine) : this.db.prepare('SELECT * FROM staged ORDER BY created, id').all()) as Row[];
    return rows.map(stagedFromRow);
  }

  async setStagedState(id: string, state: StagedState, now: number, from: StagedState[]): Promise<boolean> {
    const q = `UPDATE staged SET state = ?, updated = ? WHERE id = ? AND state IN (${from.map(() => '?').join(',')})`;
    return this.db.prepare(q).run(state, now, id, ...from).changes === 1;
  }

  async recordStagedUse(machine: string, matched: string[], keep: number, now: number): Promise<string[]> {
    const tx = this.db.transaction(() => {
      const rows = (this.db.prepare("SELECT * FROM staged WHERE machine = ? AND state = 'active'").all(machine) as Row[]).map(stagedFromRow);
      const retired: string[] = [];
      for (const u of stagedUseUpdates(rows, matched, keep)) {
        this.db.prepare('UPDATE staged SET used = ?, unused = ?, state = ?, updated = ? WHERE id = ?').run(u.used ? 1 : 0, u.unused, u.retire ? 'retired' : 'active', now, u.id);
        if (u.retire) retired.push(u.id);
      }
      return retired;
    });
    return tx.immediate();
  }

  async getRuntime(machine: string): Promise<RuntimeRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM runtime WHERE machine = ?').get(machine) as Row | undefined;
    return r ? runtimeFromRow(r) : undefined;
  }

  async putRuntimePolicy(hash: string, policy: string, now: number): Promise<void> {
    this.db.prepare('INSERT INTO runtime_policies (hash, policy, created) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING').run(hash, policy, now);
  }

  async getRuntimePolicy(hash: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT policy FROM runtime_policies WHERE hash = ?').get(hash) as { policy: string } | undefined;
    return r?.policy;
  }

  async listRuntime(): Promise<RuntimeRecord[]> {
    return (this.db.prepare('SELECT * FROM runtime ORDER BY machine').all() as Row[]).map(runtimeFromRow);
  }

  async saveRuntime(r: RuntimeRecord): Promise<boolean> {
    const params = runtimeParams(r, r.version + 1);
    if (r.version === 0) {
      const q = `INSERT INTO runtime (${RUNTIME_COLUMNS.join(', ')}) VALUES (${RUNTIME_COLUMNS.map(() => '?').join(', ')}) ON CONFLICT (machine) DO NOTHING`;
      return this.db.prepare(q).run(...params).changes === 1;
    }
    const q = `UPDATE runtime SET ${RUNTIME_COLUMNS.slice(1).map((c) => `${c} = ?`).join(', ')} WHERE machine = ? AND version = ?`;
    return this.db.prepare(q).run(...params.slice(1), r.machine, r.version).changes === 1;
  }

  async audit(e: AuditEntry): Promise<void> {
    this.db.prepare('INSERT INTO audit (time, who, machine, action, result, code, reasons, peer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(e.time, e.who, e.machine ?? null, e.action, e.result, e.code ?? null, e.reasons ? JSON.stringify(e.reasons) : null, e.peer ?? null);
  }

  async queryAudit(q: { machine?: string; limit?: number }): Promise<AuditRow[]> {
    const limit = Math.min(Math.max(q.limit ?? 100, 1), 100000);
    const rows = (q.machine
      ? this.db.prepare('SELECT * FROM audit WHERE machine = ? ORDER BY seq DESC LIMIT ?').all(q.machine, limit)
      : this.db.prepare('SELECT * FROM audit ORDER BY seq DESC LIMIT ?').all(limit)) as Row[];
    return rows.reverse().map((r) => {
      const a: AuditRow = { seq: r.seq as number, time: r.time as number, who: r.who as string, action: r.action as string, result: r.result as string };
      if (r.machine != null) a.machine = r.machine as string;
      if (r.code != null) a.code = r.code as string;
      if (r.reasons != null) a.reasons = JSON.parse(r.reasons as string) as string[];
      if (r.peer != null) a.peer = r.peer as string;
      return a;
    });
  }
}
