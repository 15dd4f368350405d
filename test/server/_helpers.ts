/**
 * Server test helpers: a swtpm whose PCRs hold a real measured-boot log (each event's sha1 and
 * sha256 digests extended with TPM2_PCR_Extend), a Service on a temporary SQLite store, and a
 * machine driving enrolment and attestation with src/tpm (real quotes, real ActivateCredential).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSwtpm, type Swtpm, SWTPM_LOCALCA_DIR } from '../helpers/swtpm.ts';
import { openTpm, type Tpm } from '../../src/tpm/tpm.ts';
import { getEK, createAK, readEKCertificate, activateCredential, flushKey, type KeyHandle } from '../../src/tpm/keys.ts';
import { quotePCRs } from '../../src/tpm/commands/attest.ts';
import { PCR_Extend } from '../../src/tpm/commands/pcr.ts';
import { marshalPublic2B, marshalSignature } from '../../src/tpm/structures.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { EV_NO_ACTION } from '../../src/measuredboot/eventtypes.ts';
import { encodeMessage, parseMessage, type Message, type MessageOf } from '../../src/protocol/messages.ts';
import { SqliteStore } from '../../src/server/store-sqlite.ts';
import { Vault } from '../../src/server/secrets.ts';
import { Service, type ServiceOptions } from '../../src/server/service.ts';
import { enrolTokenHash } from '../../src/server/enrol-tokens.ts';
import { toTpmSelection } from '../../src/server/attest.ts';

export const QEMU_DIR = new URL('../data/qemu/', import.meta.url);
export const qemuLog = (name: string): Buffer => readFileSync(new URL(`${name}.bin`, QEMU_DIR));
export const ADMIN = 'test-admin-token-0123456789abcdef';
/** An enrolment token that makeEnv puts in the store (10 000 uses, a year). */
export const ENROL_ID = 't-00000000000000e1';
export const ENROL = `bkenrol.${ENROL_ID}.${'A'.repeat(43)}`;
export const CTX = { peer: '192.0.2.1' };
export const EK_CA = [join(SWTPM_LOCALCA_DIR, 'issuercert.pem'), join(SWTPM_LOCALCA_DIR, 'swtpm-localca-rootca-cert.pem')]
  .map((f) => new X509Certificate(readFileSync(f)));

/** Encode + decode: what the server really receives. */
export function rt<T extends Message>(m: T): T {
  return parseMessage(encodeMessage(m)) as unknown as T;
}

/** Extends every event of `log` into the TPM's sha1 and sha256 PCRs. */
export async function extendLog(tpm: Tpm, log: Buffer): Promise<void> {
  const l = parseEventLog(log);
  for (const ev of l.events) {
    if (ev.type === EV_NO_ACTION || ev.pcr > 23) continue;
    const digests: { hashAlg: number; digest: Buffer }[] = [];
    const s1 = ev.digests.get('sha1');
    const s256 = ev.digests.get('sha256');
    if (s1) digests.push({ hashAlg: TPM_ALG.SHA1, digest: s1 });
    if (s256) digests.push({ hashAlg: TPM_ALG.SHA256, digest: s256 });
    await PCR_Extend(tpm, { pcrHandle: ev.pcr, digests });
  }
}

export async function extendPcr(tpm: Tpm, pcr: number, data = 'released'): Promise<void> {
  const { createHash } = await import('node:crypto');
  await PCR_Extend(tpm, { pcrHandle: pcr, digests: [{ hashAlg: TPM_ALG.SHA256, digest: createHash('sha256').update(data).digest() }] });
}

export interface TestEnv {
  dir: string;
  store: SqliteStore;
  vault: Vault;
  service: Service;
  make(o?: Partial<ServiceOptions>): Service;
  close(): Promise<void>;
}

