/**
 * Authorization sessions as values (go-tpm style), Part 1 §19 and Part 3 §11.1:
 *
 * - {@link PasswordSession}: TPM_RS_PW, the authValue in clear (Part 1 §19.8.4).
 * - {@link AuthSession}: HMAC or policy session started with TPM2_StartAuthSession, optionally
 *   salted (to a GIVEN, pinned public key: RSA-OAEP "SECRET" or ECDH + KDFe, Part 1 §19.6.13,
 *   Annex B.10.3 / C.6.1) and/or bound (§19.6.11). It keeps its nonces, rolls them on every
 *   command, HMACs the command (cpHash, §19.6.5/§19.6.8), VERIFIES the response HMAC (rpHash,
 *   §19.6.9) and does AES-CFB parameter encryption (§21.3): with `decrypt`, the first command
 *   parameter (a TPM2B) is encrypted by the caller; with `encrypt`, the first response
 *   parameter is encrypted by the TPM.
 *
 * sessionKey = KDFa(authHash, bind.authValue ‖ salt, "ATH", nonceTPM, nonceCaller, digest bits);
 * CFB key‖iv = KDFa(authHash, sessionKey ‖ authValue, "CFB", nonceNewer, nonceOlder, 128+128).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { TPM_ALG, TPM_RH, TPM_SE, TPMA_SESSION } from './constants.ts';
import { TpmError } from './errors.ts';
import { Writer } from './marshal.ts';
import { SYM_AES128_CFB, SYM_NULL, hashInfo, type TPMTPublic, type TPMTSymDef } from './structures.ts';
import { aesCfbDecrypt, aesCfbEncrypt, constantTimeEqual, encryptSeed, hash, hmac, kdfa, objectName } from './crypto.ts';
import type { Tpm } from './tpm.ts';
import { StartAuthSession, FlushContext } from './commands/session.ts';

/** What a session needs to know about the command it authorizes or encrypts (built by Tpm.execute). */
export interface SessionContext {
  /** Name of the entity this session authorizes (undefined: session used only for encryption/audit). */
  entityName?: Buffer;
  /** authValue of that entity (empty when none). */
  authValue: Buffer;
}

/** One session in a command's authorization area. */
export interface Session {
  readonly handle: number;
  /** Starts a new command: rolls nonceCaller (Part 1 §19.6.2). */
  begin(): void;
  /** TPMA_SESSION bits for this command; `canDecrypt`/`canEncrypt` say whether the command's first parameters are TPM2Bs. */
  attributes(canDecrypt: boolean, canEncrypt: boolean): number;
  /** TPMS_AUTH_COMMAND (Part 2 §10.13.2). `extraNonces`: decryptNonce/encryptNonce (Part 1 §19.6.5) when this is session 1. */
  authCommand(cpHash: (hashAlg: number) => Buffer, ctx: SessionContext, attrs: number, extraNonces: Buffer[]): Buffer;
  /** Checks TPMS_AUTH_RESPONSE (Part 2 §10.13.3) and takes the new nonceTPM. */
  checkAuthResponse(command: string, rpHash: (hashAlg: number) => Buffer, ctx: SessionContext, nonceTPM: Buffer, attrs: number, hmacValue: Buffer): void;
  /** The current nonceTPM (for decryptNonce/encryptNonce), empty for passwords. */
  readonly nonceTPM: Buffer;
  /** Encrypts the first command parameter's data (decrypt attribute). */
  encryptCommandParameter(data: Buffer, ctx: SessionContext): Buffer;
  /** Decrypts the first response parameter's data (encrypt attribute). */
  decryptResponseParameter(data: Buffer, ctx: SessionContext): Buffer;
  /** False once the TPM flushed it (continueSession clear). */
  readonly active: boolean;
}

