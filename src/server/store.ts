/**
 * The server's store: every piece of state a request needs, so that any replica can answer
 * any request (a client may reconnect between attest-begin and attest-finish). The interface
 * is asynchronous so that the PostgreSQL backend (next issue) fits it; store-sqlite.ts is the
 * default backend. The store never sees a secret in clear: server shares arrive sealed by
 * the Vault (secrets.ts), nonces and enrolment secrets as SHA-256 digests.
 *
 * Only the rate-limit buckets (ratelimit.ts) live in process memory; see docs/SERVER.md.
 * @module
 */

export type MachineState = 'pending' | 'active' | 'revoked';

export interface MachineRecord {
  /** Server-assigned id, "m-" + 16 hex digits. */
  id: string;
  /** The client's own machine id (/etc/machine-id), informational. */
  machineId: string;
  hostname: string;
  /** TPM2B_PUBLIC bytes of the EK and the AK, as enrolled. */
  ekPublic: Buffer;
  ekName: Buffer;
  akPublic: Buffer;
  akName: Buffer;
  /** The measured-boot policy (JSON text, parsePolicy-valid). */
  policy: string;
  /** The server share sealed by the Vault (AAD = id). */
  shareSealed: Buffer;
  state: MachineState;
  releasedPcr: number;
  created: number;
  updated: number;
  lastResult?: string;
  lastTime?: number;
  lastReasons?: string[];
  /** TPMS_CLOCK_INFO counters of the last successful attestation (or the enrolment quote). */
  lastResetCount?: number;
  lastRestartCount?: number;
}

export interface NonceRecord {
  /** SHA-256 of the nonce (the nonce itself is never stored). */
  hash: Buffer;
  machine: string;
  /** attest: an attest-challenge's nonce; stage: a stage-challenge's (src/protocol/stage.ts). */
  purpose: 'attest' | 'stage' | 'runtime';
  expiresAt: number;
}

export type ConsumeResult = 'ok' | 'unknown' | 'used' | 'expired';

export interface EnrollmentRecord {
  /** "e-" + 16 hex digits. */
  id: string;
  machineId: string;
  hostname: string;
  ekPublic: Buffer;
  akPublic: Buffer;
  /** SHA-256 of the MakeCredential secret. */
  secretHash: Buffer;
  /** The quote nonce (not a secret: it is sent in clear). */
  nonce: Buffer;
  expiresAt: number;
  created: number;
  /** Set by enroll-finish: the pending machine it created. */
  machine?: string;
  /** The enrolment token that started it (finish, commit and abort must present the same one). */
  tokenId?: string;
}

/**
 * An enrolment token: authorises enrol-* requests only (never admin operations), for a number
 * of enrolments and until it expires or is revoked. The secret is never stored: `hash` is
 * SHA-256 of the whole token string (256 random bits, so a fast hash is enough).
 */
export interface EnrolTokenRecord {
  /** "t-" + 16 hex digits; also the token string's public prefix. */
  id: string;
  hash: Buffer;
  comment: string;
  created: number;
  expiresAt: number;
  uses: number;
  usesLeft: number;
  revokedAt?: number;
  lastUsed?: number;
}

/** What `useEnrolToken` decided: 'ok' took one use. */
export type TokenUseResult = 'ok' | 'unknown' | 'revoked' | 'expired' | 'used-up';

/** A machine-staged boot's lifecycle: pending (awaits approval) → active → retired | dropped. */
export type StagedState = 'pending' | 'active' | 'retired' | 'dropped';

/** A boot an enrolled machine staged for itself (`bootkey stage`, src/server/staging.ts). */
export interface StagedRecord {
  /** "s-" + 16 hex digits. */
  id: string;
  machine: string;
  state: StagedState;
  created: number;
  updated: number;
  label: string;
  /** The staging mode that accepted it (signed-by, any). */
  mode: string;
  /** The PredictedBoot JSON as the machine sent it (re-applied to the machine's policy at each release). */
  prediction: string;
  /** Predicted values of the PCRs the policy reads (PCR → hex): how a release is matched to it. */
  knownGood: Record<string, string>;
  /** What it widened and who signed it, for people. */
  summary: string[];
  /** A successful release matched it at least once. */
  used: boolean;
  /** Successful releases that did not match it since it was last matched (counted after the machine's first release of a staged boot). */
  unused: number;
}

