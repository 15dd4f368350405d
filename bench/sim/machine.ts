/**
 * Simulated machines: everything the client does, for real, except the TPM chip, which is
 * replaced by software keys with the same public areas:
 *
 * - EK: ECC NIST P-256 (default) or RSA 2048, public area from the EK Credential Profile's
 *   low-range template (L-2 / L-1: restricted decrypt, AES-128-CFB, policy A).
 * - AK: ECC NIST P-256, ECDSA-SHA256, restricted signing key (fixedTPM, fixedParent,
 *   sensitiveDataOrigin, userWithAuth, restricted, sign): the server's AK checks pass.
 * - Enrolment through the real protocol (enroll-begin/finish/commit) with a software
 *   ActivateCredential (activate.ts, the inverse of src/tpm/credential.ts).
 * - Genuine TPMS_ATTEST quotes (quote.ts) signed with the AK over the PCR values that a real
 *   event log replays to (the released PCR stays zero), sent with that log.
 *
 * The transport is TLS 1.3 with the CA pinned, a new connection per flow, each machine from its
 * own loopback address (127.a.b.c) so that per-peer rate limits see different machines.
 * Failover with the real client's rules (src/client/connect.ts): transport failures and the
 * transient refusals (BUSY, INTERNAL, UNAVAILABLE) restart the whole flow on a fresh connection,
 * with exponential backoff and jitter; any other refusal is final. One difference: the real
 * client opens a connection to every server in parallel and keeps the first handshake; the
 * simulated one tries the servers in turn, starting at its own index (round-robin), so that a
 * storm of thousands does not double the TLS handshakes. Backoff and attempts are parameters
 * (the real client: 250 ms doubling to 4 s, 6 attempts, 60 s).
 */
import tls from 'node:tls';
import net from 'node:net';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Connection } from '../../src/protocol/connection.ts';
import type { Message, MessageOf, MessageType, PcrSelection } from '../../src/protocol/messages.ts';
import { marshalPublic2B, marshalSignature, type TPMTPublic } from '../../src/tpm/structures.ts';
import { ekPublicFromKey } from '../../src/tpm/credential.ts';
import { objectName } from '../../src/tpm/crypto.ts';
import { akTemplateECC } from '../../src/tpm/templates.ts';
import { fixedSize } from '../../src/tpm/crypto.ts';
import { parseEventLog, replay } from '../../src/measuredboot/index.ts';
import { BANK_SIZE, type BankName, type PcrValues } from '../../src/pcrs.ts';
import { activateCredentialSoft, importSoft } from './activate.ts';
import { policyPCRDigest } from '../../src/tpm/policydigest.ts';
import { toTpmSelection } from '../../src/server/attest.ts';
import { softQuote } from './quote.ts';

export interface Target {
  host: string;
  port: number;
}

export interface SimConfig {
  servers: Target[];
  ca: Buffer;
  /** An enrolment token (createEnrolToken); needed by enroll(). */
  enrolToken?: string;
  /** Per-message timeout; default 30 s. */
  timeoutMs?: number;
  /** Total deadline per flow; default 120 s. */
  deadlineMs?: number;
  maxAttempts?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
}

/** A boot image: the log and what it replays to. */
export class BootImage {
  readonly values: PcrValues;
  constructor(readonly log: Buffer) {
    this.values = replay(parseEventLog(log));
  }
  /** The PCR values for a selection: replayed, or the initial value (zeros; 0xff for 17-22). */
  pcrs(sel: PcrSelection[]): PcrValues {
    const out: PcrValues = new Map();
    for (const s of sel) {
      const bank = s.bank as BankName;
      const m = new Map<number, Buffer>();
      for (const p of s.pcrs) m.set(p, this.values.get(bank)?.get(p) ?? Buffer.alloc(BANK_SIZE[bank], p >= 17 && p <= 22 ? 0xff : 0));
      out.set(bank, m);
    }
    return out;
  }
}

export class ClientFailure extends Error {
  constructor(readonly code: string, message: string, readonly transient: boolean) {
    super(message);
  }
}

const TRANSIENT_CODES = new Set(['BUSY', 'INTERNAL', 'UNAVAILABLE']);

export interface FlowStats {
  attempts: number;
  /** Servers (index) that answered each attempt, or -1 for a transport failure. */
  path: string[];
}

/** One TLS connection, with the CA pinned, from `localAddress`. */
export function connect(t: Target, ca: Buffer, localAddress: string | undefined, timeoutMs: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: t.host, port: t.port, localAddress, noDelay: true });
    raw.on('error', () => undefined);
    const sock = tls.connect({ socket: raw, ca: [ca], minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', servername: 'localhost', rejectUnauthorized: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ClientFailure('UNREACHABLE', `${t.host}:${t.port}: no TLS handshake within ${timeoutMs} ms`, true));
    }, timeoutMs);
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      sock.on('error', () => undefined);
      resolve(new Connection(sock));
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      sock.destroy();
      raw.destroy();
      reject(new ClientFailure('UNREACHABLE', `${t.host}:${t.port}: ${e.code ?? e.message}`, true));
    });
  });
}

