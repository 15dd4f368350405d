/**
 * Enrolment, on the running system, authorised by an enrolment token (scoped to enrolment,
 * limited uses and lifetime; `bootkey admin token create`):
 *
 *  1. EK public (+ certificate from NV when there is one) and the AK (a primary from a fixed
 *     template: the same AK on every boot; template v2, noDA) from the TPM.
 *  2. enroll-begin{EK, cert, AK, machine id, hostname} → enroll-challenge{credential, nonce, selection}.
 *  3. ActivateCredential in an EK policy session salted to the EK public just read and with
 *     parameter encryption (proves the AK is in the TPM that holds that EK), quote the
 *     challenge's selection with its nonce, read those PCRs.
 *  4. enroll-finish{proof, quote, PCRs, event log} → enroll-accepted{machine, serverShare, releasedPcr,
 *     tokenSig (the server's signature over machine, EK Name, released PCR; stored in the token)}.
 *  5. A random 32-byte disk share; LUKS key = HKDF(serverShare ‖ diskShare, machine id).
 *  6. `cryptsetup luksAddKey` (new key on stdin), `cryptsetup token import` of the bootkey
 *     token, `open --test-passphrase` with the derived key.
 *  7. enroll-commit: only now is the machine active on the server, and the server has deleted
 *     the old record of this EK (a re-enrolment). Then the device's older bootkey tokens of the
 *     same EK and CA (the same TPM and server) are removed with their keyslots: their server
 *     share is gone, and unlock uses the lowest-numbered token.
 *
 * Any failure undoes what was done, in reverse: the token is removed, the keyslot killed, and
 * the pending enrolment aborted on the server (enroll-abort, over a fresh connection when the
 * old one broke). A server that never sees the commit keeps the machine pending and never
 * releases to it.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { Tpm } from '../tpm/tpm.ts';
import { activateCredential, createAK, flushKey, getEK, readEKCertificate, type KeyHandle } from '../tpm/keys.ts';
import { quotePCRs } from '../tpm/commands/attest.ts';
import { marshalPublic2B, marshalSignature } from '../tpm/structures.ts';
import { AK_TEMPLATE_CURRENT, type AKTemplateVersion, type KeyAlg } from '../tpm/templates.ts';
import { addKey, importToken, killSlot, removeToken, testKey, readMetadata, LuksError } from '../luks/cryptsetup.ts';
import { deriveLuksKey, SHARE_SIZE } from '../client/key.ts';
import { ClientError, withServer, type ClientOptions, type ServerSession } from '../client/connect.ts';
import { toTpmSelection } from '../client/selection.ts';
import { findTokens, type BootkeyToken } from '../client/token.ts';

export interface EnrollOptions {
  servers: string[];
  /** The server CA (PEM): pinned into the token. */
  ca: string;
  /** An enrolment token (`bootkey admin token create`); never the admin token. */
  enrolToken: string;
  tpm: Tpm;
  device: string;
  /** A file with an existing passphrase of the device. */
  keyFile: string;
  eventLog: Buffer;
  ekAlg?: KeyAlg;
  akAlg?: KeyAlg;
  /**
   * The AK template (default: the current one, v2 with noDA). "v1" only reproduces an enrolment
   * made before v2 (tests): its token then has no `ak_template`, as those had.
   */
  akTemplate?: AKTemplateVersion;
  machineId: string;
  hostname: string;
  /** Transport knobs (deadline, retries) passed to withServer. */
  client?: Partial<ClientOptions>;
  log?: (line: string) => void;
  /** Tests: called between steps; throwing there simulates a failure at that step. */
  hook?: (step: 'accepted' | 'keyslot' | 'token' | 'verified') => Promise<void> | void;
}

export interface EnrollResult {
  machine: string;
  keyslot: number;
  tokenId: number;
  releasedPcr: number;
  policySummary: string;
  ekName: string;
  akName: string;
}

/**
 * Enrols the machine and the device. See the module doc for the flow and the rollback.
 * @throws ClientError REFUSED (the server's code), UNREACHABLE; LuksError BAD_KEY (the key file
 *   opens nothing), NOT_LUKS2, ...; TpmError. The device and the server are as before on any throw.
 */
