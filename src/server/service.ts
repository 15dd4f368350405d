/**
 * The request handlers: one self-contained request in, one reply out, all state in the store,
 * so that any replica answers any request. Every enrolment, release and refusal is logged (one
 * `key=value` line, never a secret) and appended to the audit table.
 * @module
 */
import { randomBytes, type X509Certificate } from 'node:crypto';
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
import { parsePolicy } from '../measuredboot/policy-load.ts';
import { PolicyError } from '../measuredboot/policy-errors.ts';
import { EventLogError } from '../measuredboot/errors.ts';
import type { MachineRecord, Store } from './store.ts';
import { ServerError } from './errors.ts';
import { ctEqualSecret, ctEqual, randomId, sha256, type Vault } from './secrets.ts';
import { verifyAttestation, verifyQuoteAndLog, requiredSelection, DEFAULT_RELEASED_PCR, DEFAULT_NONCE_TTL_MS } from './attest.ts';
import { checkEkCertificate } from './ekcert.ts';

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
  log?: (line: string) => void;
  now?: () => number;
}

export interface RequestContext {
  peer: string;
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

const REQUESTS = ['enroll-begin', 'enroll-finish', 'enroll-commit', 'enroll-abort', 'attest-begin', 'attest-finish', 'admin'] as const;
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

export class Service {
  readonly releasedPcr: number;
  readonly nonceTtlMs: number;
  private readonly now: () => number;
  private readonly log: (line: string) => void;

