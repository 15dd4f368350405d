/**
 * The request handlers: one self-contained request in, one reply out, all state in the store,
 * so that any replica answers any request. Every enrolment, release and refusal is logged (one
 * `key=value` line, never a secret) and appended to the audit table.
 * @module
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject, type X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkAKAttributes, makeCredential, objectName } from '../tpm/verify.ts';
import { unmarshalPublic2B, type TPMTPublic } from '../tpm/structures.ts';
import { TpmError } from '../tpm/errors.ts';
import { BootkeyError } from '../errors.ts';
import { ProtocolError } from '../protocol/errors.ts';
import type { Message, MessageOf } from '../protocol/messages.ts';
import { parseEventLog } from '../measuredboot/index.ts';
import { generatePolicy, addBoot, checkPolicy, type Policy } from '../measuredboot/policy.ts';
import { unverifiedLog } from '../measuredboot/trusted.ts';

/**
 * PCRs quoted at enrolment: every boot PCR the firmware log accounts for, so that the generated
 * policy reads only quoted PCRs. Not 10 (IMA) nor 11 (systemd-pcrphase): the running system
 * extends them after boot, outside the firmware log, so they would never replay.
 */
export const ENROLL_PCRS: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14];
/** The PCRs a default generated policy reads: DEFAULT_PCRS, 5 (ExitBootServices), 8, 9, 12 (command lines). */
export const GENERATED_POLICY_PCRS: readonly number[] = [0, 2, 4, 5, 7, 8, 9, 12];
import { parsePolicy } from '../measuredboot/policy-load.ts';
import { PolicyError } from '../measuredboot/policy-errors.ts';
import { EventLogError } from '../measuredboot/errors.ts';
import type { MachineRecord, Store } from './store.ts';
import { ServerError } from './errors.ts';
import { ctEqualSecret, ctEqual, randomId, sha256, type Vault } from './secrets.ts';
import { verifyAttestation, VerdictRefusal, verifyQuoteAndLog, requiredSelection, DEFAULT_RELEASED_PCR, DEFAULT_NONCE_TTL_MS } from './attest.ts';
import { checkEkCertificate } from './ekcert.ts';
import { permissiveReason } from '../measuredboot/policy-lint.ts';
import { releasedPcrProblem } from './released-pcr.ts';
import { enrolTokenHash, enrolTokenId, newEnrolToken, DEFAULT_TOKEN_TTL_S, DEFAULT_TOKEN_USES } from './enrol-tokens.ts';
import type { RateLimiter } from './ratelimit.ts';
import { tokenStatement } from '../client/token.ts';
import { MAX_REFUSED_LOG, type EnrolTokenRecord } from './store.ts';
import type { Metrics } from './metrics.ts';
import { pcrValuesToJson, type PcrValues } from '../pcrs.ts';

/** PCR values as JSON `{bank: {pcr: hex}}` (RefusedBoot.pcrs). */
export function pcrsToJson(v: PcrValues): string {
  return JSON.stringify(pcrValuesToJson(v));
}
import type { StagedRecord } from './store.ts';
import { decideStaging, requireStaging, effectivePolicy, formatWidening, matchStaged, readPrediction, selfStage, stagingOf, MAX_STAGED_PER_MACHINE } from './staging.ts';
import { stageNonce, stageRequestHash } from '../protocol/stage.ts';
import { verifyQuoteOnly } from './attest.ts';
import { evaluateBoot, requiredPcrs } from '../measuredboot/verdict.ts';
import { StageError } from '../measuredboot/stage.ts';
import { addChunk, releasePending, bootGate, runtimeJson, runtimeView, verifyRuntimeReport, RUNTIME_SELECTION, type RuntimeSession } from './runtime.ts';
import { checkRuntimePolicyText, compiledRuntimePolicy } from './runtime-policy.ts';
import { emptyRuntime, type RuntimeRecord } from './store.ts';
import type { Notifier } from './webhook.ts';

export const ENROLLMENT_TTL_MS = 5 * 60_000;
export const PENDING_MACHINE_TTL_MS = 10 * 60_000;

export interface ServiceOptions {
  store: Store;
  vault: Vault;
  adminToken: string;
  releasedPcr?: number;
  nonceTtlMs?: number;
  /** Manufacturer EK CA bundle: when set, enrolment requires a chaining EK certificate. */
  ekCa?: X509Certificate[];
  /** Directory of named policies (NAME.json), looked up after the store's named policies. */
  policiesDir?: string;
  /**
   * Ed25519 private key that signs each machine's LUKS2 token statement (STATE/token-signing.key).
   * Default: a fresh key per Service (tests); a real server loads the state's key.
   */
  tokenSigningKey?: KeyObject;
  /**
   * Per-machine budget for attest-begin/-finish, spent only by requests that passed the cheap
   * checks (machine active, AK name, token binding), so that a stranger who read the machine id
   * from a LUKS header cannot exhaust it. Default: none.
   */
  machineLimiter?: RateLimiter;
  /** Counters and histograms for the metrics listener (metrics.ts); default none. */
  metrics?: Metrics;
  /** Webhook and command hook of runtime failures (webhook.ts); default none. */
  notifier?: Notifier;
  log?: (line: string) => void;
  now?: () => number;
}

export interface RequestContext {
  peer: string;
  /** Per-connection state of a chunked runtime report (runtime.ts); absent: chunks refused. */
  runtime?: RuntimeSession;
}

/** One `key=value` log field; values with spaces or quotes are JSON-quoted. */
function kv(fields: Record<string, string | number | undefined>): string {
  return Object.entries(fields)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => {
      const s = String(v).replace(/[\r\n]+/g, ' ');
      return `${k}=${/^[A-Za-z0-9._:\/@+-]+$/.test(s) ? s : JSON.stringify(s)}`;
    })
    .join(' ');
}
export { kv as logLine };

function refuse(code: string, message: string, failures?: string[]): never {
  throw new ServerError(code, message, failures);
}

const REQUESTS = ['enroll-begin', 'enroll-finish', 'enroll-commit', 'enroll-abort', 'attest-begin', 'attest-finish', 'stage-begin', 'stage-finish', 'runtime-begin', 'runtime-entries', 'runtime-report', 'admin'] as const;
export type RequestType = (typeof REQUESTS)[number];
export const REQUEST_TYPES: readonly RequestType[] = REQUESTS;

export function policySummary(p: Policy, releasedPcr: number, origin: string): string {
  const r = p.rules;
  const parts: string[] = [];
  if (r.firmware) parts.push(`firmware (${r.firmware.allowed.length} allowed)`);
  if (r.bootChain) parts.push(`boot chain (${r.bootChain.stages.map((s) => s.role).join(' → ') || 'no stages'})`);
  if (r.secureBoot) parts.push(`Secure Boot ${r.secureBoot.enabled ? 'on' : 'off'}`);
  if (r.keys) parts.push('PK/KEK/db/dbx');
  if (r.authorities) parts.push(`${r.authorities.allowed.length} authorities`);
  if (r.kernelCmdline) parts.push(`kernel command line (${r.kernelCmdline.allowed.length} allowed)`);
  if (r.pcrValues) parts.push(`pinned PCRs ${Object.keys(r.pcrValues).join(',')}`);
  const sel = requiredSelection(p, releasedPcr)[0];
  return `${origin}; bank ${p.bank}, quoted PCRs ${sel.pcrs.join(',')} (released PCR ${releasedPcr}); rules: ${parts.join(', ') || 'none'}`;
}