/** A machine's runtime (IMA) attestation state (issue 12): 'stale' is derived at read time. */
export type RuntimeState = 'new' | 'attesting' | 'failed';

/**
 * Per-machine runtime attestation: its runtime policy and limits, and the verified chain of the
 * IMA list (so that any replica continues it: nothing in verifier memory). One row per machine,
 * updated with a compare-and-set on `version` (saveRuntime).
 */
export interface RuntimeRecord {
  machine: string;
  /** 0 = not stored yet; saveRuntime stores version + 1. */
  version: number;
  /** SHA-256 (hex) of the runtime policy's text in the runtime_policies table (shared by the
   * machines that use it); undefined: runtime attestation is off for this machine. */
  policyHash?: string;
  /** Seconds without a verified report after which the next boot is refused (RUNTIME_STALE); undefined: off. */
  staleLimit?: number;
  state: RuntimeState;
  /** The boot the chain belongs to: the quote's TPM counters and SHA-256 of the quoted boot PCRs 0–9. */
  resetCount?: number;
  restartCount?: number;
  bootDigest?: Buffer;
  /** Entries verified in that boot (the next report starts here). */
  count: number;
  /** PCR 10's running value per bank after `count` entries: JSON {bank: hex}. */
  pcr10: string;
  /** Keys learned from ima-buf entries of this boot (src/ima/policy.ts LearnedKey[]), JSON. */
  learnedKeys: string;
  /** Time of the last verified report (or when the stale limit was set). */
  lastReport?: number;
  /** state failed: why, when, and the failing entries (bounded). */
  reason?: string;
  failedAt?: number;
  failures: string[];
  /** `admin approve`: one boot release is allowed despite RUNTIME_STALE until this time. */
  approvedUntil?: number;
  updated: number;
}

export function emptyRuntime(machine: string, now: number): RuntimeRecord {
  return { machine, version: 0, state: 'new', count: 0, pcr10: '{}', learnedKeys: '[]', failures: [], updated: now };
}

export interface AuditEntry {
  time: number;
  /** "admin", "machine", "enroll", "server". */
  who: string;
  machine?: string;
  action: string;
  /** "ok" or "refused" or "error". */
  result: string;
  code?: string;
  reasons?: string[];
  peer?: string;
}

export interface AuditRow extends AuditEntry {
  seq: number;
}

/**
 * The event log of a machine's last refused attestation (latest only, at most
 * MAX_REFUSED_LOG bytes), kept so that the dashboard can diff it against the policy. Kept only
 * for refusals decided after the quote verified (EVENTLOG, SELECTION, REPLAY, ALREADY_RELEASED,
 * POLICY): only the holder of the machine's AK can write it, and `pcrs` are quoted values.
 */
export interface RefusedBoot {
  machine: string;
  time: number;
  code: string;
  eventLog: Buffer;
  /** The quoted PCR values, JSON `{bank: {pcr: hex}}`. */
  pcrs: string;
}

export const MAX_REFUSED_LOG = 1024 * 1024;

/** Machine counts for the metrics gauges. */
export interface MachineCounts {
  active: number;
  pending: number;
  revoked: number;
  /** Machines whose last attestation was refused (last_result "refused:…"). */
  failed: number;
}

export interface Store {
  /** Creates/updates the schema (idempotent). */
  migrate(): Promise<void>;
  close(): Promise<void>;
  schemaVersion(): Promise<number>;

  createMachine(m: MachineRecord): Promise<void>;
  getMachine(id: string): Promise<MachineRecord | undefined>;
  listMachines(): Promise<MachineRecord[]>;
  /** Every machine (any state) enrolled with this EK Name. */
  machinesByEkName(ekName: Buffer): Promise<MachineRecord[]>;
  /** Changes the state; with `from`, only if the current state is one of them. True if changed. */
  setMachineState(id: string, state: MachineState, now: number, from?: MachineState[]): Promise<boolean>;
  setPolicy(id: string, policy: string, now: number): Promise<boolean>;
  setShare(id: string, shareSealed: Buffer, now: number): Promise<boolean>;
  /** Records the result of an attestation; counters only on success. */
  recordResult(id: string, r: { result: string; time: number; reasons?: string[]; resetCount?: number; restartCount?: number }): Promise<void>;
  deleteMachine(id: string): Promise<boolean>;
  /** Deletes pending machines created before `createdBefore` and expired enrolments/nonces; returns machines removed. */
  gc(now: number, pendingCreatedBefore: number): Promise<number>;

