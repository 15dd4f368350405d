/**
 * The command executor (Part 1 §18: command/response structure) and the {@link Tpm} handle.
 * Every command in src/tpm/commands/ is built on {@link Tpm.execute}: it marshals the header,
 * the handle area, the authorization area (one TPMS_AUTH_COMMAND per session), the parameters;
 * checks the response tag, size and code; verifies the sessions' response HMACs and decrypts
 * the first response parameter when a session asked for it.
 *
 * A TPM error code becomes TpmError('TPM_RC') named after the command
 * ("TPM2_Unseal: TPM returned TPM_RC_POLICY_FAIL (session 1, 0x99d)"); a malformed, truncated
 * or oversized response becomes TpmError('MARSHAL') naming the command.
 * @module
 */
import { TPM_CC_NAMES, TPM_HT, TPM_ST, TPM_SU } from './constants.ts';
import { TPM_RC } from './rc.ts';
import { TpmError } from './errors.ts';
import { Reader, Writer } from './marshal.ts';
import { type Transport, openTransport, parseTcti, defaultTpmSpec } from './transport.ts';
import { PasswordSession, cpHash, rpHash, type Session, type SessionContext } from './session.ts';

/** A handle in a command's handle area. `name` is needed for HMAC/policy sessions (fetched by ReadPublic when absent). */
export interface HandleRef {
  handle: number;
  name?: Buffer;
}

/** A handle that needs authorization: its session (password by default) and authValue. */
export interface AuthHandle extends HandleRef {
  authValue?: Buffer;
  session?: Session;
}

export type Handle = number | HandleRef;

/** A command as Tpm.execute takes it. */
export interface CommandRequest {
  cc: number;
  /** Handles with no authorization, in handle-area order (see `auth` for the ones with). */
  handles: (Handle | { auth: AuthHandle })[];
  /** Marshalled parameter area. */
  params: Buffer;
  /** Additional sessions (encrypt/decrypt/audit only), after the authorization sessions. */
  sessions?: Session[];
  /** Number of handles in the response handle area. */
  responseHandles?: number;
  /** Whether the first command / response parameter is a TPM2B (so it can be encrypted). */
  decryptable?: boolean;
  encryptable?: boolean;
}

export interface CommandResponse {
  handles: number[];
  /** Reader over the (decrypted) response parameters, named after the command. */
  params: Reader;
}

/** The Name of a handle that is not an object or NV index: the handle itself (Part 1 §16). */
function handleName(h: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(h >>> 0);
  return b;
}

export function commandName(cc: number): string {
  return TPM_CC_NAMES.get(cc) ?? `TPM2_CC_0x${cc.toString(16)}`;
}

/** A connection to one TPM. */
export class Tpm {
  constructor(readonly transport: Transport) {}

  /** Opens a TCTI spec (default $BOOTKEY_TPM, else device:/dev/tpmrm0); swtpm gets TPM2_Startup(CLEAR). */
  static async open(spec?: string): Promise<Tpm> {
    const s = defaultTpmSpec(spec);
    const tpm = new Tpm(await openTransport(s));
    if (parseTcti(s).kind !== 'device') {
      try {
        await tpm.startup();
      } catch (e) {
        await tpm.close();
        throw e;
      }
    }
    return tpm;
  }