  constructor(private readonly o: ServiceOptions) {
    this.releasedPcr = o.releasedPcr ?? DEFAULT_RELEASED_PCR;
    if (!Number.isInteger(this.releasedPcr) || this.releasedPcr < 0 || this.releasedPcr > 23) throw new ServerError('CONFIG', `released PCR ${this.releasedPcr} is not 0-23`);
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
    this.log(kv({ event: action, result: 'refused', code, machine, peer: ctx.peer, reason: message, failures: failures?.join('; ') }));
    await this.audit({ who: action === 'admin' ? 'admin' : action.startsWith('enroll') ? 'enroll' : 'machine', machine, action, result: 'refused', code, reasons: failures ?? [message], peer: ctx.peer });
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
    if (!ctEqualSecret(token, this.o.adminToken)) refuse('AUTH', 'admin token refused');
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
    this.checkAdmin(m.adminToken);
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
      secretHash, nonce, expiresAt: now + ENROLLMENT_TTL_MS, created: now,
    });
    this.log(kv({ event: 'enroll-begin', result: 'ok', enrollment: id, hostname: m.hostname, peer: ctx.peer }));
    // Every boot PCR (0–14): the policy generated from this boot reads the command-line PCRs
    // (8, 9, 12) and PCR 5 besides DEFAULT_PCRS, and may only read what this quote covers.
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
    this.checkAdmin(m.adminToken);
    const e = await this.o.store.getEnrollment(m.enrollment);
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
    return { t: 'enroll-accepted', machine: id, serverShare: share, releasedPcr: this.releasedPcr, policySummary: policySummary(policy, this.releasedPcr, origin).slice(0, 4000) };
  }

  private async enrollCommit(m: MessageOf<'enroll-commit'>, ctx: RequestContext): Promise<Message> {
    this.checkAdmin(m.adminToken);
    const id = await this.o.store.commitEnrollment(m.enrollment, this.now());
    if (!id) refuse('UNKNOWN_ENROLLMENT', `enrolment ${m.enrollment} is unknown, not finished, or its machine was garbage-collected`);
    this.log(kv({ event: 'enroll-commit', result: 'ok', enrollment: m.enrollment, machine: id, peer: ctx.peer }));
    await this.audit({ who: 'enroll', machine: id, action: 'enroll-commit', result: 'ok', peer: ctx.peer });
    return { t: 'ok' };
  }

  private async enrollAbort(m: MessageOf<'enroll-abort'>, ctx: RequestContext): Promise<Message> {
    this.checkAdmin(m.adminToken);
    const e = await this.o.store.getEnrollment(m.enrollment);
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
    const policy = parsePolicy(m.policy);
    const nonce = randomBytes(32);
    await this.o.store.putNonce({ hash: sha256(nonce), machine: m.id, purpose: 'attest', expiresAt: this.now() + this.nonceTtlMs });
    this.log(kv({ event: 'attest-begin', result: 'ok', machine: m.id, peer: ctx.peer }));
    return { t: 'attest-challenge', nonce, pcrSelection: requiredSelection(policy, m.releasedPcr), releasedPcr: m.releasedPcr, expiresIn: Math.ceil(this.nonceTtlMs / 1000) };
  }

  private async attestFinish(msg: MessageOf<'attest-finish'>, ctx: RequestContext): Promise<Message> {
    const m = await this.o.store.getMachine(msg.machine);
    const now = this.now();
    try {
      const r = await verifyAttestation({
        machine: m, msg,
        consumeNonce: (h) => this.o.store.consumeNonce(h, msg.machine, this.now()),
        share: (mm) => this.o.vault.open(mm.shareSealed, mm.id),
      });
      await this.o.store.recordResult(m!.id, { result: 'released', time: now, reasons: [], resetCount: r.resetCount, restartCount: r.restartCount });
      this.log(kv({ event: 'release', result: 'ok', machine: m!.id, hostname: m!.hostname, peer: ctx.peer, sealedTo: r.released.sealedTo.map((s) => `${s.bank}:${s.pcrs.join(',')}`).join(' ') }));
      for (const n of r.released.notices ?? []) this.log(kv({ event: 'notice', code: n.code, machine: m!.id, hostname: m!.hostname, peer: ctx.peer, message: n.message }));
      const notices = r.released.notices?.map((n) => `notice ${n.code}: ${n.message}`);
      await this.audit({ who: 'machine', machine: m!.id, action: 'release', result: 'ok', reasons: notices, peer: ctx.peer });
      return r.released;
    } catch (e) {
      if (m && e instanceof ServerError) {
        await this.o.store.recordResult(m.id, { result: `refused:${e.code}`, time: now, reasons: e.failures ?? [e.message] }).catch(() => undefined);
      }
      throw e;
    }
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
    this.log(kv({ event: 'admin', op: msg.op, result: 'ok', machine: msg.machine, peer: ctx.peer }));
    if (msg.op !== 'list' && msg.op !== 'show' && msg.op !== 'audit') {
      await this.audit({ who: 'admin', machine: msg.machine, action: `admin-${msg.op}`, result: 'ok', peer: ctx.peer });
    }
    return { t: 'admin-result', json: JSON.stringify(result) };
  }

  private async adminOp(msg: MessageOf<'admin'>, now: number): Promise<unknown> {
    const st = this.o.store;
    switch (msg.op) {
      case 'list':
        return (await st.listMachines()).map((m) => ({
          id: m.id, hostname: m.hostname, machineId: m.machineId, state: m.state, created: m.created,
          lastResult: m.lastResult ?? null, lastTime: m.lastTime ?? null,
        }));
      case 'show': {
        const m = await this.machineOrRefuse(msg.machine);
        return {
          id: m.id, hostname: m.hostname, machineId: m.machineId, state: m.state, releasedPcr: m.releasedPcr, created: m.created, updated: m.updated,
          ekName: m.ekName.toString('hex'), akName: m.akName.toString('hex'),
          lastResult: m.lastResult ?? null, lastTime: m.lastTime ?? null, lastReasons: m.lastReasons ?? [],
          lastResetCount: m.lastResetCount ?? null, lastRestartCount: m.lastRestartCount ?? null,
          quotedSelection: requiredSelection(parsePolicy(m.policy), m.releasedPcr),
          policy: JSON.parse(m.policy) as unknown,
        };
      }
      case 'set-policy': {
        const m = await this.machineOrRefuse(msg.machine);
        if (!msg.policy) refuse('BAD_REQUEST', 'set-policy needs a policy');
        const p = parsePolicy(msg.policy);
        await st.setPolicy(m.id, JSON.stringify(p), now);
        return { machine: m.id, policy: 'replaced', quotedSelection: requiredSelection(p, m.releasedPcr) };
      }
      case 'put-policy': {
        // Named policy for enrolment (`enroll --policy NAME`); the name travels in `machine`.
        if (!msg.machine || !msg.policy) refuse('BAD_REQUEST', 'put-policy needs a name and a policy');
        const p = parsePolicy(msg.policy);
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
        const m = await this.machineOrRefuse(msg.machine);
        await st.deleteMachine(m.id);
        return { machine: m.id, deleted: true };
      }
      case 'audit':
        return await st.queryAudit({ machine: msg.machine, limit: msg.limit ?? 100 });
      case 'gc':
        return { removed: await this.gc() };
      default:
        refuse('BAD_REQUEST', `unknown admin operation "${msg.op}" (list, show, set-policy, put-policy, add-boot, revoke, unrevoke, rotate, delete, audit, gc)`);
    }
  }
}