/** The PCRs a policy quotes by itself (its PCRs and those carrying the kernel command line). */
export function policyPcrs(p: Policy): number[] {
  if (!p.pcrs.length) return [];
  return requiredSelection(p, p.pcrs[0])[0].pcrs;
}

const ADMIN_READS = new Set(['list', 'show', 'audit', 'token-list', 'staged-list']);
/** Attempts of a runtime-report's compare-and-set before BUSY. */
const RUNTIME_CAS_ATTEMPTS = 3;

export class Service {
  readonly releasedPcr: number;
  readonly nonceTtlMs: number;
  /** The token-signing public key (SPKI DER), sent in every attest-challenge. */
  readonly tokenKey: Buffer;
  private readonly signingKey: KeyObject;
  private readonly now: () => number;
  private readonly log: (line: string) => void;

  constructor(private readonly o: ServiceOptions) {
    this.releasedPcr = o.releasedPcr ?? DEFAULT_RELEASED_PCR;
    // The PCRs a policy generated at enrolment reads (named policies are checked when set).
    const bad = releasedPcrProblem(this.releasedPcr, GENERATED_POLICY_PCRS);
    if (bad) throw new ServerError('CONFIG', `--released-pcr: ${bad}`);
    this.signingKey = o.tokenSigningKey ?? generateKeyPairSync('ed25519').privateKey;
    if (this.signingKey.asymmetricKeyType !== 'ed25519' || this.signingKey.type !== 'private') throw new ServerError('CONFIG', 'the token-signing key must be an Ed25519 private key');
    this.tokenKey = createPublicKey(this.signingKey).export({ type: 'spki', format: 'der' });
    this.nonceTtlMs = o.nonceTtlMs ?? DEFAULT_NONCE_TTL_MS;
    this.now = o.now ?? Date.now;
    this.log = o.log ?? (() => undefined);
  }

  get store(): Store {
    return this.o.store;
  }

  /** Handles one request; never throws: failures become `error` replies. */
  async handle(msg: Message, ctx: RequestContext): Promise<Message> {
    const machine = 'machine' in msg && typeof msg.machine === 'string' ? msg.machine : undefined;
    try {
      switch (msg.t) {
        case 'enroll-begin': return await this.enrollBegin(msg, ctx);
        case 'enroll-finish': return await this.enrollFinish(msg, ctx);
        case 'enroll-commit': return await this.enrollCommit(msg, ctx);
        case 'enroll-abort': return await this.enrollAbort(msg, ctx);
        case 'attest-begin': return await this.attestBegin(msg, ctx);
        case 'attest-finish': return await this.attestFinish(msg, ctx);
        case 'stage-begin': return await this.stageBegin(msg, ctx);
        case 'stage-finish': return await this.stageFinish(msg, ctx);
        case 'runtime-begin': return await this.runtimeBegin(msg, ctx);
        case 'runtime-entries': return this.runtimeEntries(msg, ctx);
        case 'runtime-report': return await this.runtimeReport(msg, ctx);
        case 'admin': return await this.admin(msg, ctx);
        default: refuse('BAD_REQUEST', `"${msg.t}" is not a request`);
      }
    } catch (e) {
      return this.errorReply(e, msg.t, machine, ctx);
    }
  }

  private async errorReply(e: unknown, action: string, machine: string | undefined, ctx: RequestContext): Promise<Message> {
    let code = 'INTERNAL';
    let message = 'internal server error';
    let failures: string[] | undefined;
    if (e instanceof ServerError) {
      code = e.code;
      message = e.message;
      failures = e.failures;
    } else if (e instanceof ProtocolError) {
      code = e.code;
      message = e.message;
    } else if (e instanceof PolicyError) {
      code = e.code === 'BAD_POLICY' ? 'BAD_POLICY' : `POLICY_${e.code}`;
      message = e.message;
    } else if (e instanceof BootkeyError) {
      code = e.code;
      message = e.message;
    } else {
      this.log(kv({ event: 'internal-error', action, machine, peer: ctx.peer, error: (e as Error)?.stack ?? String(e) }));
    }
    this.o.metrics?.refusal(action, code);
    this.log(kv({ event: action, result: 'refused', code, machine, peer: ctx.peer, reason: message, failures: failures?.join('; ') }));
    // A machine's agent without a runtime policy asks every interval: RUNTIME_OFF (and BUSY) are
    // logged, not audited, or the audit table would grow by a row per machine per minute.
    if (!(action.startsWith('runtime-') && (code === 'RUNTIME_OFF' || code === 'BUSY'))) {
      await this.audit({ who: action === 'admin' ? 'admin' : action.startsWith('enroll') ? 'enroll' : 'machine', machine, action, result: 'refused', code, reasons: failures ?? [message], peer: ctx.peer });
    }
    return { t: 'error', code, message: message.slice(0, 4000), ...(failures ? { failures: failures.slice(0, 256).map((f) => f.slice(0, 4000)) } : {}) };
  }

  private async audit(e: { who: string; machine?: string; action: string; result: string; code?: string; reasons?: string[]; peer?: string }): Promise<void> {
    try {
      await this.o.store.audit({ time: this.now(), ...e });
    } catch (err) {
      this.log(kv({ event: 'audit-failed', action: e.action, error: (err as Error).message }));
    }
  }

  private checkAdmin(token: string): void {
    if (enrolTokenId(token)) refuse('TOKEN_SCOPE', 'an enrolment token cannot administer: use the admin token (on the admin\'s host)');
    if (!ctEqualSecret(token, this.o.adminToken)) refuse('AUTH', 'admin token refused');
  }

  /**
   * Authenticates an enrolment token (constant-time digest comparison). `started`: the token id
   * the enrolment was begun with (finish/commit/abort must present that same token). `live`:
   * also refuse a revoked or expired token (begin, finish, commit; abort only undoes).
   */
  private async checkEnrolToken(token: string, o: { started?: string; live: boolean }): Promise<EnrolTokenRecord> {
    const id = enrolTokenId(token);
    if (!id) {
      if (ctEqualSecret(token, this.o.adminToken)) refuse('TOKEN_SCOPE', 'the admin token does not enrol: create an enrolment token with `bootkey admin token create` and give that to the enrolling host');
      refuse('AUTH', 'enrolment token refused');
    }
    const t = await this.o.store.getEnrolToken(id);
    // Compare against a dummy digest when the id is unknown, so both paths do the same work.
    const ok = ctEqual(enrolTokenHash(token), t?.hash ?? Buffer.alloc(32));
    if (!t || !ok) refuse('AUTH', 'enrolment token refused');
    if (o.started !== undefined && o.started !== t.id) refuse('AUTH', 'this enrolment was started with another enrolment token');
    if (o.live) {
      if (t.revokedAt !== undefined) refuse('TOKEN_REVOKED', `enrolment token ${t.id} was revoked`);
      if (t.expiresAt <= this.now()) refuse('TOKEN_EXPIRED', `enrolment token ${t.id} expired at ${new Date(t.expiresAt).toISOString()}`);
    }
    return t;
  }