/** Password authorization, Part 1 §19.8.4: TPM_RS_PW with the authValue in the hmac field. */
export class PasswordSession implements Session {
  readonly handle = TPM_RH.PW;
  readonly nonceTPM = Buffer.alloc(0);
  readonly active = true;
  /** When set, used instead of the entity's authValue. */
  constructor(readonly password?: Buffer) {}
  begin(): void {}
  attributes(): number {
    return TPMA_SESSION.continueSession;
  }
  authCommand(_cp: unknown, ctx: SessionContext, attrs: number): Buffer {
    return new Writer().u32(this.handle).tpm2b(Buffer.alloc(0)).u8(attrs).tpm2b(this.password ?? ctx.authValue).finish();
  }
  checkAuthResponse(command: string, _rp: unknown, _ctx: SessionContext, nonceTPM: Buffer, _attrs: number, hmacValue: Buffer): void {
    if (nonceTPM.length !== 0 || hmacValue.length !== 0) throw new TpmError('MARSHAL', `${command}: password session response has a nonce or HMAC`);
  }
  encryptCommandParameter(): Buffer {
    throw new TpmError('UNSUPPORTED', 'a password session cannot encrypt parameters');
  }
  decryptResponseParameter(): Buffer {
    throw new TpmError('UNSUPPORTED', 'a password session cannot encrypt parameters');
  }
}

/** The empty-password session (the default authorization of every AuthHandle). */
export const PasswordAuth = (password?: Buffer): PasswordSession => new PasswordSession(password);

export interface AuthSessionOptions {
  /** Session hash (authHash); SHA-256 by default. */
  hashAlg?: number;
  /**
   * Salt the session to this key: `handle` must be the loaded object whose public area is
   * `public`. The salt is encrypted to the given public, not one read back from the TPM, so a
   * TPM that does not hold the private key cannot know the session key (the response HMAC
   * then fails).
   */
  salt?: { handle: number; public: TPMTPublic };
  /** Bind the session to an entity (its authValue enters the session key). */
  bind?: { handle: number; name: Buffer; authValue?: Buffer };
  /** Parameter encryption, AES-128-CFB (`true`: both directions). */
  decrypt?: boolean;
  encrypt?: boolean;
  /** Keep the session after each command (default true). */
  continueSession?: boolean;
  /** Trial policy session (computes a digest only). */
  trial?: boolean;
}

/**
 * An HMAC or policy session (Part 1 §19.6). Create with {@link startHMACSession} or
 * {@link startPolicySession}; flush with {@link AuthSession.flush} when done.
 */
export class AuthSession implements Session {
  nonceCaller: Buffer = Buffer.alloc(0);
  nonceTPM: Buffer;
  active = true;
  /** Policy sessions: set after PolicyAuthValue / PolicyPassword (Part 3 §23.18, §23.19). */
  authValueNeeded = false;
  passwordNeeded = false;
  decrypt: boolean;
  encrypt: boolean;
  continueSession: boolean;

  constructor(
    readonly handle: number,
    readonly type: number,
    readonly hashAlg: number,
    readonly sessionKey: Buffer,
    nonceCaller: Buffer,
    nonceTPM: Buffer,
    readonly symmetric: TPMTSymDef,
    readonly bindName: Buffer | undefined,
    opts: AuthSessionOptions,
  ) {
    this.nonceCaller = nonceCaller;
    this.nonceTPM = nonceTPM;
    this.decrypt = !!opts.decrypt;
    this.encrypt = !!opts.encrypt;
    this.continueSession = opts.continueSession ?? true;
  }

  get isPolicy(): boolean {
    return this.type !== TPM_SE.HMAC;
  }

  begin(): void {
    if (!this.active) throw new TpmError('UNSUPPORTED', `session 0x${this.handle.toString(16)} was already flushed`);
    this.nonceCaller = randomBytes(this.nonceCaller.length || hashInfo(this.hashAlg).size);
  }

  attributes(canDecrypt: boolean, canEncrypt: boolean): number {
    let a = this.continueSession ? TPMA_SESSION.continueSession : 0;
    if (this.decrypt && canDecrypt) a |= TPMA_SESSION.decrypt;
    if (this.encrypt && canEncrypt) a |= TPMA_SESSION.encrypt;
    return a;
  }