export async function makeEnv(o: Partial<ServiceOptions> = {}): Promise<TestEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'bootkey-server-'));
  const store = new SqliteStore(join(dir, 'bootkey.db'));
  await store.migrate();
  await store.putEnrolToken({ id: ENROL_ID, hash: enrolTokenHash(ENROL), comment: 'tests', created: Date.now(), expiresAt: Date.now() + 365 * 86400_000, uses: 10000, usesLeft: 10000 });
  const vault = new Vault(randomBytes(32));
  const make = (x: Partial<ServiceOptions> = {}) => new Service({ store, vault, adminToken: ADMIN, ...o, ...x });
  return {
    dir, store, vault, service: make(), make,
    async close() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A machine: a swtpm with a boot log in its PCRs, its EK (RSA) and AK (ECC). */
export class TestMachine {
  tpm!: Tpm;
  ek!: KeyHandle;
  ak!: KeyHandle;
  ekCert?: Buffer;
  id = '';
  share?: Buffer;
  releasedPcr = 15;
  constructor(readonly sw: Swtpm, public log: Buffer) {}

  static async start(log: Buffer): Promise<TestMachine> {
    const m = new TestMachine(await startSwtpm(), log);
    await m.boot();
    return m;
  }

  /** (Re)boot: reopen the TPM, extend the log, load EK and AK. */
  async boot(log = this.log): Promise<void> {
    this.log = log;
    this.tpm = await openTpm(this.sw.tcti);
    await extendLog(this.tpm, log);
    this.ek = await getEK(this.tpm, 'rsa');
    this.ak = await createAK(this.tpm, 'ecc');
    this.ekCert = await readEKCertificate(this.tpm, 'rsa');
  }

  async reboot(log = this.log): Promise<void> {
    await flushKey(this.tpm, this.ak).catch(() => undefined);
    await this.tpm.close();
    await this.sw.restart();
    await this.boot(log);
  }

  async stop(): Promise<void> {
    await flushKey(this.tpm, this.ak).catch(() => undefined);
    await this.tpm.close().catch(() => undefined);
    await this.sw.stop();
  }

  beginMsg(over: Partial<MessageOf<'enroll-begin'>> = {}): MessageOf<'enroll-begin'> {
    return {
      t: 'enroll-begin', enrolToken: ENROL, ekPublic: marshalPublic2B(this.ek.public), ekCert: this.ekCert, akPublic: marshalPublic2B(this.ak.public),
      machineId: '0123456789abcdef0123456789abcdef', hostname: 'test-host', ...over,
    };
  }

  /** enroll-begin → challenge → ActivateCredential + quote → enroll-finish; returns the reply to finish (or the first error). */
  async enroll(svc: Service, o: { begin?: Partial<MessageOf<'enroll-begin'>>; finish?: (m: MessageOf<'enroll-finish'>) => void; log?: Buffer; token?: string } = {}): Promise<{ reply: Message; enrollment?: string }> {
    const ch = await svc.handle(rt(this.beginMsg({ ...(o.token ? { enrolToken: o.token } : {}), ...o.begin })), CTX);
    if (ch.t !== 'enroll-challenge') return { reply: ch };
    const proof = await activateCredential(this.tpm, { ak: this.ak, ek: this.ek, credentialBlob: ch.credentialBlob, secret: ch.encryptedSecret });
    const q = await quotePCRs(this.tpm, this.ak, { selection: toTpmSelection(ch.pcrSelection), nonce: ch.nonce });
    const fin: MessageOf<'enroll-finish'> = {
      t: 'enroll-finish', enrolToken: o.token ?? ENROL, enrollment: ch.enrollment, proof, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs,
      eventLog: o.log ?? this.log,
    };
    o.finish?.(fin);
    const reply = await svc.handle(rt(fin), CTX);
    if (reply.t === 'enroll-accepted') {
      this.id = reply.machine;
      this.share = reply.serverShare;
      this.releasedPcr = reply.releasedPcr;
    }
    return { reply, enrollment: ch.enrollment };
  }

  async enrollAndCommit(svc: Service, token = ENROL): Promise<MessageOf<'enroll-accepted'>> {
    const r = await this.enroll(svc, { token });
    if (r.reply.t !== 'enroll-accepted') throw new Error(`enrolment refused: ${JSON.stringify(r.reply)}`);
    const c = await svc.handle(rt({ t: 'enroll-commit', enrolToken: token, enrollment: r.enrollment! }), CTX);
    if (c.t !== 'ok') throw new Error(`commit refused: ${JSON.stringify(c)}`);
    return r.reply;
  }

  /** The LUKS2 token's fields the client sends with attest-begin/-finish. */
  binding(): { ekName: Buffer; releasedPcr: number } {
    return { ekName: this.ek.name, releasedPcr: this.releasedPcr };
  }

  /** attest-begin → quote → attest-finish; `mutate` may alter the finish message; returns it too. */
  async attest(svc: Service, o: { mutate?: (m: MessageOf<'attest-finish'>) => void; log?: Buffer; quoteNonce?: Buffer; finishWith?: Service; ak?: KeyHandle; begin?: Partial<MessageOf<'attest-begin'>> } = {}): Promise<{ reply: Message; finish?: MessageOf<'attest-finish'> }> {
    const ch = await svc.handle(rt({ t: 'attest-begin', machine: this.id, akName: this.ak.name, ...this.binding(), ...o.begin }), CTX);
    if (ch.t !== 'attest-challenge') return { reply: ch };
    const ak = o.ak ?? this.ak;
    const q = await quotePCRs(this.tpm, ak, { selection: toTpmSelection(ch.pcrSelection), nonce: o.quoteNonce ?? ch.nonce });
    const fin: MessageOf<'attest-finish'> = {
      t: 'attest-finish', machine: this.id, akName: this.ak.name, ...this.binding(), nonce: ch.nonce, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs,
      eventLog: o.log ?? this.log,
    };
    o.mutate?.(fin);
    return { reply: await (o.finishWith ?? svc).handle(rt(fin), CTX), finish: fin };
  }
}

export function code(m: Message): string {
  return m.t === 'error' ? m.code : m.t;
}