  /** Refuses EK_REVOKED when a revoked record holds this EK (un-revoke or delete it first, explicitly). */
  private async checkEkNotRevoked(ekName: Buffer): Promise<void> {
    const revoked = (await this.o.store.machinesByEkName(ekName)).filter((x) => x.state === 'revoked');
    if (revoked.length) {
      refuse('EK_REVOKED', `this TPM's EK is enrolled as revoked machine ${revoked.map((x) => x.id).join(', ')}: an admin must \`admin unrevoke\` it (or \`admin delete\` the revoked record) before it can enrol again`);
    }
  }

  /** The token's pinned EK and released PCR, as the client sent them, are the enrolled ones. */
  private checkTokenBinding(m: MachineRecord, b: { ekName: Buffer; releasedPcr: number }): void {
    if (!ctEqual(b.ekName, m.ekName)) refuse('TOKEN_EK', `the EK pinned in the LUKS2 token is not the EK enrolled for machine ${m.id}: the header was altered`);
    if (b.releasedPcr !== m.releasedPcr) refuse('TOKEN_RELEASED_PCR', `the LUKS2 token says released PCR ${b.releasedPcr}, machine ${m.id} was enrolled with ${m.releasedPcr}: the header was altered`);
  }

  /** Spends one unit of the machine's budget (only after the cheap checks passed). */
  private chargeMachine(id: string): void {
    if (this.o.machineLimiter && !this.o.machineLimiter.take(id)) refuse('RATE_LIMITED', `too many requests for machine ${id}; retry later`);
  }

  /** Deletes pending machines older than 10 minutes, expired enrolments and old nonces. */
  async gc(): Promise<number> {
    const now = this.now();
    const n = await this.o.store.gc(now, now - PENDING_MACHINE_TTL_MS);
    if (n) this.log(kv({ event: 'gc', removed: n }));
    return n;
  }

  // ---------- enrolment ----------

  private parseKey(b: Buffer, what: string): TPMTPublic {
    try {
      return unmarshalPublic2B(b, what);
    } catch (e) {
      if (e instanceof TpmError) refuse('BAD_KEY', `${what}: ${e.message}`);
      throw e;
    }
  }

  private async enrollBegin(m: MessageOf<'enroll-begin'>, ctx: RequestContext): Promise<Message> {
    // Authenticate first (spends nothing), validate, and only then take one use of the token.
    await this.checkEnrolToken(m.enrolToken, { live: true });
    await this.gc();
    const ek = this.parseKey(m.ekPublic, 'EK public');
    const ak = this.parseKey(m.akPublic, 'AK public');
    try {
      checkAKAttributes(ak);
    } catch (e) {
      if (e instanceof TpmError) refuse('AK_ATTRIBUTES', e.message);
      throw e;
    }
    if (this.o.ekCa) checkEkCertificate(m.ekCert, ek, this.o.ekCa, this.now());
    await this.checkEkNotRevoked(objectName(ek));
    const tokenId = enrolTokenId(m.enrolToken)!;
    const use = await this.o.store.useEnrolToken(tokenId, this.now());
    if (use === 'revoked') refuse('TOKEN_REVOKED', `enrolment token ${tokenId} was revoked`);
    if (use === 'expired') refuse('TOKEN_EXPIRED', `enrolment token ${tokenId} expired`);
    if (use === 'used-up') refuse('TOKEN_USED_UP', `enrolment token ${tokenId} has no uses left`);
    if (use !== 'ok') refuse('AUTH', 'enrolment token refused');
    await this.audit({ who: 'enroll', action: 'token-use', result: 'ok', reasons: [`token ${tokenId}`, `hostname ${m.hostname}`], peer: ctx.peer });
    const secret = randomBytes(32);
    const secretHash = sha256(secret);
    let cred;
    try {
      cred = makeCredential(ek, objectName(ak), secret);
    } catch (e) {
      if (e instanceof TpmError) refuse('BAD_KEY', `EK public: ${e.message}`);
      throw e;
    } finally {
      secret.fill(0);
    }
    const nonce = randomBytes(32);
    const id = randomId('e-');
    const now = this.now();
    await this.o.store.putEnrollment({
      id, machineId: m.machineId, hostname: m.hostname, ekPublic: m.ekPublic, akPublic: m.akPublic,
      secretHash, nonce, expiresAt: now + ENROLLMENT_TTL_MS, created: now, tokenId,
    });
    this.log(kv({ event: 'enroll-begin', result: 'ok', enrollment: id, token: tokenId, hostname: m.hostname, peer: ctx.peer }));
    // Every boot PCR the firmware log accounts for (ENROLL_PCRS): the policy generated from this
    // boot reads the command-line PCRs (8, 9, 12) and PCR 5 besides DEFAULT_PCRS, and may only
    // read what this quote covers.
    const pcrs = [...new Set([...ENROLL_PCRS, this.releasedPcr])].sort((a, b) => a - b);
    return { t: 'enroll-challenge', enrollment: id, credentialBlob: cred.credentialBlob, encryptedSecret: cred.secret, nonce, pcrSelection: [{ bank: 'sha256', pcrs }] };
  }

  private async namedPolicy(name: string): Promise<string> {
    const fromStore = await this.o.store.getNamedPolicy(name);
    if (fromStore !== undefined) return fromStore;
    if (this.o.policiesDir && /^[A-Za-z0-9._-]+$/.test(name) && !name.startsWith('.')) {
      try {
        return readFileSync(join(this.o.policiesDir, `${name}.json`), 'utf8');
      } catch {
        // fall through
      }
    }
    refuse('UNKNOWN_POLICY', `no policy named "${name}" (put one with \`bootkey admin put-policy\` or in the policies directory)`);
  }

