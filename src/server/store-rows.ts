/**
 * Row → record mapping shared by the SQLite and PostgreSQL stores (same column names; numbers
 * may come back as strings from PostgreSQL's BIGINT, hence num()).
 * @module
 */
import type { MachineRecord, MachineState, EnrollmentRecord, EnrolTokenRecord, TokenUseResult, MachineCounts, RefusedBoot, StagedRecord, StagedState, RuntimeRecord, RuntimeState } from './store.ts';

export type Row = Record<string, unknown>;

export function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

export function machineFromRow(r: Row): MachineRecord {
  const m: MachineRecord = {
    id: r.id as string,
    machineId: r.machine_id as string,
    hostname: r.hostname as string,
    ekPublic: r.ek_public as Buffer,
    ekName: r.ek_name as Buffer,
    akPublic: r.ak_public as Buffer,
    akName: r.ak_name as Buffer,
    policy: r.policy as string,
    shareSealed: r.share_sealed as Buffer,
    state: r.state as MachineState,
    releasedPcr: num(r.released_pcr),
    created: num(r.created),
    updated: num(r.updated),
  };
  if (r.last_result != null) m.lastResult = r.last_result as string;
  if (r.last_time != null) m.lastTime = num(r.last_time);
  if (r.last_reasons != null) m.lastReasons = JSON.parse(r.last_reasons as string) as string[];
  if (r.last_reset_count != null) m.lastResetCount = num(r.last_reset_count);
  if (r.last_restart_count != null) m.lastRestartCount = num(r.last_restart_count);
  return m;
}

export function enrollmentFromRow(r: Row): EnrollmentRecord {
  const e: EnrollmentRecord = {
    id: r.id as string,
    machineId: r.machine_id as string,
    hostname: r.hostname as string,
    ekPublic: r.ek_public as Buffer,
    akPublic: r.ak_public as Buffer,
    secretHash: r.secret_hash as Buffer,
    nonce: r.nonce as Buffer,
    expiresAt: num(r.expires_at),
    created: num(r.created),
  };
  if (r.machine != null) e.machine = r.machine as string;
  if (r.token_id != null) e.tokenId = r.token_id as string;
  return e;
}

export function enrolTokenFromRow(r: Row): EnrolTokenRecord {
  const t: EnrolTokenRecord = {
    id: r.id as string,
    hash: r.hash as Buffer,
    comment: r.comment as string,
    created: num(r.created),
    expiresAt: num(r.expires_at),
    uses: num(r.uses),
    usesLeft: num(r.uses_left),
  };
  if (r.revoked_at != null) t.revokedAt = num(r.revoked_at);
  if (r.last_used != null) t.lastUsed = num(r.last_used);
  return t;
}


/** Why a token's use was refused (revocation first, then expiry, then uses), for a token that exists. */
export function tokenRefusal(t: EnrolTokenRecord, now: number): TokenUseResult {
  if (t.revokedAt !== undefined) return 'revoked';
  if (t.expiresAt <= now) return 'expired';
  if (t.usesLeft <= 0) return 'used-up';
  return 'unknown';
}

/** machineStats' GROUP BY state rows → counts. */
export function countsFromRows(rows: { state: unknown; failed: unknown; n: unknown }[]): MachineCounts {
  const c: MachineCounts = { active: 0, pending: 0, revoked: 0, failed: 0 };
  for (const r of rows) {
    if (r.state === 'active' || r.state === 'pending' || r.state === 'revoked') c[r.state] = num(r.n);
    c.failed += num(r.failed ?? 0);
  }
  return c;
}

export function refusedBootFromRow(r: Row): RefusedBoot {
  return { machine: r.machine as string, time: num(r.time), code: r.code as string, eventLog: r.event_log as Buffer, pcrs: r.pcrs as string };
}

export function stagedFromRow(r: Row): StagedRecord {
  return {
    id: r.id as string, machine: r.machine as string, state: r.state as StagedState, created: num(r.created), updated: num(r.updated),
    label: r.label as string, mode: r.mode as string, prediction: r.prediction as string,
    knownGood: JSON.parse(r.known_good as string) as Record<string, string>, summary: JSON.parse(r.summary as string) as string[],
    used: num(r.used) === 1 || r.used === true, unused: num(r.unused),
  };
}

/** The shared retire rule of recordStagedUse: new (used, unused, state) per active row. */
export function stagedUseUpdates(rows: { id: string; used: boolean; unused: number }[], matched: string[], keep: number): { id: string; used: boolean; unused: number; retire: boolean }[] {
  const m = new Set(matched);
  if (!m.size && !rows.some((r) => r.used)) return [];
  return rows.map((r) => {
    if (m.has(r.id)) return { id: r.id, used: true, unused: 0, retire: false };
    const unused = r.unused + 1;
    return { id: r.id, used: r.used, unused, retire: unused >= keep };
  });
}

/** The columns of the runtime table, in the order of runtimeParams. */
export const RUNTIME_COLUMNS = ['machine', 'version', 'policy_hash', 'stale_limit', 'state', 'reset_count', 'restart_count', 'boot_digest', 'count', 'pcr10', 'learned_keys', 'last_report', 'reason', 'failed_at', 'failures', 'approved_until', 'updated'] as const;

export function runtimeParams(r: RuntimeRecord, version: number): unknown[] {
  return [r.machine, version, r.policyHash ?? null, r.staleLimit ?? null, r.state, r.resetCount ?? null, r.restartCount ?? null, r.bootDigest ?? null,
    r.count, r.pcr10, r.learnedKeys, r.lastReport ?? null, r.reason ?? null, r.failedAt ?? null, JSON.stringify(r.failures), r.approvedUntil ?? null, r.updated];
}

export function runtimeFromRow(r: Row): RuntimeRecord {
  const x: RuntimeRecord = {
    machine: r.machine as string, version: num(r.version), state: r.state as RuntimeState, count: num(r.count), pcr10: r.pcr10 as string, learnedKeys: r.learned_keys as string,
    failures: JSON.parse(r.failures as string) as string[], updated: num(r.updated),
  };
  if (r.policy_hash != null) x.policyHash = r.policy_hash as string;
  if (r.stale_limit != null) x.staleLimit = num(r.stale_limit);
  if (r.reset_count != null) x.resetCount = num(r.reset_count);
  if (r.restart_count != null) x.restartCount = num(r.restart_count);
  if (r.boot_digest != null) x.bootDigest = Buffer.from(r.boot_digest as Uint8Array);
  if (r.last_report != null) x.lastReport = num(r.last_report);
  if (r.reason != null) x.reason = r.reason as string;
  if (r.failed_at != null) x.failedAt = num(r.failed_at);
  if (r.approved_until != null) x.approvedUntil = num(r.approved_until);
  return x;
}