export async function enroll(o: EnrollOptions): Promise<EnrollResult> {
  const log = o.log ?? (() => undefined);
  const ekAlg = o.ekAlg ?? 'rsa';
  const akAlg = o.akAlg ?? 'ecc';
  const akVersion = o.akTemplate ?? AK_TEMPLATE_CURRENT;
  // Fail early, before the server hears of us, on a device that is not LUKS2.
  await readMetadata(o.device);

  const clientOpts: ClientOptions = { servers: o.servers, ca: o.ca, deadlineMs: 120_000, maxAttempts: 3, log, ...o.client };
  const keepOpen: ClientOptions = { ...clientOpts, keepOpen: true };
  let ek: KeyHandle | undefined;
  let ak: KeyHandle | undefined;
  let session: ServerSession | undefined;
  let enrollment: string | undefined;
  let committed = false;
  let slot: number | undefined;
  let tokenId: number | undefined;
  let luksKey: Buffer | undefined;
  let serverShare: Buffer | undefined;
  const diskShare = randomBytes(SHARE_SIZE);
  try {
    ek = await getEK(o.tpm, ekAlg);
    const ekCert = await readEKCertificate(o.tpm, ekAlg);
    ak = await createAK(o.tpm, akAlg, akVersion);
    log(`TPM: EK ${ekAlg} ${ek.name.toString('hex')}${ekCert ? ' (with certificate)' : ''}, AK ${akAlg} ${ak.name.toString('hex')}`);

    const accepted = await withServer(keepOpen, async (s) => {
      const ch = await s.request(
        { t: 'enroll-begin', enrolToken: o.enrolToken, ekPublic: marshalPublic2B(ek!.public), ekCert, akPublic: marshalPublic2B(ak!.public), machineId: o.machineId, hostname: o.hostname },
        ['enroll-challenge'],
      );
      enrollment = ch.enrollment;
      session = s;
      log(`server: enrolment ${ch.enrollment} started, challenge over ${ch.pcrSelection.map((x) => `${x.bank}:${x.pcrs.join(',')}`).join(' ')}`);
      const proof = await activateCredential(o.tpm, { ak: ak!, ek: ek!, credentialBlob: ch.credentialBlob, secret: ch.encryptedSecret, pinnedEK: ek!.public, encrypt: true });
      try {
        const q = await quotePCRs(o.tpm, ak!, { selection: toTpmSelection(ch.pcrSelection), nonce: ch.nonce });
        return await s.request(
          { t: 'enroll-finish', enrolToken: o.enrolToken, enrollment: ch.enrollment, proof, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs, eventLog: o.eventLog },
          ['enroll-accepted'],
        );
      } finally {
        proof.fill(0);
      }
    });
    serverShare = accepted.serverShare;
    log(`server: accepted as machine ${accepted.machine}, released PCR ${accepted.releasedPcr}; policy: ${accepted.policySummary}`);
    await o.hook?.('accepted');

    luksKey = deriveLuksKey(serverShare, diskShare, accepted.machine);
    slot = await addKey(o.device, { existingKeyFile: o.keyFile, newKey: luksKey });
    log(`LUKS: key added in keyslot ${slot}`);
    await o.hook?.('keyslot');
    const token: BootkeyToken = {
      type: 'bootkey',
      keyslots: [String(slot)],
      servers: o.servers,
      ca: o.ca,
      machine: accepted.machine,
      ek: marshalPublic2B(ek.public).toString('base64'),
      share: diskShare.toString('base64'),
      ek_alg: ekAlg,
      ak_alg: akAlg,
      ...(akVersion === 'v1' ? {} : { ak_template: akVersion }),
      released_pcr: accepted.releasedPcr,
      sig: accepted.tokenSig.toString('base64'),
    };
    tokenId = await importToken(o.device, token);
    log(`LUKS: bootkey token ${tokenId} imported`);
    await o.hook?.('token');
    if (!(await testKey(o.device, luksKey, { slot }))) throw new LuksError('BAD_KEY', `${o.device}: the new keyslot ${slot} does not open with the derived key`);
    log('LUKS: the derived key opens the new keyslot (open --test-passphrase)');
    await o.hook?.('verified');

    await commit(clientOpts, session, { t: 'enroll-commit', enrolToken: o.enrolToken, enrollment: enrollment! });
    committed = true;
    log(`server: enrolment ${enrollment} committed`);
    await removeSuperseded(o.device, token, tokenId, log);
    return {
      machine: accepted.machine, keyslot: slot, tokenId, releasedPcr: accepted.releasedPcr, policySummary: accepted.policySummary,
      ekName: ek.name.toString('hex'), akName: ak.name.toString('hex'),
    };
  } catch (e) {
    await rollback(o, clientOpts, session, { enrollment: committed ? undefined : enrollment, slot, tokenId }, log);
    throw e;
  } finally {
    luksKey?.fill(0);
    serverShare?.fill(0);
    diskShare.fill(0);
    session?.conn.stream.destroy();
    await flushKey(o.tpm, ak).catch(() => undefined);
    await flushKey(o.tpm, ek).catch(() => undefined);
  }
}