  private async enrollFinish(m: MessageOf<'enroll-finish'>, ctx: RequestContext): Promise<Message> {
    const e = await this.o.store.getEnrollment(m.enrollment);
    await this.checkEnrolToken(m.enrolToken, { started: e ? (e.tokenId ?? '') : undefined, live: true });
    const now = this.now();
    if (!e || e.machine) refuse('UNKNOWN_ENROLLMENT', `enrolment ${m.enrollment} is unknown or already finished`);
    if (e.expiresAt <= now) refuse('ENROLLMENT_EXPIRED', `enrolment ${m.enrollment} expired; start again`);
    if (!ctEqual(sha256(m.proof), e.secretHash)) refuse('CREDENTIAL', 'the credential proof is wrong: the AK and the EK are not in the same TPM');
    const ak = this.parseKey(e.akPublic, 'AK public');
    const ek = this.parseKey(e.ekPublic, 'EK public');
    const v = await verifyQuoteAndLog({ akPublic: ak, quote: m.quote, signature: m.signature, nonce: e.nonce, pcrs: m.pcrs, eventLog: m.eventLog, skipPcr: this.releasedPcr });
    let policy: Policy;
    let origin: string;
    try {
      if (m.policy) {
        policy = parsePolicy(await this.namedPolicy(m.policy));
        origin = `named policy ${m.policy}`;
      } else {
        policy = generatePolicy(v.trusted, { bank: 'sha256' });
        origin = 'generated from this boot';
      }
    } catch (err) {
      if (err instanceof PolicyError || err instanceof EventLogError) refuse('POLICY', `policy: ${err.message}`);
      throw err;
    }
    const res = checkPolicy(policy, v.trusted);
    if (!res.pass) refuse('POLICY', `this boot does not match the ${origin}: ${res.failures.length} rule(s) failed`, res.failures.map((f) => `${f.rule}: ${f.message}`));
    const pcrProblem = releasedPcrProblem(this.releasedPcr, policyPcrs(policy));
    if (pcrProblem) refuse('BAD_RELEASED_PCR', pcrProblem);

    const id = randomId('m-');
    const share = randomBytes(32);
    const rec: MachineRecord = {
      id, machineId: e.machineId, hostname: e.hostname, ekPublic: e.ekPublic, ekName: objectName(ek), akPublic: e.akPublic, akName: objectName(ak),
      policy: JSON.stringify(policy), shareSealed: this.o.vault.seal(share, id), state: 'pending', releasedPcr: this.releasedPcr,
      created: now, updated: now, lastResult: 'enrolled', lastTime: now, lastResetCount: v.resetCount, lastRestartCount: v.restartCount,
    };
    if (!(await this.o.store.finishEnrollment(e.id, rec))) refuse('UNKNOWN_ENROLLMENT', `enrolment ${m.enrollment} was already finished`);
    this.log(kv({ event: 'enroll-finish', result: 'ok', enrollment: e.id, machine: id, hostname: e.hostname, peer: ctx.peer }));
    await this.audit({ who: 'enroll', machine: id, action: 'enroll-finish', result: 'ok', reasons: [origin], peer: ctx.peer });
    const tokenSig = sign(null, tokenStatement(id, rec.ekName, this.releasedPcr), this.signingKey);
    return { t: 'enroll-accepted', machine: id, serverShare: share, releasedPcr: this.releasedPcr, policySummary: policySummary(policy, this.releasedPcr, origin).slice(0, 4000), tokenSig };
  }

  private async enrollCommit(m: MessageOf<'enroll-commit'>, ctx: RequestContext): Promise<Message> {
    const e = await this.o.store.getEnrollment(m.enrollment);
    await this.checkEnrolToken(m.enrolToken, { started: e ? (e.tokenId ?? '') : undefined, live: true });
    const pending = e?.machine ? await this.o.store.getMachine(e.machine) : undefined;
    // Re-checked here: the old record may have been revoked since enroll-begin.
    const others = pending ? (await this.o.store.machinesByEkName(pending.ekName)).filter((x) => x.id !== pending.id) : [];
    if (pending) await this.checkEkNotRevoked(pending.ekName);
    const id = await this.o.store.commitEnrollment(m.enrollment, this.now());
    if (!id) refuse('UNKNOWN_ENROLLMENT', `enrolment ${m.enrollment} is unknown, not finished, or its machine was garbage-collected`);
    this.log(kv({ event: 'enroll-commit', result: 'ok', enrollment: m.enrollment, machine: id, token: e?.tokenId, peer: ctx.peer }));
    await this.audit({ who: 'enroll', machine: id, action: 'enroll-commit', result: 'ok', reasons: [`token ${e?.tokenId ?? '-'}`], peer: ctx.peer });
    // Re-enrolment replaced the active record(s) of the same EK: say so, per old record.
    for (const o of others.filter((x) => x.state === 'active')) {
      await this.audit({ who: 'enroll', machine: o.id, action: 'superseded', result: 'ok', reasons: [`re-enrolled as ${id}; the old record was deleted`], peer: ctx.peer });
    }
    return { t: 'ok' };
  }

  private async enrollAbort(m: MessageOf<'enroll-abort'>, ctx: RequestContext): Promise<Message> {
    const e = await this.o.store.getEnrollment(m.enrollment);
    // Abort only undoes: the token that started the enrolment may abort it even if revoked since.
    await this.checkEnrolToken(m.enrolToken, { started: e ? (e.tokenId ?? '') : undefined, live: false });
    if (!(await this.o.store.abortEnrollment(m.enrollment))) refuse('UNKNOWN_ENROLLMENT', `enrolment ${m.enrollment} is unknown`);
    this.log(kv({ event: 'enroll-abort', result: 'ok', enrollment: m.enrollment, machine: e?.machine, peer: ctx.peer }));
    await this.audit({ who: 'enroll', machine: e?.machine, action: 'enroll-abort', result: 'ok', peer: ctx.peer });
    return { t: 'ok' };
  }

  // ---------- boot-time release ----------

  private async activeMachine(id: string, akName?: Buffer): Promise<MachineRecord> {
    const m = await this.o.store.getMachine(id);
    if (!m) refuse('UNKNOWN_MACHINE', `machine ${id} is not enrolled`);
    if (m.state === 'revoked') refuse('REVOKED', `machine ${id} is revoked`);
    if (m.state !== 'active') refuse('PENDING', `machine ${id}'s enrolment was not committed`);
    if (akName && !ctEqual(akName, m.akName)) refuse('AK_MISMATCH', `the AK name sent is not the AK enrolled for machine ${id}`);
    return m;
  }

  private async attestBegin(msg: MessageOf<'attest-begin'>, ctx: RequestContext): Promise<Message> {
    const m = await this.activeMachine(msg.machine, msg.akName);
    this.checkTokenBinding(m, msg);
    this.chargeMachine(m.id);
    const policy = await this.effective(m);
    const nonce = randomBytes(32);
    await this.o.store.putNonce({ hash: sha256(nonce), machine: m.id, purpose: 'attest', expiresAt: this.now() + this.nonceTtlMs });
    this.log(kv({ event: 'attest-begin', result: 'ok', machine: m.id, peer: ctx.peer }));
    return { t: 'attest-challenge', nonce, pcrSelection: requiredSelection(policy, m.releasedPcr), releasedPcr: m.releasedPcr, expiresIn: Math.ceil(this.nonceTtlMs / 1000), tokenKey: this.tokenKey };
  }

