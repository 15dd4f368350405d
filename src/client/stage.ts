/**
 * Machine-side staging, the client (issue 11 §3): the running, enrolled machine asks its servers
 * to allow the boot an update will make. Over one TLS connection (src/client/connect.ts, the CA
 * pinned by the LUKS2 token):
 *   stage-begin{machine, AK name, requestHash} → stage-challenge{random, PCR selection}
 *   → quote of that selection with the AK over SHA-256(random ‖ requestHash) (src/protocol/stage.ts)
 *   → stage-finish{quote, PCRs, this boot's event log, the prediction, the label} → staged
 * The server checks that this boot passes the machine's policy and that the prediction stays
 * within the machine's staging permission (src/server/staging.ts); a refusal is a ClientError
 * REFUSED carrying the server's code (STAGING_NOT_ALLOWED, UNSIGNED, UNLISTED_SIGNER,
 * DIGEST_NOT_COVERED, STAGE_WIDENS, NONCE, POLICY, ...).
 * @module
 */
import type { Tpm } from '../tpm/tpm.ts';
import { createAK, flushKey, type KeyHandle } from '../tpm/keys.ts';
import { quotePCRs } from '../tpm/commands/attest.ts';
import { marshalSignature } from '../tpm/structures.ts';
import type { MessageOf } from '../protocol/index.ts';
import { stageNonce, stageRequestHash } from '../protocol/stage.ts';
import { withServer, type ClientOptions } from './connect.ts';
import { tokenAKTemplate, type BootkeyToken } from './token.ts';
import { toTpmSelection } from './selection.ts';

export type StageFinish = MessageOf<'stage-finish'>;

export interface StageOptions {
  tpm: Tpm;
  token: BootkeyToken;
  /** This boot's event log. */
  eventLog: Buffer;
  /** The PredictedBoot as JSON text (what is hashed and sent). */
  prediction: string;
  label?: string;
  deadlineMs?: number;
  client?: Partial<ClientOptions>;
  log?: (line: string) => void;
  /** Tests: rewrite the stage-finish before it is sent. */
  tamper?: (m: StageFinish) => StageFinish | Promise<StageFinish>;
}

export interface StageResult {
  server: string;
  staged: MessageOf<'staged'>;
}

/** @throws ClientError (REFUSED with the server's code, UNREACHABLE), TpmError */
export async function stageWithServer(o: StageOptions): Promise<StageResult> {
  const { token } = o;
  const requestHash = stageRequestHash(o.prediction, o.label ?? '');
  let ak: KeyHandle | undefined = await createAK(o.tpm, token.ak_alg, tokenAKTemplate(token));
  let server = '';
  try {
    const staged = await withServer({ servers: token.servers, ca: token.ca, deadlineMs: o.deadlineMs ?? 60_000, maxAttempts: 20, log: o.log, ...o.client }, async (s) => {
      server = s.server;
      const ch = await s.request({ t: 'stage-begin', machine: token.machine, akName: ak!.name, requestHash }, ['stage-challenge']);
      const q = await quotePCRs(o.tpm, ak!, { selection: toTpmSelection(ch.pcrSelection), nonce: stageNonce(ch.random, requestHash) });
      let finish: StageFinish = {
        t: 'stage-finish', machine: token.machine, akName: ak!.name, random: ch.random, quote: q.quoted, signature: marshalSignature(q.signature),
        pcrs: q.pcrs, eventLog: o.eventLog, prediction: o.prediction, ...(o.label !== undefined ? { label: o.label } : {}),
      };
      if (o.tamper) finish = await o.tamper(finish);
      return await s.request(finish, ['staged']);
    });
    return { server, staged };
  } finally {
    await flushKey(o.tpm, ak).catch(() => undefined);
    ak = undefined;
  }
}