/**
 * After a committed re-enrolment: removes the device's other bootkey tokens with the same pinned
 * EK and CA as `current` (their machine record was just deleted by the server), and kills their
 * keyslots unless `current` uses them. Failures are logged, not thrown: the enrolment stands.
 */
async function removeSuperseded(device: string, current: BootkeyToken, currentId: number, log: (l: string) => void): Promise<void> {
  let old: { id: number; token: BootkeyToken }[];
  try {
    old = findTokens(await readMetadata(device)).filter((t) => t.id !== currentId && t.token.ek === current.ek && t.token.ca === current.ca);
  } catch (e) {
    log(`re-enrolment: the older bootkey tokens could not be read (${(e as Error).message}); remove them with cryptsetup token remove`);
    return;
  }
  for (const t of old) {
    try {
      await removeToken(device, t.id);
      log(`re-enrolment: token ${t.id} (machine ${t.token.machine}) removed`);
      for (const k of t.token.keyslots) {
        if (current.keyslots.includes(k)) continue;
        await killSlot(device, Number(k)).then(
          () => log(`re-enrolment: keyslot ${k} of token ${t.id} killed`),
          (e: Error) => log(`re-enrolment: keyslot ${k} of token ${t.id} not killed: ${e.message}`),
        );
      }
    } catch (e) {
      log(`re-enrolment: token ${t.id} not removed: ${(e as Error).message}`);
    }
  }
}

/** enroll-commit on the open connection, else on a new one. */
async function commit(opts: ClientOptions, s: ServerSession | undefined, m: { t: 'enroll-commit'; enrolToken: string; enrollment: string }): Promise<void> {
  if (s && !s.conn.stream.destroyed) {
    try {
      await s.request(m, ['ok']);
      return;
    } catch (e) {
      if (e instanceof ClientError && e.code === 'REFUSED') throw e;
    }
  }
  await withServer(opts, (n) => n.request(m, ['ok']));
}

async function rollback(
  o: EnrollOptions,
  opts: ClientOptions,
  s: ServerSession | undefined,
  done: { enrollment?: string; slot?: number; tokenId?: number },
  log: (l: string) => void,
): Promise<void> {
  if (done.tokenId !== undefined) {
    await removeToken(o.device, done.tokenId).then(() => log(`rollback: token ${done.tokenId} removed`), (e: Error) => log(`rollback: removing token ${done.tokenId} failed: ${e.message}`));
  }
  if (done.slot !== undefined) {
    await killSlot(o.device, done.slot).then(() => log(`rollback: keyslot ${done.slot} killed`), (e: Error) => log(`rollback: killing keyslot ${done.slot} failed: ${e.message}`));
  }
  if (done.enrollment) {
    const m = { t: 'enroll-abort' as const, enrolToken: o.enrolToken, enrollment: done.enrollment };
    try {
      if (s && !s.conn.stream.destroyed) await s.request(m, ['ok']);
      else await withServer({ ...opts, deadlineMs: 15_000, maxAttempts: 2 }, (n) => n.request(m, ['ok']));
      log(`rollback: enrolment ${done.enrollment} aborted on the server`);
    } catch (e) {
      log(`rollback: enroll-abort failed (${(e as Error).message}); the enrolment stays pending and is never released to`);
    }
  }
}
