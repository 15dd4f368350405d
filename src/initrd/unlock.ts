/**
 * The boot-time unlock: everything comes from the device's bootkey token (servers, pinned CA,
 * machine id, pinned EK, disk share, released PCR).
 *
 *  1. AK from the TPM (a primary from bootkey's template, in the version the token names: the
 *     enrolled AK, same Name; "v1" for tokens written before AK template v2, templates.ts).
 *  2. attest-begin{machine, AK name, token's EK name and released PCR} → attest-challenge{nonce,
 *     selection, releasedPcr, token-signing key}; the token's signature is checked with that key
 *     (TOKEN_SIGNATURE) before anything else uses the token's fields.
 *  3. Quote the selection with the nonce, read those PCRs → attest-finish{quote, PCRs, event log}.
 *  4. released{blob, sealedTo}: the server share in a sealed object wrapped to the enrolled EK,
 *     its policy PolicyPCR over this boot's values (the released PCR included).
 *  5. The TPM's EK must be the pinned one (same Name), else stop. Import + Load under the EK
 *     (EK policy sessions), Unseal in a PolicyPCR session SALTED TO THE PINNED EK PUBLIC with
 *     response encryption: the share never crosses the TPM bus in clear, and a TPM (or an
 *     interposer) without the pinned EK's private key cannot answer with a valid HMAC.
 *  6. Extend the released PCR in every active bank with H("bootkey released") — before the
 *     key is handed on, and whenever a blob was released, so neither this blob nor a new
 *     request can release the key again in this boot.
 *  7. LUKS key = HKDF(server share ‖ disk share, machine id) → cryptsetup via stdin, or handed to
 *     a caller (the initrd's ask-password agent answers systemd-cryptsetup with it).
 *
 * A `released` reply may carry notices (e.g. AK_NO_DA: re-enrol); each is reported as one line
 * through `notice` (default: `log`), control characters removed.
 *
 * The shares and the key live only in Buffers that are zeroed after use and in the pipe to
 * cryptsetup; nothing is logged or written.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Tpm } from '../tpm/tpm.ts';
import { createAK, flushKey, getEK, unsealImported, objectName, type KeyHandle } from '../tpm/keys.ts';
import { quotePCRs } from '../tpm/commands/attest.ts';
import { getPCRBanks, PCR_Extend } from '../tpm/commands/pcr.ts';
import { HASH_INFO } from '../tpm/constants.ts';
import { marshalSignature } from '../tpm/structures.ts';
import { TpmError } from '../tpm/errors.ts';
import type { MessageOf } from '../protocol/index.ts';
import { readMetadata, testKey, openDevice } from '../luks/cryptsetup.ts';
import { deriveLuksKey, SHARE_SIZE } from '../client/key.ts';
import { ClientError, withServer, type ClientOptions, type ServerSession } from '../client/connect.ts';
import { findTokens, tokenAKTemplate, tokenEK, tokenEkName, tokenShare, verifyTokenSignature, TokenError, type BootkeyToken } from '../client/token.ts';
import { toTpmSelection } from '../client/selection.ts';

/** What is extended into the released PCR: H_bank(RELEASED_EVENT) in every bank. */
export const RELEASED_EVENT = 'bootkey released';

export type AttestFinish = MessageOf<'attest-finish'>;
export type Released = MessageOf<'released'>;

/** The phases of one unlock that `UnlockOptions.phase` reports (milliseconds, no secrets). */
export type UnlockPhase = 'tpm' | 'connect' | 'begin' | 'finish' | 'handoff';

export interface UnlockOptions {
  device: string;
  tpm: Tpm;
  eventLog: Buffer;
  /**
   * `test`: `open --test-passphrase`; `{name}`: `open DEV NAME`; `{handOff}`: give the key to the
   * caller (e.g. systemd-reply-password), after the released PCR was extended. The key Buffer is
   * zeroed when handOff returns.
   */
  mode: 'test' | { name: string } | { handOff: (key: Buffer) => Promise<void> };
  tokenId?: number;
  /** The token, when the caller has read (and checked) it already. */
  token?: { id: number; token: BootkeyToken };
  /** Total deadline for reaching a server and getting an answer (default 60 s). */
  deadlineMs?: number;
  client?: Partial<ClientOptions>;
  log?: (line: string) => void;
  /** Tests: rewrite the attest-finish before it is sent. */
  tamper?: (m: AttestFinish) => AttestFinish | Promise<AttestFinish>;
  /** Tests: see the released message. */
  onReleased?: (m: Released) => void;
  /** Time spent per phase, added up over retries (the initrd agent logs them). */
  phase?: (name: UnlockPhase, ms: number) => void;
  /** One line per notice of the server's `released` reply (formatNotice); default: `log`. */
  notice?: (line: string) => void;
  /**
   * Awaited after the AK is loaded and before the first connection (the initrd agent waits there
   * for a route to the servers: the TPM work overlaps DHCP). Its time counts as `connect`.
   */
  beforeConnect?: (servers: string[]) => Promise<void>;
}