  private async attestFinish(msg: MessageOf<'attest-finish'>, ctx: RequestContext): Promise<Message> {
    const t0 = process.hrtime.bigint();
    const m = await this.o.store.getMachine(msg.machine);
    const now = this.now();
    try {
      // Cheap checks before the machine's budget is spent (verifyAttestation repeats the first ones).
      if (m && m.state === 'active' && ctEqual(msg.akName, m.akName)) {
        this.checkTokenBinding(m, msg);
        this.chargeMachine(m.id);
      }
      const r = await verifyAttestation({
        machine: m, msg, policy: m && m.state === 'active' ? await this.effective(m) : undefined,
        consumeNonce: (h) => this.o.store.consumeNonce(h, msg.machine, this.now()),
        share: (mm) => this.o.vault.open(mm.shareSealed, mm.id),
      });
      await this.runtimeGate(m!, now, ctx);
      await this.o.store.recordResult(m!.id, { result: 'released', time: now, reasons: [], resetCount: r.resetCount, restartCount: r.restartCount });
      this.log(kv({ event: 'release', result: 'ok', machine: m!.id, hostname: m!.hostname, peer: ctx.peer, sealedTo: r.released.sealedTo.map((s) => `${s.bank}:${s.pcrs.join(',')}`).join(' ') }));
      for (const n of r.released.notices ?? []) this.log(kv({ event: 'notice', code: n.code, machine: m!.id, hostname: m!.hostname, peer: ctx.peer, message: n.message }));
      const notices = r.released.notices?.map((n) => `notice ${n.code}: ${n.message}`);
      await this.audit({ who: 'machine', machine: m!.id, action: 'release', result: 'ok', reasons: notices, peer: ctx.peer });
      this.o.metrics?.releases.inc();
      await this.recordStagedUse(m!, r.policy, r.values, ctx);
      return r.released;
    } catch (e) {
      if (m && e instanceof ServerError) {
        await this.o.store.recordResult(m.id, { result: `refused:${e.code}`, time: now, reasons: e.failures ?? [e.message] }).catch(() => undefined);
        // The quote verified: keep this boot's log (latest only, bounded) for the dashboard's diff.
        // Only a VerdictRefusal (decided after the quote verified) is kept, with the quoted values only.
        if (e instanceof VerdictRefusal && msg.eventLog.length <= MAX_REFUSED_LOG) {
          await this.o.store.putRefusedBoot({ machine: m.id, time: now, code: e.code, eventLog: msg.eventLog, pcrs: pcrsToJson(e.quoted) })
            .catch((err) => this.log(kv({ event: 'store-error', action: 'put-refused-boot', machine: m.id, error: (err as Error).message })));
        }
      }
      throw e;
    } finally {
      this.o.metrics?.verification.observe({}, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  // ---------- runtime attestation (runtime.ts, docs/PROTOCOL.md) ----------

  /**
   * The boot gate, after the quote verified (so the reasons go only to the machine's AK holder):
   * RUNTIME_FAILED until `admin clear`, RUNTIME_STALE unless `admin approve` (consumed here).
   */
  private async runtimeGate(m: MachineRecord, now: number, ctx: RequestContext): Promise<void> {
    for (let i = 0; i < RUNTIME_CAS_ATTEMPTS; i++) {
      const rt = await this.o.store.getRuntime(m.id);
      const g = bootGate(rt, now);
      if ('code' in g) refuse(g.code, g.message, g.failures);
      if (!g.useApproval) return;
      // One release through: the approval is spent, and the stale clock starts again now.
      if (await this.o.store.saveRuntime({ ...rt!, approvedUntil: undefined, lastReport: now, updated: now })) {
        this.log(kv({ event: 'runtime-approval-used', machine: m.id, peer: ctx.peer }));
        await this.audit({ who: 'machine', machine: m.id, action: 'runtime-approval-used', result: 'ok', reasons: ['a stale machine released once by `admin approve`'], peer: ctx.peer });
        return;
      }
    }
    refuse('BUSY', `machine ${m.id}'s runtime state changed concurrently; retry`);
  }

  private async runtimeBegin(msg: MessageOf<'runtime-begin'>, ctx: RequestContext): Promise<Message> {
    const m = await this.activeMachine(msg.machine, msg.akName);
    this.chargeMachine(m.id);
    const rt = await this.o.store.getRuntime(m.id);
    if (!rt?.policyHash) refuse('RUNTIME_OFF', `runtime attestation is off for machine ${m.id}: it has no runtime policy (bootkey admin set-runtime-policy)`);
    const nonce = randomBytes(32);
    const hash = sha256(nonce);
    await this.o.store.putNonce({ hash, machine: m.id, purpose: 'runtime', expiresAt: this.now() + this.nonceTtlMs });
    if (ctx.runtime) {
      releasePending(ctx.runtime);
      ctx.runtime.pending = { machine: m.id, nonceHash: hash, entries: [], bytes: 0 };
    }
    const chain = rt.count > 0 && rt.resetCount !== undefined && rt.bootDigest ? { resetCount: rt.resetCount, bootDigest: rt.bootDigest } : {};
    return { t: 'runtime-challenge', nonce, pcrSelection: RUNTIME_SELECTION, expiresIn: Math.ceil(this.nonceTtlMs / 1000), from: chain.resetCount !== undefined ? rt.count : 0, ...chain };
  }

  private runtimeEntries(msg: MessageOf<'runtime-entries'>, ctx: RequestContext): Message {
    return { t: 'runtime-more', received: addChunk(ctx.runtime ?? {}, msg) };
  }

  private async runtimeReport(msg: MessageOf<'runtime-report'>, ctx: RequestContext): Promise<Message> {
    const t0 = process.hrtime.bigint();
    const pending = ctx.runtime?.pending;
    releasePending(ctx.runtime);
    try {
      const m = await this.activeMachine(msg.machine, msg.akName);
      this.chargeMachine(m.id);
      const rt = await this.o.store.getRuntime(m.id);
      if (!rt?.policyHash) refuse('RUNTIME_OFF', `runtime attestation is off for machine ${m.id}: it has no runtime policy (bootkey admin set-runtime-policy)`);
      const policy = await compiledRuntimePolicy(rt.policyHash, (h) => this.o.store.getRuntimePolicy(h));
      const now = this.now();
      const v = await verifyRuntimeReport({ machine: m, rt, policy, msg, pending, now, consumeNonce: (h) => this.o.store.consumeNonce(h, m.id, now, 'runtime') });
      if (!(await this.o.store.saveRuntime(v.record))) refuse('BUSY', `machine ${m.id}'s runtime chain changed concurrently (another report?); retry`);
      this.o.metrics?.runtimeReports.inc({ result: v.result.state });
      this.o.metrics?.runtimeEntries.inc({}, v.verified);
      this.log(kv({ event: 'runtime-report', result: v.result.state, machine: m.id, hostname: m.hostname, peer: ctx.peer, entries: v.record.count, verified: v.verified, unbound: v.result.unbound, reason: v.result.state === 'attesting' ? undefined : v.result.message }));
      if (v.newFailure) await this.runtimeFailed(m, v.newFailure, now, ctx);
      return v.result;
    } finally {
      this.o.metrics?.runtimeVerification.observe({}, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  /** A failure: audit entry, log line, webhook and hook (in the background). */
  private async runtimeFailed(m: MachineRecord, f: { reason: string; failures: string[] }, now: number, ctx: RequestContext): Promise<void> {
    this.log(kv({ event: 'runtime-failed', machine: m.id, hostname: m.hostname, peer: ctx.peer, reason: f.reason, failures: f.failures.slice(0, 16).join('; ') }));
    await this.audit({ who: 'machine', machine: m.id, action: 'runtime-failed', result: 'refused', code: 'RUNTIME_FAILED', reasons: [f.reason, ...f.failures.slice(0, 64)], peer: ctx.peer });
    const n = this.o.notifier;
    if (n?.enabled) {
      void n.notify({ event: 'runtime-failed', machine: m.id, hostname: m.hostname, time: new Date(now).toISOString(), reason: f.reason, failures: f.failures.slice(0, 256) })
        .catch((e) => this.log(kv({ event: 'notify-error', machine: m.id, error: (e as Error).message })));
    }
  }

  /** Read-modify-write of a machine's runtime row with the compare-and-set. */
  private async updateRuntime(id: string, now: number, fn: (rt: RuntimeRecord) => RuntimeRecord): Promise<RuntimeRecord> {
    for (let i = 0; i < RUNTIME_CAS_ATTEMPTS; i++) {
      const cur = (await this.o.store.getRuntime(id)) ?? emptyRuntime(id, now);
      const next = { ...fn(cur), version: cur.version, updated: now };
      if (await this.o.store.saveRuntime(next)) return { ...next, version: cur.version + 1 };
    }
    refuse('BUSY', `machine ${id}'s runtime state changed concurrently; retry`);
  }

  // ---------- machine-side staging (src/server/staging.ts) ----------

  /** The machine's policy widened by its active staged boots. */
  private async effective(m: MachineRecord, staged?: StagedRecord[]): Promise<Policy> {
    const base = parsePolicy(m.policy);
    const active = (staged ?? (await this.o.store.listStaged(m.id))).filter((s) => s.state === 'active');
    if (!active.length) return base;
    return effectivePolicy(base, active, (id, why) => this.log(kv({ event: 'staged-skipped', machine: m.id, staged: id, reason: why })));
  }

  /** After a release: which staged boot it used, and retirement of those unused for `keep` releases. */
  private async recordStagedUse(m: MachineRecord, policy: Policy, values: PcrValues, ctx: RequestContext): Promise<void> {
    try {
      const active = (await this.o.store.listStaged(m.id)).filter((s) => s.state === 'active');
      if (!active.length) return;
      const matched = matchStaged(active, values, policy.bank);
      const retired = await this.o.store.recordStagedUse(m.id, matched, stagingOf(parsePolicy(m.policy)).keep, this.now());
      if (matched.length) this.log(kv({ event: 'staged-used', machine: m.id, staged: matched.join(',') }));
      for (const id of retired) {
        this.log(kv({ event: 'staged-retired', machine: m.id, staged: id }));
        await this.audit({ who: 'server', machine: m.id, action: 'staged-retired', result: 'ok', reasons: [`staged boot ${id} unused for ${stagingOf(parsePolicy(m.policy)).keep} successful releases`], peer: ctx.peer });
      }
    } catch (e) {
      // The release itself succeeded: bookkeeping must not turn it into a refusal.
      this.log(kv({ event: 'staged-use-failed', machine: m.id, error: (e as Error).message }));
    }
  }

  private async stageBegin(msg: MessageOf<'stage-begin'>, ctx: RequestContext): Promise<Message> {
    const m = await this.activeMachine(msg.machine, msg.akName);
    this.chargeMachine(m.id);
    const policy = await this.effective(m);
    requireStaging(policy);
    const random = randomBytes(32);
    const nonce = stageNonce(random, msg.requestHash);
    await this.o.store.putNonce({ hash: sha256(nonce), machine: m.id, purpose: 'stage', expiresAt: this.now() + this.nonceTtlMs });
    this.log(kv({ event: 'stage-begin', result: 'ok', machine: m.id, peer: ctx.peer }));
    return { t: 'stage-challenge', random, pcrSelection: [{ bank: policy.bank, pcrs: requiredPcrs(policy) }], expiresIn: Math.ceil(this.nonceTtlMs / 1000) };
  }

  private async stageFinish(msg: MessageOf<'stage-finish'>, ctx: RequestContext): Promise<Message> {
    const m = await this.activeMachine(msg.machine, msg.akName);
    this.chargeMachine(m.id);
    const staged = await this.o.store.listStaged(m.id);
    const policy = await this.effective(m, staged);
    const staging = stagingOf(policy);
    requireStaging(policy);
    // The quote is over SHA-256(random ‖ requestHash) recomputed from THIS request: a quote made
    // for another request (or a replayed random) gives another nonce, which the store never issued.
    const nonce = stageNonce(msg.random, stageRequestHash(msg.prediction, msg.label ?? ''));
    const v = await verifyQuoteOnly({
      akPublic: unmarshalPublic2B(m.akPublic, 'enrolled AK'), quote: msg.quote, signature: msg.signature, nonce, pcrs: msg.pcrs,
      afterNonce: async () => {
        const r = await this.o.store.consumeNonce(sha256(nonce), m.id, this.now(), 'stage');
        if (r === 'used') refuse('NONCE_USED', 'nonce: already used (a replayed staging request)');
        if (r === 'expired') refuse('NONCE_EXPIRED', 'nonce: expired; start again with stage-begin');
        if (r !== 'ok') refuse('NONCE', `nonce: not issued by this server for this staging request of machine ${m.id}`);
      },
      afterDigest: (q) => {
        if (m.lastResetCount !== undefined && m.lastRestartCount !== undefined && (q.resetCount < m.lastResetCount || (q.resetCount === m.lastResetCount && q.restartCount < m.lastRestartCount))) {
          refuse('COUNTERS', `TPM counters went backwards: resetCount ${q.resetCount}, restartCount ${q.restartCount}; the last success had ${m.lastResetCount}, ${m.lastRestartCount}`);
        }
      },
    });
    // The running boot must pass the machine's policy right now (no released-PCR check: the key
    // was released earlier in this boot).
    const verdict = evaluateBoot(policy, msg.eventLog, v.values);
    if (!verdict.pass) {
      refuse(verdict.code === 'POLICY' ? 'POLICY' : verdict.code!, `the running boot does not pass this machine's policy, so it may not stage: ${verdict.message}`, verdict.failures.length ? verdict.failures.map((f) => `${f.rule}: ${f.message}`) : undefined);
    }
    const live = staged.filter((s) => s.state === 'pending' || s.state === 'active');
    if (live.length >= MAX_STAGED_PER_MACHINE) refuse('STAGE_LIMIT', `machine ${m.id} already has ${live.length} staged boots pending or active: an operator must approve or drop some (bootkey admin staged)`);
    const predicted = readPrediction(msg.prediction);
    const now = this.now();
    const d = decideStaging(policy, predicted, { label: msg.label, at: new Date(now).toISOString() });
    const widenings = d.widenings.map(formatWidening).slice(0, 64).map((x) => x.slice(0, 4000));
    const signers = d.signers.slice(0, 64).map((x) => x.slice(0, 4000));
    if (!d.widenings.length) {
      await this.audit({ who: 'machine', machine: m.id, action: 'stage', result: 'ok', reasons: ['already allowed: nothing staged'], peer: ctx.peer });
      return { t: 'staged', id: '-', state: 'already-allowed', widenings: [], signers: [] };
    }
    const id = randomId('s-');
    const state = staging.requireApproval ? 'pending' : 'active';
    await this.o.store.putStaged({
      id, machine: m.id, state, created: now, updated: now, label: (msg.label ?? '').replace(/[\x00-\x1f\x7f]/g, ' '), mode: d.mode,
      prediction: msg.prediction, knownGood: d.entry.knownGood, summary: [...widenings, ...signers], used: false, unused: 0,
    });
    this.log(kv({ event: 'stage', result: 'ok', machine: m.id, staged: id, state, mode: d.mode, peer: ctx.peer, widens: widenings.join('; ') }));
    await this.audit({ who: 'machine', machine: m.id, action: 'stage', result: 'ok', reasons: [`staged ${id} (${state}, mode ${d.mode})`, ...(msg.label ? [`label ${msg.label}`] : []), ...widenings, ...signers], peer: ctx.peer });
    return { t: 'staged', id, state, widenings, signers };
  }

  // ---------- admin ----------

  private async machineOrRefuse(id: string | undefined): Promise<MachineRecord> {
    if (!id) refuse('BAD_REQUEST', 'this admin operation needs a machine id');
    const m = await this.o.store.getMachine(id);
    if (!m) refuse('UNKNOWN_MACHINE', `machine ${id} is not enrolled`);
    return m;
  }

  private async admin(msg: MessageOf<'admin'>, ctx: RequestContext): Promise<Message> {
    this.checkAdmin(msg.adminToken);
    const now = this.now();
    const result = await this.adminOp(msg, now);
    const tokenOp = msg.op.startsWith('token-');
    const subject = tokenOp ? (result as { id?: string }).id : msg.op.startsWith('staged-') && msg.op !== 'staged-list' ? (result as { machine?: string }).machine : msg.machine;
    this.log(kv({ event: 'admin', op: msg.op, result: 'ok', [tokenOp ? 'token' : 'machine']: subject, peer: ctx.peer }));
    if (!ADMIN_READS.has(msg.op)) {
      const reasons = msg.op === 'approve' ? [`for ${msg.seconds ?? 3600} s`] : msg.op === 'set-stale-limit' ? [`stale limit ${msg.seconds ? `${msg.seconds} s` : 'off'}`]
        : msg.op === 'set-runtime-policy' ? [msg.runtimePolicy === undefined ? 'runtime policy removed' : `runtime policy sha256 ${sha256(Buffer.from(msg.runtimePolicy, 'utf8')).toString('hex')}`]
        : tokenOp ? [`token ${subject}`, ...(msg.op === 'token-create' ? [`uses ${(result as { uses: number }).uses}`, `expires ${new Date((result as { expiresAt: number }).expiresAt).toISOString()}`, ...(msg.comment ? [`comment ${msg.comment}`] : [])] : [])]
        : msg.allowPermissive ? ['--allow-permissive'] : undefined;
      await this.audit({ who: 'admin', machine: tokenOp ? undefined : subject, action: `admin-${msg.op}`, result: 'ok', reasons: msg.staged ? [`staged ${msg.staged}`, ...(reasons ?? [])] : reasons, peer: ctx.peer });
    }
    return { t: 'admin-result', json: JSON.stringify(result) };
  }

  private async adminOp(msg: MessageOf<'admin'>, now: number): Promise<unknown> {
    const st = this.o.store;
    switch (msg.op) {
      case 'list': {
        const rts = new Map((await st.listRuntime()).map((r) => [r.machine, r]));
        return (await st.listMachines()).map((m) => ({
          id: m.id, hostname: m.hostname, machineId: m.machineId, state: m.state, created: m.created,
          lastResult: m.lastResult ?? null, lastTime: m.lastTime ?? null, runtime: runtimeJson(rts.get(m.id), now),
        }));
      }
      case 'show': {
        const m = await this.machineOrRefuse(msg.machine);
        return {
          id: m.id, hostname: m.hostname, machineId: m.machineId, state: m.state, releasedPcr: m.releasedPcr, created: m.created, updated: m.updated,
          ekName: m.ekName.toString('hex'), akName: m.akName.toString('hex'),
          lastResult: m.lastResult ?? null, lastTime: m.lastTime ?? null, lastReasons: m.lastReasons ?? [],
          lastResetCount: m.lastResetCount ?? null, lastRestartCount: m.lastRestartCount ?? null,
          quotedSelection: requiredSelection(parsePolicy(m.policy), m.releasedPcr),
          policy: JSON.parse(m.policy) as unknown,
          runtime: runtimeJson(await st.getRuntime(m.id), now, true),
        };
      }
      case 'set-runtime-policy': {
        const m = await this.machineOrRefuse(msg.machine);
        let hash: string | undefined;
        if (msg.runtimePolicy !== undefined) {
          hash = checkRuntimePolicyText(msg.runtimePolicy);
          await st.putRuntimePolicy(hash, msg.runtimePolicy, now);
        }
        const rt = await this.updateRuntime(m.id, now, (r) => ({ ...r, policyHash: hash }));
        return { machine: m.id, runtimePolicy: hash === undefined ? 'removed: runtime attestation is off for this machine' : 'set', policySha256: hash ?? null, runtime: runtimeView(rt, now) };
      }
      case 'set-stale-limit': {
        const m = await this.machineOrRefuse(msg.machine);
        if (msg.seconds === undefined) refuse('BAD_REQUEST', 'set-stale-limit needs seconds (0: off)');
        const limit = msg.seconds || undefined;
        const rt = await this.updateRuntime(m.id, now, (r) => ({ ...r, staleLimit: limit, lastReport: r.lastReport ?? (limit ? now : undefined) }));
        return { machine: m.id, staleLimit: rt.staleLimit ?? null, runtime: runtimeView(rt, now) };
      }
      case 'clear': {
        const m = await this.machineOrRefuse(msg.machine);
        const before = await st.getRuntime(m.id);
        if (!before || before.state !== 'failed') refuse('BAD_REQUEST', `machine ${m.id} has no failed runtime attestation to clear (runtime state ${runtimeView(before, now)})`);
        // The chain starts again from entry 0 (a fresh list is judged whole); the audit keeps the history.
        await this.updateRuntime(m.id, now, (r) => ({ ...r, state: 'new', reason: undefined, failedAt: undefined, failures: [], count: 0, pcr10: '{}', learnedKeys: '[]', resetCount: undefined, restartCount: undefined, bootDigest: undefined }));
        return { machine: m.id, runtime: 'cleared', was: before.reason ?? 'failed' };
      }
      case 'approve': {
        const m = await this.machineOrRefuse(msg.machine);
        const secs = msg.seconds ?? 3600;
        const rt = await this.updateRuntime(m.id, now, (r) => ({ ...r, approvedUntil: now + secs * 1000 }));
        return { machine: m.id, approvedUntil: rt.approvedUntil, note: `one boot release is allowed despite a stale runtime state until ${new Date(rt.approvedUntil!).toISOString()}` };
      }
      case 'set-policy': {
        const m = await this.machineOrRefuse(msg.machine);
        if (!msg.policy) refuse('BAD_REQUEST', 'set-policy needs a policy');
        const p = parsePolicy(msg.policy);
        this.lintPolicy(p, msg.allowPermissive === true);
        const pcrProblem = releasedPcrProblem(m.releasedPcr, policyPcrs(p));
        if (pcrProblem) refuse('BAD_RELEASED_PCR', `machine ${m.id}: ${pcrProblem}`);
        await st.setPolicy(m.id, JSON.stringify(p), now);
        return { machine: m.id, policy: 'replaced', quotedSelection: requiredSelection(p, m.releasedPcr) };
      }
      case 'put-policy': {
        // Named policy for enrolment (`enroll --policy NAME`); the name travels in `machine`.
        if (!msg.machine || !msg.policy) refuse('BAD_REQUEST', 'put-policy needs a name and a policy');
        const p = parsePolicy(msg.policy);
        this.lintPolicy(p, msg.allowPermissive === true);
        await st.putNamedPolicy(msg.machine, JSON.stringify(p), now);
        return { name: msg.machine, policy: 'stored' };
      }
      case 'add-boot': {
        const m = await this.machineOrRefuse(msg.machine);
        if (!msg.eventLog) refuse('BAD_REQUEST', 'add-boot needs an event log');
        let log;
        try {
          log = parseEventLog(msg.eventLog);
        } catch (e) {
          if (e instanceof EventLogError) refuse('EVENTLOG', `event log: ${e.message}`);
          throw e;
        }
        // An admin's log file, taken on the admin's word (no quote): unverifiedLog says so.
        const p = addBoot(parsePolicy(m.policy), unverifiedLog(log), { allowSecureBootOff: msg.flag === true });
        await st.setPolicy(m.id, JSON.stringify(p), now);
        return { machine: m.id, policy: 'merged' };
      }
      case 'revoke': {
        const m = await this.machineOrRefuse(msg.machine);
        if (!(await st.setMachineState(m.id, 'revoked', now, ['active', 'pending']))) refuse('BAD_REQUEST', `machine ${m.id} is already revoked`);
        return { machine: m.id, state: 'revoked' };
      }
      case 'unrevoke': {
        const m = await this.machineOrRefuse(msg.machine);
        if (!(await st.setMachineState(m.id, 'active', now, ['revoked']))) refuse('BAD_REQUEST', `machine ${m.id} is not revoked`);
        return { machine: m.id, state: 'active' };
      }
      case 'rotate': {
        const m = await this.machineOrRefuse(msg.machine);
        await st.setShare(m.id, this.o.vault.seal(randomBytes(32), m.id), now);
        return {
          machine: m.id, rotated: true,
          note: 'the machine\'s LUKS keyslot was derived from the old share: it falls back to the passphrase prompt until it is re-enrolled (bootkey enroll), which replaces this record',
        };
      }
      case 'delete': {
        // Two explicit, audited steps: revoke, then delete (a pending enrolment may go at once).
        const m = await this.machineOrRefuse(msg.machine);
        if (m.state === 'active') refuse('NOT_REVOKED', `machine ${m.id} is active: \`admin revoke ${m.id}\` first, then delete it`);
        await st.deleteMachine(m.id);
        return { machine: m.id, deleted: true, was: m.state };
      }
      case 'token-create': {
        const uses = msg.uses ?? DEFAULT_TOKEN_USES;
        const t = newEnrolToken();
        const rec: EnrolTokenRecord = {
          id: t.id, hash: t.hash, comment: (msg.comment ?? '').replace(/[\x00-\x1f\x7f]/g, ' '), created: now,
          expiresAt: now + (msg.ttl ?? DEFAULT_TOKEN_TTL_S) * 1000, uses, usesLeft: uses,
        };
        await st.putEnrolToken(rec);
        // The secret leaves only here, once, in this reply (never logged, never stored).
        return { id: t.id, token: t.token, uses, expiresAt: rec.expiresAt, comment: rec.comment };
      }
      case 'token-list':
        return (await st.listEnrolTokens()).map((t) => ({
          id: t.id, comment: t.comment, created: t.created, expiresAt: t.expiresAt, uses: t.uses, usesLeft: t.usesLeft,
          revokedAt: t.revokedAt ?? null, lastUsed: t.lastUsed ?? null,
          state: t.revokedAt !== undefined ? 'revoked' : t.expiresAt <= now ? 'expired' : t.usesLeft <= 0 ? 'used-up' : 'valid',
        }));
      case 'token-revoke': {
        if (!msg.machine || !/^t-[0-9a-f]{16}$/.test(msg.machine)) refuse('BAD_REQUEST', 'token-revoke needs a token id (t-…)');
        if (!(await st.getEnrolToken(msg.machine))) refuse('UNKNOWN_TOKEN', `no enrolment token ${msg.machine}`);
        if (!(await st.revokeEnrolToken(msg.machine, now))) refuse('BAD_REQUEST', `enrolment token ${msg.machine} is already revoked`);
        return { id: msg.machine, revoked: true };
      }
      case 'staged-list':
        return (await st.listStaged(msg.machine)).map((x) => ({
          id: x.id, machine: x.machine, state: x.state, label: x.label, mode: x.mode, created: x.created, updated: x.updated,
          used: x.used, unusedReleases: x.unused, summary: x.summary,
        }));
      case 'staged-approve': {
        const x = await this.stagedOrRefuse(msg.staged);
        if (x.state !== 'pending') refuse('BAD_REQUEST', `staged boot ${x.id} is ${x.state}, not pending`);
        const m = await this.machineOrRefuse(x.machine);
        // It must still apply on top of the machine's current policy and active staged boots.
        try {
          selfStage(await this.effective(m), readPrediction(x.prediction), { label: x.label || x.id });
        } catch (e) {
          if (e instanceof PolicyError || e instanceof StageError) refuse('STAGE_STALE', `staged boot ${x.id} no longer applies to machine ${m.id}'s policy: ${e.message}`);
          throw e;
        }
        if (!(await st.setStagedState(x.id, 'active', now, ['pending']))) refuse('BAD_REQUEST', `staged boot ${x.id} is no longer pending`);
        return { staged: x.id, machine: x.machine, state: 'active' };
      }
      case 'staged-drop': {
        const x = await this.stagedOrRefuse(msg.staged);
        if (!(await st.setStagedState(x.id, 'dropped', now, ['pending', 'active']))) refuse('BAD_REQUEST', `staged boot ${x.id} is ${x.state}: nothing to drop`);
        return { staged: x.id, machine: x.machine, state: 'dropped', was: x.state };
      }
      case 'audit':
        return await st.queryAudit({ machine: msg.machine, limit: msg.limit ?? 100 });
      case 'gc':
        return { removed: await this.gc() };
      default:
        refuse('BAD_REQUEST', `unknown admin operation "${msg.op}" (list, show, set-policy, put-policy, add-boot, revoke, unrevoke, rotate, delete, audit, gc, token-create, token-list, token-revoke, staged-list, staged-approve, staged-drop, set-runtime-policy, set-stale-limit, clear, approve)`);
    }
  }

  private async stagedOrRefuse(id: string | undefined): Promise<StagedRecord> {
    if (!id || !/^s-[0-9a-f]{16}$/.test(id)) refuse('BAD_REQUEST', 'this admin operation needs a staged boot id (s-…)');
    const x = await this.o.store.getStaged(id);
    if (!x) refuse('UNKNOWN_STAGED', `no staged boot ${id}`);
    return x;
  }

  private lintPolicy(p: Policy, allowPermissive: boolean): void {
    const why = permissiveReason(p);
    if (why && !allowPermissive) refuse('PERMISSIVE_POLICY', `${why} (give --allow-permissive to store it anyway)`);
  }
}