  /** TPM2_Startup(CLEAR), accepting TPM_RC_INITIALIZE (already started), Part 3 §9.3. */
  async startup(): Promise<void> {
    const w = new Writer().u16(TPM_ST.NO_SESSIONS).u32(12).u32(0x144).u16(TPM_SU.CLEAR).finish();
    const rsp = await this.transport.send(w);
    const rc = this.checkHeader('TPM2_Startup', rsp);
    if (rc !== 0 && rc !== TPM_RC.INITIALIZE) throw TpmError.fromRC('TPM2_Startup', rc);
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /** Returns the response code after checking the header against the buffer. */
  private checkHeader(name: string, rsp: Buffer): number {
    if (rsp.length < 10) throw new TpmError('MARSHAL', `${name}: response of ${rsp.length} bytes is shorter than a header`);
    const tag = rsp.readUInt16BE(0);
    const size = rsp.readUInt32BE(2);
    if (size !== rsp.length) {
      throw new TpmError('MARSHAL', `${name}: response header says ${size} bytes but ${rsp.length} arrived${size > rsp.length ? ' (truncated)' : ''}`);
    }
    if (tag !== TPM_ST.NO_SESSIONS && tag !== TPM_ST.SESSIONS && tag !== TPM_ST.RSP_COMMAND) {
      throw new TpmError('MARSHAL', `${name}: bad response tag 0x${tag.toString(16)}`);
    }
    return rsp.readUInt32BE(6);
  }

  /** Fills in missing Names of objects and NV indices (needed for cpHash). */
  private async nameOf(h: Handle): Promise<Buffer> {
    const ref = typeof h === 'number' ? { handle: h } : h;
    if (ref.name) return ref.name;
    const ht = ref.handle >>> 24;
    if (ht === TPM_HT.TRANSIENT || ht === TPM_HT.PERSISTENT) {
      const { ReadPublic } = await import('./commands/object.ts');
      return (await ReadPublic(this, { objectHandle: ref.handle })).name;
    }
    if (ht === TPM_HT.NV_INDEX) {
      const { NV_ReadPublic } = await import('./commands/nv.ts');
      return (await NV_ReadPublic(this, { nvIndex: ref.handle })).nvName;
    }
    return handleName(ref.handle);
  }

  /** Executes one command (Part 1 §18), see the module doc. */
  async execute(req: CommandRequest): Promise<CommandResponse> {
    const name = commandName(req.cc);
    const handles: HandleRef[] = [];
    const auths: { session: Session; ctx: SessionContext }[] = [];
    for (const h of req.handles) {
      if (typeof h === 'object' && 'auth' in h) {
        handles.push(h.auth);
        auths.push({ session: h.auth.session ?? new PasswordSession(), ctx: { entityName: h.auth.name, authValue: h.auth.authValue ?? Buffer.alloc(0) } });
      } else handles.push(typeof h === 'number' ? { handle: h } : h);
    }
    for (const s of req.sessions ?? []) auths.push({ session: s, ctx: { authValue: Buffer.alloc(0) } });
    if (auths.length > 3) throw new TpmError('UNSUPPORTED', `${name}: at most 3 sessions`);

    const needNames = auths.some((a) => !(a.session instanceof PasswordSession));
    const names = needNames ? await Promise.all(handles.map((h) => this.nameOf(h))) : [];
    if (needNames) {
      // the entity names of auth sessions (bound-session check)
      let i = 0;
      for (const h of req.handles) {
        if (typeof h === 'object' && 'auth' in h) auths[i++].ctx.entityName = names[handles.indexOf(h.auth)];
      }
    }

    let params = req.params;
    for (const a of auths) a.session.begin();
    const attrs = auths.map((a) => a.session.attributes(!!req.decryptable, !!req.encryptable));
    const decIdx = attrs.findIndex((x) => x & 0x20);
    const encIdx = attrs.findIndex((x) => x & 0x40);
    if (attrs.filter((x) => x & 0x20).length > 1 || attrs.filter((x) => x & 0x40).length > 1) {
      throw new TpmError('UNSUPPORTED', `${name}: only one session may set decrypt, one encrypt`);
    }
    if (decIdx >= 0) {
      // Part 1 §21.1: only the data of the first parameter (a TPM2B) is encrypted, not its size.
      const r = new Reader(params, `${name} command`);
      const data = r.tpm2b('first parameter', 0xffff);
      const enc = auths[decIdx].session.encryptCommandParameter(data, auths[decIdx].ctx);
      params = Buffer.concat([params.subarray(0, 2), enc, params.subarray(2 + data.length)]);
    }

    const w = new Writer();
    const tag = auths.length ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS;
    const body = new Writer();
    for (const h of handles) body.u32(h.handle);
    if (auths.length) {
      const cp = new Map<number, Buffer>();
      const cpFor = (alg: number): Buffer => {
        if (!cp.has(alg)) cp.set(alg, cpHash(alg, req.cc, names, params));
        return cp.get(alg)!;
      };
      const areas = auths.map((a, i) => {
        // Part 1 §19.6.5: session 1's HMAC covers the nonceTPM of other decrypt/encrypt sessions
        const extra: Buffer[] = [];
        if (i === 0 && decIdx > 0) extra.push(auths[decIdx].session.nonceTPM);
        if (i === 0 && encIdx > 0 && encIdx !== decIdx) extra.push(auths[encIdx].session.nonceTPM);
        return a.session.authCommand(cpFor, a.ctx, attrs[i], extra);
      });
      const area = Buffer.concat(areas);
      body.u32(area.length).bytes(area);
    }
    body.bytes(params);
    const b = body.finish();
    w.u16(tag).u32(10 + b.length).u32(req.cc).bytes(b);

    const cmd = w.finish();
    let rsp = await this.transport.send(cmd);
    let rc = this.checkHeader(name, rsp);
    // Part 1 §6.6.3 / TSS: TPM_RC_RETRY, _YIELDED and _TESTING mean the command was not run; send it again.
    for (let i = 0; i < 20 && (rc === TPM_RC.RETRY || rc === TPM_RC.YIELDED || rc === TPM_RC.TESTING); i++) {
      await new Promise((r) => setTimeout(r, Math.min(5 * 2 ** i, 200)));
      rsp = await this.transport.send(cmd);
      rc = this.checkHeader(name, rsp);
    }
    if (rc !== 0) {
      // a failed command does not roll nonces, and a session survives unless it was the policy being used up
      throw TpmError.fromRC(name, rc);
    }
    const rtag = rsp.readUInt16BE(0);
    if (rtag !== tag) throw new TpmError('MARSHAL', `${name}: response tag 0x${rtag.toString(16)}, expected 0x${tag.toString(16)}`);
    const r = new Reader(rsp, `${name} response`, 10);
    const outHandles: number[] = [];
    for (let i = 0; i < (req.responseHandles ?? 0); i++) outHandles.push(r.u32('handle'));
    let rparams: Buffer;
    if (auths.length) {
      const psize = r.u32('parameterSize');
      if (psize > r.remaining) r.fail('parameterSize', `${psize} bytes claimed, only ${r.remaining} left`);
      rparams = r.bytes(psize, 'parameters');
      const rp = new Map<number, Buffer>();
      const rpFor = (alg: number): Buffer => {
        if (!rp.has(alg)) rp.set(alg, rpHash(alg, req.cc, rparams));
        return rp.get(alg)!;
      };
      for (const a of auths) {
        const nonceTPM = r.tpm2b('TPMS_AUTH_RESPONSE.nonce', 64);
        const sattrs = r.u8('TPMS_AUTH_RESPONSE.sessionAttributes');
        const h = r.tpm2b('TPMS_AUTH_RESPONSE.hmac', 128);
        a.session.checkAuthResponse(name, rpFor, a.ctx, nonceTPM, sattrs, h);
      }
      r.done('response');
    } else {
      rparams = r.bytes(r.remaining, 'parameters');
    }
    if (encIdx >= 0) {
      const pr = new Reader(rparams, `${name} response`);
      const data = pr.tpm2b('first parameter', 0xffff);
      const dec = auths[encIdx].session.decryptResponseParameter(data, auths[encIdx].ctx);
      rparams = Buffer.concat([rparams.subarray(0, 2), dec, rparams.subarray(2 + data.length)]);
      dec.fill(0); // a decrypted parameter is usually a secret (Unseal, ActivateCredential): one copy only
    }
    return { handles: outHandles, params: new Reader(rparams, `${name} response`) };
  }
}

/** Convenience: opens a TPM (see Tpm.open). */
export function openTpm(spec?: string): Promise<Tpm> {
  return Tpm.open(spec);
}