  /** Part 1 §19.6.8 (HMAC) / §19.6.10 (policy): is the entity's authValue part of the HMAC key? */
  private includeAuth(ctx: SessionContext): boolean {
    if (!ctx.entityName) return false;
    if (this.isPolicy) return this.authValueNeeded;
    return !(this.bindName && ctx.entityName.equals(this.bindName));
  }

  /** HMAC with key sessionKey (‖ authValue): a concatenated key is zeroed after use. */
  private hmacWithKey(ctx: SessionContext, ...parts: Buffer[]): Buffer {
    if (!this.includeAuth(ctx)) return hmac(this.hashAlg, this.sessionKey, ...parts);
    const key = Buffer.concat([this.sessionKey, trimAuth(ctx.authValue)]);
    try {
      return hmac(this.hashAlg, key, ...parts);
    } finally {
      key.fill(0);
    }
  }

  authCommand(cpHash: (hashAlg: number) => Buffer, ctx: SessionContext, attrs: number, extraNonces: Buffer[]): Buffer {
    let h: Buffer;
    if (this.isPolicy && this.passwordNeeded) h = ctx.authValue;
    else {
      // Part 1 §19.6.5: HMAC(sessionKey ‖ authValue, cpHash ‖ nonceCaller ‖ nonceTPM ‖ [decryptNonce ‖ encryptNonce] ‖ sessionAttributes)
      h = this.hmacWithKey(ctx, cpHash(this.hashAlg), this.nonceCaller, this.nonceTPM, ...extraNonces, Buffer.from([attrs]));
    }
    return new Writer().u32(this.handle).tpm2b(this.nonceCaller).u8(attrs).tpm2b(h).finish();
  }

  checkAuthResponse(command: string, rpHash: (hashAlg: number) => Buffer, ctx: SessionContext, nonceTPM: Buffer, attrs: number, hmacValue: Buffer): void {
    this.nonceTPM = nonceTPM;
    if (!(attrs & TPMA_SESSION.continueSession)) this.active = false;
    if (this.isPolicy && this.passwordNeeded) return;
    // Part 1 §19.6.9: HMAC(sessionKey ‖ authValue, rpHash ‖ nonceTPM ‖ nonceCaller ‖ sessionAttributes)
    const want = this.hmacWithKey(ctx, rpHash(this.hashAlg), nonceTPM, this.nonceCaller, Buffer.from([attrs]));
    if (!constantTimeEqual(want, hmacValue)) {
      throw new TpmError('VERIFY_HMAC', `${command}: the response HMAC of session 0x${this.handle.toString(16)} does not verify (wrong salt key, tampered response, or not the expected TPM)`);
    }
  }

  /** Part 1 §21.3: AES-CFB key and IV, given to `use`, then zeroed (with the KDF's input). */
  private withCfb<T>(ctx: SessionContext, nonceNewer: Buffer, nonceOlder: Buffer, use: (key: Buffer, iv: Buffer) => T): T {
    if (this.symmetric.algorithm !== TPM_ALG.AES || this.symmetric.mode !== TPM_ALG.CFB) {
      throw new TpmError('UNSUPPORTED', 'parameter encryption needs a session with symmetric AES-CFB');
    }
    const kb = this.symmetric.keyBits / 8;
    const ikm = Buffer.concat([this.sessionKey, trimAuth(ctx.authValue)]);
    let kiv: Buffer | undefined;
    try {
      kiv = kdfa(this.hashAlg, ikm, 'CFB', nonceNewer, nonceOlder, (kb + 16) * 8);
      return use(kiv.subarray(0, kb), kiv.subarray(kb));
    } finally {
      ikm.fill(0);
      kiv?.fill(0);
    }
  }

  encryptCommandParameter(data: Buffer, ctx: SessionContext): Buffer {
    return this.withCfb(ctx, this.nonceCaller, this.nonceTPM, (key, iv) => aesCfbEncrypt(key, iv, data));
  }

  decryptResponseParameter(data: Buffer, ctx: SessionContext): Buffer {
    return this.withCfb(ctx, this.nonceTPM, this.nonceCaller, (key, iv) => aesCfbDecrypt(key, iv, data));
  }