/** Sends one request and waits for the expected reply; `error` replies become ClientFailure. */
export async function request<T extends MessageType>(c: Connection, m: Message, expect: readonly T[], timeoutMs: number): Promise<MessageOf<T>> {
  try {
    await c.send(m);
    const r = await c.receive([...expect, 'error'] as (T | 'error')[], timeoutMs);
    if (r.t === 'error') {
      const e = r as MessageOf<'error'>;
      throw new ClientFailure(e.code, `${e.code}: ${e.message}`, TRANSIENT_CODES.has(e.code));
    }
    return r as MessageOf<T>;
  } catch (e) {
    if (e instanceof ClientFailure) throw e;
    throw new ClientFailure('TRANSPORT', (e as Error).message, true);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Loopback address number i (1-based): 127.a.b.c, never 127.0.0.x. */
export function loopbackAddress(i: number): string {
  const n = i + 256;
  return `127.${(n >> 16) & 0xff || 1}.${(n >> 8) & 0xff}.${(n & 0xff) || 1}`;
}

export class SimMachine {
  readonly ekKey: { privateKey: KeyObject; publicKey: KeyObject };
  readonly akKey: { privateKey: KeyObject; publicKey: KeyObject };
  readonly ekPublic: TPMTPublic;
  readonly akPublic: TPMTPublic;
  readonly akName: Buffer;
  id = '';
  /** The released PCR the server enrolled this machine with (the LUKS2 token's released_pcr). */
  releasedPcr = 15;
  /** What the real client sends from its LUKS2 token in attest-begin/-finish: pinned EK Name, released PCR. */
  binding(): { ekName: Buffer; releasedPcr: number } {
    return { ekName: objectName(this.ekPublic), releasedPcr: this.releasedPcr };
  }
  share?: Buffer;
  resetCount = 1;
  restartCount = 0;
  clock = 1000n;
  readonly address: string;

  constructor(readonly index: number, readonly image: BootImage, o: { ek?: 'ecc' | 'rsa' } = {}) {
    this.ekKey = o.ek === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.ekPublic = ekPublicFromKey(this.ekKey.publicKey);
    this.akKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = this.akKey.publicKey.export({ format: 'jwk' });
    const ak = akTemplateECC() as Extract<TPMTPublic, { unique: { x: Buffer } }>;
    ak.unique = { x: fixedSize(Buffer.from(jwk.x!, 'base64url'), 32, 'x'), y: fixedSize(Buffer.from(jwk.y!, 'base64url'), 32, 'y') };
    this.akPublic = ak;
    this.akName = objectName(ak);
    this.address = loopbackAddress(index + 1);
  }

  /** A reboot: the TPM's resetCount goes up, PCRs start again (the released PCR back at zero). */
  reboot(): void {
    this.resetCount++;
    this.clock += 1000n;
  }

  quote(sel: PcrSelection[], nonce: Buffer): { quote: Buffer; signature: Buffer; pcrs: PcrValues } {
    const pcrs = this.image.pcrs(sel);
    this.clock += 7n;
    const q = softQuote({ akPrivate: this.akKey.privateKey, akName: this.akName, nonce, pcrs, selection: sel, clock: this.clock, resetCount: this.resetCount, restartCount: this.restartCount });
    return { quote: q.quote, signature: marshalSignature(q.signature), pcrs };
  }

  /** Runs `fn` on a fresh connection, failing over across the servers like the real client. */
  async withServer<T>(cfg: SimConfig, fn: (c: Connection, server: number) => Promise<T>, stats?: FlowStats, start = this.index): Promise<T> {
    const timeout = cfg.timeoutMs ?? 30_000;
    const deadline = Date.now() + (cfg.deadlineMs ?? 120_000);
    const maxAttempts = cfg.maxAttempts ?? 12;
    let backoff = cfg.backoffMs ?? 100;
    let last: unknown;
    for (let attempt = 0; attempt < maxAttempts && Date.now() < deadline; attempt++) {
      const si = (start + attempt) % cfg.servers.length;
      let conn: Connection | undefined;
      try {
        if (stats) stats.attempts++;
        conn = await connect(cfg.servers[si], cfg.ca, this.address, Math.min(timeout, Math.max(1, deadline - Date.now())));
        const r = await fn(conn, si);
        stats?.path.push(`${si}:ok`);
        return r;
      } catch (e) {
        last = e;
        stats?.path.push(`${si}:${e instanceof ClientFailure ? e.code : 'ERR'}`);
        if (!(e instanceof ClientFailure) || !e.transient) throw e;
      } finally {
        conn?.close();
      }
      const wait = Math.min(backoff * (0.75 + Math.random() * 0.5), Math.max(0, deadline - Date.now()));
      backoff = Math.min(backoff * 2, cfg.maxBackoffMs ?? 2000);
      await sleep(wait);
    }
    throw last instanceof Error ? last : new ClientFailure('UNREACHABLE', 'no server reachable', false);
  }

  /** enroll-begin → software ActivateCredential + quote → enroll-finish → enroll-commit. */
  async enroll(cfg: SimConfig): Promise<string> {
    if (!cfg.enrolToken) throw new Error('enrolment needs an enrolment token (createEnrolToken)');
    const token = cfg.enrolToken;
    const timeout = cfg.timeoutMs ?? 30_000;
    return this.withServer(cfg, async (c) => {
      const ch = await request(c, {
        t: 'enroll-begin', enrolToken: token, ekPublic: marshalPublic2B(this.ekPublic), akPublic: marshalPublic2B(this.akPublic),
        machineId: this.index.toString(16).padStart(32, '0'), hostname: `sim-${this.index}`,
      }, ['enroll-challenge'], timeout);
      const proof = activateCredentialSoft({ ekPublic: this.ekPublic, ekPrivate: this.ekKey.privateKey, akName: this.akName, credentialBlob: ch.credentialBlob, encryptedSecret: ch.encryptedSecret });
      const q = this.quote(ch.pcrSelection, ch.nonce);
      const acc = await request(c, { t: 'enroll-finish', enrolToken: token, enrollment: ch.enrollment, proof, quote: q.quote, signature: q.signature, pcrs: q.pcrs, eventLog: this.image.log }, ['enroll-accepted'], timeout);
      await request(c, { t: 'enroll-commit', enrolToken: token, enrollment: ch.enrollment }, ['ok'], timeout);
      this.id = acc.machine;
      this.share = acc.serverShare;
      this.releasedPcr = acc.releasedPcr;
      return acc.machine;
    });
  }

  /**
   * One boot's release: attest-begin → quote → attest-finish on one connection (both round
   * trips, TLS included), failover/retry as the real client. Returns the `released` message and
   * the nonce it was released for.
   */
  async release(cfg: SimConfig, stats?: FlowStats, start?: number): Promise<{ released: MessageOf<'released'>; nonce: Buffer; server: number }> {
    const timeout = cfg.timeoutMs ?? 30_000;
    return this.withServer(cfg, async (c, server) => {
      const ch = await request(c, { t: 'attest-begin', machine: this.id, akName: this.akName, ekName: objectName(this.ekPublic), releasedPcr: this.releasedPcr }, ['attest-challenge'], timeout);
      const q = this.quote(ch.pcrSelection, ch.nonce);
      const released = await request(c, { t: 'attest-finish', machine: this.id, akName: this.akName, ekName: objectName(this.ekPublic), releasedPcr: this.releasedPcr, nonce: ch.nonce, quote: q.quote, signature: q.signature, pcrs: q.pcrs, eventLog: this.image.log }, ['released'], timeout);
      return { released, nonce: ch.nonce, server };
    }, stats, start);
  }
}

/** Creates an enrolment token with `uses` uses through the admin interface (the admin token stays here). */
export async function createEnrolToken(o: { server: string; ca: Buffer; adminToken: string }, uses: number): Promise<string> {
  const { adminRequest } = await import('../../src/server/admin-client.ts');
  const r = (await adminRequest({ server: o.server, ca: o.ca, adminToken: o.adminToken }, 'token-create', { uses, comment: 'bench/sim' })) as { token: string };
  return r.token;
}

/** Enrols machines with bounded concurrency; returns the failures (should be none). */
export async function enrollAll(machines: SimMachine[], cfg: SimConfig, concurrency = 32): Promise<string[]> {
  const errors: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, machines.length) }, async () => {
    for (let i = next++; i < machines.length; i = next++) {
      try {
        await machines[i].enroll(cfg);
      } catch (e) {
        errors.push(`machine ${i}: ${(e as Error).message}`);
      }
    }
  }));
  return errors;
}

/**
 * Checks a `released` message as the TPM would: imports it under the machine's EK (software),
 * returns the share, and checks that it is sealed (PolicyPCR) to this boot's values with the
 * released PCR at zero.
 */
export function openReleased(m: SimMachine, rel: MessageOf<'released'>): Buffer {
  const { secret, objectPublic } = importSoft({ ekPublic: m.ekPublic, ekPrivate: m.ekKey.privateKey, blob: rel.blob });
  const sel = toTpmSelection(rel.sealedTo);
  const want = policyPCRDigest(sel, m.image.pcrs(rel.sealedTo), objectPublic.nameAlg);
  if (!want.equals(objectPublic.authPolicy)) throw new Error('released blob: its PolicyPCR is not this boot\'s PCR values');
  return secret;
}