/** A server notice as one journald-fit line: no control characters, at most 300 characters. */
export function formatNotice(server: string, n: { code: string; message: string }): string {
  const clean = (x: string): string => x.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return `notice from ${clean(server)}: ${clean(n.code)}: ${clean(n.message)}`.slice(0, 300);
}

const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

export interface UnlockResult {
  machine: string;
  server: string;
  tokenId: number;
  keyslots: string[];
  /** The server's notices (codes), e.g. ["AK_NO_DA"]; empty when there were none. */
  notices: string[];
}

/** The bootkey token to use: `tokenId`, else the lowest-numbered one. @throws ClientError NO_TOKEN */
export async function readToken(device: string, tokenId?: number): Promise<{ id: number; token: BootkeyToken }> {
  const found = findTokens(await readMetadata(device));
  const t = tokenId === undefined ? found[0] : found.find((f) => f.id === tokenId);
  if (!t) throw new ClientError('NO_TOKEN', `${device} has no bootkey token${tokenId === undefined ? '' : ` with id ${tokenId}`} (enrol it first)`);
  return t;
}

/** Strips the UINT16 size of a TPM2B, checking it. */
function unwrap2B(b: Buffer, what: string): Buffer {
  if (b.length < 2 || b.readUInt16BE(0) !== b.length - 2) throw new ClientError('PROTOCOL', `released blob: ${what} is not a TPM2B`);
  return b.subarray(2);
}

/** Attestation over one connection: begin → challenge → quote → finish → released. */
export async function attest(
  s: ServerSession,
  tpm: Tpm,
  ak: KeyHandle,
  token: BootkeyToken,
  eventLog: Buffer,
  tamper?: UnlockOptions['tamper'],
  phase: NonNullable<UnlockOptions['phase']> = () => undefined,
): Promise<Released> {
  let t = process.hrtime.bigint();
  // The token's pinned EK and released PCR go to the server, which refuses them unless they are
  // the enrolled ones (TOKEN_EK, TOKEN_RELEASED_PCR): a rewritten header is caught server-side.
  const ekName = tokenEkName(token);
  const ch = await s.request({ t: 'attest-begin', machine: token.machine, akName: ak.name, ekName, releasedPcr: token.released_pcr }, ['attest-challenge']);
  phase('begin', since(t));
  if (ch.releasedPcr !== token.released_pcr) {
    throw new ClientError('PROTOCOL', `the server's released PCR ${ch.releasedPcr} is not the token's ${token.released_pcr}`);
  }
  // And client-side, before the pinned EK is used: the token as the server signed it.
  try {
    verifyTokenSignature(token, ch.tokenKey);
  } catch (e) {
    if (e instanceof TokenError) throw new ClientError(e.code, e.message, { server: s.server });
    throw e;
  }
  t = process.hrtime.bigint();
  const q = await quotePCRs(tpm, ak, { selection: toTpmSelection(ch.pcrSelection), nonce: ch.nonce });
  phase('tpm', since(t));
  let finish: AttestFinish = {
    t: 'attest-finish', machine: token.machine, akName: ak.name, ekName, releasedPcr: token.released_pcr, nonce: ch.nonce,
    quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs, eventLog,
  };
  if (tamper) finish = await tamper(finish);
  t = process.hrtime.bigint();
  const r = await s.request(finish, ['released']);
  phase('finish', since(t));
  return r;
}

/**
 * Extends `pcr` in every active bank with H_bank("bootkey released") (Part 3 §22.2).
 * @throws TpmError when the TPM refuses.
 */
export async function extendReleasedPcr(tpm: Tpm, pcr: number): Promise<void> {
  const banks = (await getPCRBanks(tpm)).filter((b) => b.pcrs.includes(pcr) && HASH_INFO.has(b.hash));
  const digests = banks.map((b) => ({ hashAlg: b.hash, digest: createHash(HASH_INFO.get(b.hash)!.name).update(RELEASED_EVENT).digest() }));
  if (digests.length === 0) throw new TpmError('UNSUPPORTED', `PCR ${pcr} is in no active bank`);
  await PCR_Extend(tpm, { pcrHandle: pcr, digests });
}

/**
 * Imports, loads and unseals a released blob on `tpm`, under its EK, which must be the pinned
 * EK of the token (else ClientError EK_MISMATCH). Every session is salted to the PINNED public.
 * @returns the 32-byte server share (zero it after use).
 * @throws ClientError EK_MISMATCH, UNSEAL (with the TPM's error as cause, e.g. TPM_RC_POLICY_FAIL)
 */
