/**
 * The PostgreSQL schema as numbered migrations (applied in order, each recorded in
 * `schema_version`, under an advisory lock so that replicas starting together do not race).
 * Same tables and columns as the SQLite backend (store-sqlite.ts); BYTEA for bytes, BIGINT for
 * millisecond times. The audit table is append-only: triggers raise on UPDATE, DELETE and
 * TRUNCATE, whoever the database user is.
 * @module
 */

/** Advisory lock key for migrations (any constant; "bootkey" in ASCII). */
export const MIGRATION_LOCK = 0x626f6f746b6579;

export const PG_MIGRATIONS: string[] = [
  // 1: initial schema
  `CREATE TABLE machines (
     id TEXT PRIMARY KEY,
     machine_id TEXT NOT NULL,
     hostname TEXT NOT NULL,
     ek_public BYTEA NOT NULL,
     ek_name BYTEA NOT NULL,
     ak_public BYTEA NOT NULL,
     ak_name BYTEA NOT NULL,
     policy TEXT NOT NULL,
     share_sealed BYTEA NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
     released_pcr INTEGER NOT NULL,
     created BIGINT NOT NULL,
     updated BIGINT NOT NULL,
     last_result TEXT,
     last_time BIGINT,
     last_reasons TEXT,
     last_reset_count BIGINT,
     last_restart_count BIGINT
   );
   CREATE INDEX machines_ek_name ON machines (ek_name);
   CREATE INDEX machines_pending ON machines (created) WHERE state = 'pending';
   CREATE TABLE nonces (
     hash BYTEA PRIMARY KEY,
     machine TEXT NOT NULL,
     purpose TEXT NOT NULL,
     expires_at BIGINT NOT NULL,
     used_at BIGINT
   );
   CREATE INDEX nonces_expires ON nonces (expires_at);
   CREATE INDEX nonces_machine ON nonces (machine);
   CREATE TABLE enrollments (
     id TEXT PRIMARY KEY,
     machine_id TEXT NOT NULL,
     hostname TEXT NOT NULL,
     ek_public BYTEA NOT NULL,
     ak_public BYTEA NOT NULL,
     secret_hash BYTEA NOT NULL,
     nonce BYTEA NOT NULL,
     expires_at BIGINT NOT NULL,
     created BIGINT NOT NULL,
     machine TEXT
   );
   CREATE INDEX enrollments_machine ON enrollments (machine);
   CREATE TABLE policies (
     name TEXT PRIMARY KEY,
     policy TEXT NOT NULL,
     updated BIGINT NOT NULL
   );
   CREATE TABLE audit (
     seq BIGSERIAL PRIMARY KEY,
     time BIGINT NOT NULL,
     who TEXT NOT NULL,
     machine TEXT,
     action TEXT NOT NULL,
     result TEXT NOT NULL,
     code TEXT,
     reasons TEXT,
     peer TEXT
   );
   CREATE INDEX audit_machine ON audit (machine, seq);
   CREATE FUNCTION bootkey_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     RAISE EXCEPTION 'audit log is append-only' USING ERRCODE = 'insufficient_privilege';
   END $$;
   CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION bootkey_audit_append_only();
   CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION bootkey_audit_append_only();
   CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION bootkey_audit_append_only();`,
  // 2: enrolment tokens (hashed; scoped to enrolment), and which token started an enrolment
  `CREATE TABLE enrol_tokens (
     id TEXT PRIMARY KEY,
     hash BYTEA NOT NULL,
     comment TEXT NOT NULL,
     created BIGINT NOT NULL,
     expires_at BIGINT NOT NULL,
     uses INTEGER NOT NULL,
     uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
     revoked_at BIGINT,
     last_used BIGINT
   );
   ALTER TABLE enrollments ADD COLUMN token_id TEXT;`,
  // 3: the event log of each machine's last refused attestation (latest only, bounded), for the dashboard's diff
  `CREATE TABLE refused_boots (
     machine TEXT PRIMARY KEY,
     time BIGINT NOT NULL,
     code TEXT NOT NULL,
     event_log BYTEA NOT NULL,
     pcrs TEXT NOT NULL
   );`,
  // 4: boots staged by machines for themselves (issue 11 §3)
  `CREATE TABLE staged (
     id TEXT PRIMARY KEY,
     machine TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired', 'dropped')),
     created BIGINT NOT NULL,
     updated BIGINT NOT NULL,
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
     stale_limit BIGINT,
     state TEXT NOT NULL CHECK (state IN ('new', 'attesting', 'failed')),
     reset_count BIGINT,
     restart_count BIGINT,
     boot_digest BYTEA,
     count BIGINT NOT NULL,
     pcr10 TEXT NOT NULL,
     learned_keys TEXT NOT NULL,
     last_report BIGINT,
     reason TEXT,
     failed_at BIGINT,
     failures TEXT NOT NULL,
     approved_until BIGINT,
     updated BIGINT NOT NULL
   );
   CREATE TABLE runtime_policies (
     hash TEXT PRIMARY KEY,
     policy TEXT NOT NULL,
     created BIGINT NOT NULL
   );`,
];