  /** TPM2_FlushContext on this session (no-op when the TPM already flushed it); the session key is zeroed. */
  async flush(tpm: Tpm): Promise<void> {
    this.sessionKey.fill(0);
    if (!this.active) return;
    this.active = false;
    await FlushContext(tpm, { flushHandle: this.handle });
  }
}

/** Part 1 §19.6.4: trailing zero octets of an authValue are removed before use in an HMAC key. */
function trimAuth(a: Buffer): Buffer {
  let n = a.length;
  while (n > 0 && a[n - 1] === 0) n--;
  return a.subarray(0, n);
}

async function start(tpm: Tpm, type: number, opts: AuthSessionOptions): Promise<AuthSession> {
  const hashAlg = opts.hashAlg ?? TPM_ALG.SHA256;
  const size = hashInfo(hashAlg).size;
  const nonceCaller = randomBytes(size);
  let salt: Buffer = Buffer.alloc(0);
  let encryptedSalt: Buffer = Buffer.alloc(0);
  if (opts.salt) {
    const s = encryptSeed(opts.salt.public, 'SECRET');
    salt = s.seed;
    encryptedSalt = s.encryptedSecret;
  }
  const symmetric = opts.decrypt || opts.encrypt ? SYM_AES128_CFB : SYM_NULL;
  const rsp = await StartAuthSession(tpm, {
    tpmKey: opts.salt ? { handle: opts.salt.handle, name: objectName(opts.salt.public) } : TPM_RH.NULL,
    bind: opts.bind ? { handle: opts.bind.handle, name: opts.bind.name } : TPM_RH.NULL,
    nonceCaller,
    encryptedSalt,
    sessionType: type,
    symmetric,
    authHash: hashAlg,
  }).catch((e: unknown) => {
    salt.fill(0);
    throw e;
  });
  const bindAuth = opts.bind ? trimAuth(opts.bind.authValue ?? Buffer.alloc(0)) : Buffer.alloc(0);
  const ikm = Buffer.concat([bindAuth, salt]);
  let sessionKey: Buffer;
  try {
    sessionKey = opts.salt || opts.bind ? kdfa(hashAlg, ikm, 'ATH', rsp.nonceTPM, nonceCaller, size * 8) : Buffer.alloc(0);
  } finally {
    ikm.fill(0);
    salt.fill(0);
  }
  if ((opts.decrypt || opts.encrypt) && sessionKey.length === 0) {
    await FlushContext(tpm, { flushHandle: rsp.sessionHandle }).catch(() => undefined);
    throw new TpmError('UNSUPPORTED', 'parameter encryption needs a salted or bound session (else the key is public)');
  }
  return new AuthSession(rsp.sessionHandle, type, hashAlg, sessionKey, nonceCaller, rsp.nonceTPM, symmetric, opts.bind?.name, opts);
}

/** TPM2_StartAuthSession(TPM_SE_HMAC), Part 3 §11.1. */
export function startHMACSession(tpm: Tpm, opts: AuthSessionOptions = {}): Promise<AuthSession> {
  return start(tpm, TPM_SE.HMAC, opts);
}

/** TPM2_StartAuthSession(TPM_SE_POLICY or TPM_SE_TRIAL), Part 3 §11.1. */
export function startPolicySession(tpm: Tpm, opts: AuthSessionOptions = {}): Promise<AuthSession> {
  return start(tpm, opts.trial ? TPM_SE.TRIAL : TPM_SE.POLICY, opts);
}

/** cpHash, Part 1 §18.7: H(commandCode ‖ Name1 ‖ Name2 ‖ Name3 ‖ parameters). */
export function cpHash(hashAlg: number, cc: number, names: Buffer[], params: Buffer): Buffer {
  const c = Buffer.alloc(4);
  c.writeUInt32BE(cc);
  return hash(hashAlg, c, ...names, params);
}

/** rpHash, Part 1 §18.8: H(responseCode ‖ commandCode ‖ parameters). */
export function rpHash(hashAlg: number, cc: number, params: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(0, 0);
  b.writeUInt32BE(cc, 4);
  return hash(hashAlg, b, params);
}