export async function unsealReleased(tpm: Tpm, token: BootkeyToken, released: Released): Promise<Buffer> {
  const pinned = tokenEK(token);
  const ek = await getEK(tpm, token.ek_alg);
  try {
    if (!ek.name.equals(objectName(pinned))) {
      throw new ClientError('EK_MISMATCH', `this TPM's EK ${ek.name.toString('hex')} is not the enrolled EK ${objectName(pinned).toString('hex')}`);
    }
    let share: Buffer;
    try {
      share = await unsealImported(tpm, {
        ek, pinnedEK: pinned, encrypt: true,
        objectPublic: unwrap2B(released.blob.public, 'public'),
        duplicate: unwrap2B(released.blob.duplicate, 'duplicate'),
        inSymSeed: unwrap2B(released.blob.inSymSeed, 'inSymSeed'),
        pcrs: toTpmSelection(released.sealedTo),
      });
    } catch (e) {
      if (e instanceof ClientError) throw e;
      const err = new ClientError('UNSEAL', `the released key does not unseal on this TPM: ${(e as Error).message}`);
      (err as Error & { cause?: unknown }).cause = e;
      throw err;
    }
    if (share.length !== SHARE_SIZE) {
      share.fill(0);
      throw new ClientError('UNSEAL', `the unsealed share has ${share.length} bytes, expected ${SHARE_SIZE}`);
    }
    return share;
  } finally {
    await flushKey(tpm, ek).catch(() => undefined);
  }
}

/**
 * The whole unlock (module doc).
 * @throws ClientError REFUSED (server's code and failures), UNREACHABLE, EK_MISMATCH, UNSEAL,
 *   NO_TOKEN; LuksError BAD_KEY / DM_UNAVAILABLE; TpmError.
 */
export async function unlock(o: UnlockOptions): Promise<UnlockResult> {
  const log = o.log ?? (() => undefined);
  const phase = o.phase ?? (() => undefined);
  const { id, token } = o.token ?? (await readToken(o.device, o.tokenId));
  log(`token ${id}: machine ${token.machine}, servers ${token.servers.join(' ')}, released PCR ${token.released_pcr}`);
  let t = process.hrtime.bigint();
  let ak: KeyHandle | undefined = await createAK(o.tpm, token.ak_alg, tokenAKTemplate(token));
  phase('tpm', since(t));
  let released: Released | undefined;
  let server = '';
  let extended = false;
  let serverShare: Buffer | undefined;
  let key: Buffer | undefined;
  const diskShare = tokenShare(token);
  try {
    t = process.hrtime.bigint();
    await o.beforeConnect?.(token.servers);
    released = await withServer({ servers: token.servers, ca: token.ca, deadlineMs: o.deadlineMs ?? 60_000, maxAttempts: 100, log, ...o.client }, async (s) => {
      phase('connect', since(t));
      server = s.server;
      try {
        return await attest(s, o.tpm, ak!, token, o.eventLog, o.tamper, phase);
      } finally {
        t = process.hrtime.bigint(); // a retry's connect time starts here
      }
    });
    o.onReleased?.(released);
    log(`server ${server}: released the key, sealed to ${released.sealedTo.map((x) => `${x.bank}:${x.pcrs.join(',')}`).join(' ')}`);
    for (const n of released.notices ?? []) (o.notice ?? log)(formatNotice(server, n));
    t = process.hrtime.bigint();
    await flushKey(o.tpm, ak).catch(() => undefined);
    ak = undefined;
    serverShare = await unsealReleased(o.tpm, token, released);
    key = deriveLuksKey(serverShare, diskShare, token.machine);
    serverShare.fill(0);
    await extendReleasedPcr(o.tpm, token.released_pcr);
    extended = true;
    phase('tpm', since(t));
    log(`PCR ${token.released_pcr} extended with H("${RELEASED_EVENT}"): no second release this boot`);
    t = process.hrtime.bigint();
    if (o.mode === 'test') {
      if (!(await testKey(o.device, key))) throw new ClientError('BAD_KEY', `${o.device}: the derived key opens no keyslot (token ${id} stale?)`);
      log(`${o.device}: the key opens keyslot ${token.keyslots.join(',')} (open --test-passphrase)`);
    } else if ('handOff' in o.mode) {
      await o.mode.handOff(key);
    } else {
      await openDevice(o.device, o.mode.name, key);
      log(`${o.device}: opened as /dev/mapper/${o.mode.name}`);
    }
    phase('handoff', since(t));
    return { machine: token.machine, server, tokenId: id, keyslots: token.keyslots, notices: (released.notices ?? []).map((n) => n.code) };
  } finally {
    key?.fill(0);
    serverShare?.fill(0);
    diskShare.fill(0);
    await flushKey(o.tpm, ak).catch(() => undefined);
    if (released && !extended) await extendReleasedPcr(o.tpm, token.released_pcr).catch(() => undefined);
  }
}