  putNonce(n: NonceRecord): Promise<void>;
  /**
   * Atomically marks a nonce used: 'ok' exactly once for a nonce issued to `machine` that is
   * unused and unexpired, for `purpose` (default attest), even under concurrent calls from several replicas.
   */
  consumeNonce(hash: Buffer, machine: string, now: number, purpose?: NonceRecord['purpose']): Promise<ConsumeResult>;

  putEnrollment(e: EnrollmentRecord): Promise<void>;
  getEnrollment(id: string): Promise<EnrollmentRecord | undefined>;
  /**
   * enroll-finish, in one transaction: creates the pending machine and links it to the
   * enrolment, only if the enrolment is not linked yet. False if it was (a replay).
   */
  finishEnrollment(enrollment: string, m: MachineRecord): Promise<boolean>;
  /**
   * enroll-commit, in one transaction: pending → active, supersedes (deletes) other ACTIVE
   * machines with the same EK name (re-enrolment; a revoked record is never deleted here: the
   * service refuses EK_REVOKED before), deletes the enrolment. Returns the machine id or undefined.
   */
  commitEnrollment(enrollment: string, now: number): Promise<string | undefined>;
  /** enroll-abort, in one transaction: deletes the enrolment and its pending machine. */
  abortEnrollment(enrollment: string): Promise<boolean>;

  putEnrolToken(t: EnrolTokenRecord): Promise<void>;
  getEnrolToken(id: string): Promise<EnrolTokenRecord | undefined>;
  listEnrolTokens(): Promise<EnrolTokenRecord[]>;
  /**
   * Atomically takes one use of a token that is not revoked, not expired and not used up
   * (one conditional UPDATE: concurrent callers on several replicas never over-spend it).
   */
  useEnrolToken(id: string, now: number): Promise<TokenUseResult>;
  /** Marks a token revoked; false if unknown or already revoked. */
  revokeEnrolToken(id: string, now: number): Promise<boolean>;

  getNamedPolicy(name: string): Promise<string | undefined>;
  putNamedPolicy(name: string, policy: string, now: number): Promise<void>;

  /** Counts by state and failed (one aggregate query; the metrics cache it). */
  machineStats(): Promise<MachineCounts>;
  /** Replaces the machine's kept refused boot (latest only). */
  putRefusedBoot(r: RefusedBoot): Promise<void>;
  getRefusedBoot(machine: string): Promise<RefusedBoot | undefined>;
  putStaged(s: StagedRecord): Promise<void>;
  getStaged(id: string): Promise<StagedRecord | undefined>;
  /** A machine's staged boots (every machine's without `machine`), oldest first. */
  listStaged(machine?: string): Promise<StagedRecord[]>;
  /** Changes the state if the current one is among `from`. True if changed. */
  setStagedState(id: string, state: StagedState, now: number, from: StagedState[]): Promise<boolean>;
  /**
   * After a successful release, in one transaction over the machine's ACTIVE staged boots: those
   * in `matched` become used with unused = 0; once any of them was ever used, every other one
   * counts one more unused release, and those reaching `keep` become retired. Returns the ids
   * retired.
   */
  recordStagedUse(machine: string, matched: string[], keep: number, now: number): Promise<string[]>;

  /** A machine's runtime attestation row (undefined: never set). */
  getRuntime(machine: string): Promise<RuntimeRecord | undefined>;
  /** Stores a runtime policy under the SHA-256 (hex) of its text (content-addressed: idempotent). */
  putRuntimePolicy(hash: string, policy: string, now: number): Promise<void>;
  getRuntimePolicy(hash: string): Promise<string | undefined>;
  /** Every machine's runtime row. */
  listRuntime(): Promise<RuntimeRecord[]>;
  /**
   * Stores `r` as version `r.version + 1` if the stored row is still at `r.version` (0: no row
   * yet). False when another request (on any replica) changed it first.
   */
  saveRuntime(r: RuntimeRecord): Promise<boolean>;

  /** Appends to the audit log (the table refuses UPDATE and DELETE). */
  audit(e: AuditEntry): Promise<void>;
  queryAudit(q: { machine?: string; limit?: number }): Promise<AuditRow[]>;
}
