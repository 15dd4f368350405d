/**
 * Machine-side staging (issue 11 §3), the server's decision: may an enrolled machine, in a boot
 * that passes its policy right now (checked before, by the caller: quote, nonce, evaluateBoot),
 * add a predicted boot to its own policy? Pure; the caller stores and audits.
 *
 * Checklist, in order; the first failure refuses with its code:
 *  1. STAGING_NOT_ALLOWED: the machine's policy has `staging.mode` none (the default).
 *  2. BAD_PREDICTION: the PredictedBoot is malformed (parsePredictedBoot, before this module).
 *  3. addBoot's refusals for the predicted log (SECUREBOOT_DOWNGRADE, DBX_ROLLBACK, DEBUG_BOOT,
 *     NO_CMDLINE, BAD_LOG): a staged boot never relaxes what addBoot would not.
 *  4. Under `signed-by`:
 *     - STAGE_WIDENS: policyWidening(before, after) may list only new boot-chain digests; any
 *       other widening (a command line, firmware, keys, a PCR value, a new stage, "any image")
 *       is refused, each one named in `failures`;
 *     - every new PCR 4 image digest (newStagedImages) must carry a PKCS#7 blob that
 *       checkStagedSignature accepts against `staging.signedBy` ∪ the stage's own `signedBy`:
 *       UNSIGNED, UNLISTED_SIGNER, DIGEST_NOT_COVERED, BAD_SIGNATURE.
 *     Under `any`: whatever addBoot adds.
 * A machine-staged boot adds RULES only, never known-good PCR values: a known-good value passes
 * a PCR as a whole whatever its events say, so a machine that could stage one could smuggle any
 * digest sequence past the per-event checks that signed-by relies on.
 * @module
 */
import type { BankName, PcrValues } from '../pcrs.ts';
import { rulesDigest, type Policy, type Staging, type StagedBoot, type SignedBy } from '../measuredboot/policy.ts';
import { PolicyError } from '../measuredboot/policy-errors.ts';
import { newStagedImages, parsePredictedBoot, policyWidening, stageBoot, StageError, type PredictedBoot, type Widening } from '../measuredboot/stage.ts';
import { checkStagedSignature, type StagedSignatureResult } from '../efi/signed-by.ts';
import { ServerError } from './errors.ts';

export const DEFAULT_STAGING_KEEP = 3;
/** Staged boots (pending or active) a machine may hold at once. */
export const MAX_STAGED_PER_MACHINE = 16;

export type StagingCode = 'STAGING_NOT_ALLOWED' | 'STAGE_WIDENS' | 'UNSIGNED' | 'UNLISTED_SIGNER' | 'DIGEST_NOT_COVERED' | 'BAD_SIGNATURE' | 'BAD_PREDICTION';

function refuse(code: string, message: string, failures?: string[]): never {
  throw new ServerError(code, message, failures);
}

export function stagingOf(p: Policy): Required<Pick<Staging, 'mode' | 'keep'>> & Staging {
  const s = p.staging ?? { mode: 'none' };
  return { ...s, keep: s.keep ?? DEFAULT_STAGING_KEEP };
}

/** @throws ServerError STAGING_NOT_ALLOWED when the policy's staging mode is none (the default). */
export function requireStaging(p: Policy): void {
  if (stagingOf(p).mode === 'none') refuse('STAGING_NOT_ALLOWED', 'this machine\'s policy does not allow it to stage boots for itself (staging mode none): an operator must stage the update (`bootkey policy stage`, `admin set-policy`)');
}

/** Parses a PredictedBoot sent as JSON text. @throws ServerError BAD_PREDICTION */
export function readPrediction(json: string): PredictedBoot {
  try {
    return parsePredictedBoot(JSON.parse(json));
  } catch (e) {
    if (e instanceof SyntaxError) refuse('BAD_PREDICTION', `prediction: not JSON: ${e.message}`);
    if (e instanceof StageError) refuse('BAD_PREDICTION', e.message);
    throw e;
  }
}

/**
 * `stageBoot` without known-good values (module doc): the rules of `policy` widened by the
 * predicted boot; the known-good values stay those of `policy` (still valid: the rules only grew).
 * @throws PolicyError (addBoot's codes), StageError
 */
export function selfStage(policy: Policy, predicted: PredictedBoot, o: { label?: string; at?: string } = {}): { policy: Policy; entry: StagedBoot } {
  const after = stageBoot(policy, predicted, { ...(o.label !== undefined ? { label: o.label } : {}), ...(o.at !== undefined ? { at: o.at } : {}) });
  const entry = after.staged![after.staged!.length - 1];
  if (policy.knownGood && policy.knownGoodRules === rulesDigest(policy)) {
    after.knownGood = structuredClone(policy.knownGood);
    after.knownGoodRules = rulesDigest(after);
  } else {
    delete after.knownGood;
    delete after.knownGoodRules;
  }
  return { policy: after, entry };
}

/** The policy a machine's boots are checked against: its own, widened by each active staged boot in order (one that no longer applies is skipped and reported). */
export function effectivePolicy(base: Policy, active: { id: string; prediction: string; label: string }[], skipped?: (id: string, why: string) => void): Policy {
  let p = base;
  for (const s of active) {
    try {
      p = selfStage(p, readPrediction(s.prediction), { label: s.label || s.id }).policy;
    } catch (e) {
      if (e instanceof ServerError || e instanceof PolicyError || e instanceof StageError) skipped?.(s.id, (e as Error).message);
      else throw e;
    }
  }
  return p;
}

function fmt(w: Widening): string {
  return `${w.rule}${w.stage !== undefined ? ` stage ${w.stage}${w.role ? ` (${w.role})` : ''}` : ''}: ${w.value}`;
}

export interface StagingDecision {
  /** The widened policy (rules only). */
  after: Policy;
  /** The staged-boot metadata (PCR 4 apps, predicted values of the PCRs the policy reads). */
  entry: StagedBoot;
  widenings: Widening[];
  /** Per new image under signed-by: "ROLE DIGEST signed by SUBJECT". */
  signers: string[];
  mode: 'signed-by' | 'any';
}

const CODE_RANK: Record<string, number> = { DIGEST_NOT_COVERED: 4, BAD_SIGNATURE: 3, UNLISTED_SIGNER: 2, UNSIGNED: 1 };

/**
 * Decides a staging request against `current` (the machine's effective policy).
 * @throws ServerError with a code of the module doc (addBoot's refusals keep their PolicyError code)
 */
export function decideStaging(current: Policy, predicted: PredictedBoot, o: { label?: string; at?: string } = {}): StagingDecision {
  const staging = stagingOf(current);
  requireStaging(current);
  let after: Policy;
  let entry: StagedBoot;
  try {
    ({ policy: after, entry } = selfStage(current, predicted, o));
  } catch (e) {
    if (e instanceof PolicyError) refuse(e.code, `the staged boot: ${e.message}`);
    if (e instanceof StageError) refuse('BAD_PREDICTION', e.message);
    throw e;
  }
  const widenings = policyWidening(current, after);
  const signers: string[] = [];
  if (staging.mode === 'signed-by') {
    const bad = widenings.filter((w) => !(w.rule === 'boot-chain' && w.stage !== undefined && /^[0-9a-f]+$/.test(w.value)));
    if (bad.length) {
      refuse('STAGE_WIDENS', `under staging mode signed-by a machine may only add signed PCR 4 images; this boot would also allow ${bad.map(fmt).join('; ')}`, bad.map(fmt));
    }
    const bank = current.bank as BankName;
    const stages = current.rules.bootChain?.stages ?? [];
    for (const img of newStagedImages(current, predicted)) {
      const stage = stages[img.stage];
      if (!stage) refuse('STAGE_WIDENS', `the staged boot loads a PCR 4 image (${img.role} ${img.digest.slice(0, 12)}…) beyond the policy's boot-chain stages`, [`boot-chain: new stage ${img.role}`]);
      const listed: SignedBy[] = [...(staging.signedBy ?? []), ...(stage.signedBy ?? [])];
      const st = { ...stage, signedBy: listed };
      const digest = Buffer.from(img.digest, 'hex');
      const results: StagedSignatureResult[] = (img.pkcs7?.length ? img.pkcs7 : [undefined]).map((b) => checkStagedSignature(st, digest, bank, b === undefined ? undefined : Buffer.from(b, 'hex')));
      const ok = results.find((r) => r.ok);
      if (ok && ok.ok) {
        signers.push(`${img.role} ${img.digest.slice(0, 16)}… signed by ${ok.signer || '(no subject)'}`);
        continue;
      }
      const worst = results.filter((r): r is Extract<StagedSignatureResult, { ok: false }> => !r.ok).sort((a, b) => (CODE_RANK[b.code] ?? 0) - (CODE_RANK[a.code] ?? 0))[0];
      refuse(worst.code, worst.message, [`boot-chain stage ${img.stage} (${img.role}): ${worst.code}: ${worst.message}`]);
    }
  }
  return { after, entry, widenings, signers, mode: staging.mode as 'signed-by' | 'any' };
}

/** Which staged boots a release used: those whose predicted PCR 4 value (else every predicted value) equals the quoted one. */
export function matchStaged(entries: { id: string; knownGood: Record<string, string> }[], quoted: PcrValues, bank: BankName): string[] {
  const got = quoted.get(bank);
  if (!got) return [];
  return entries.filter((e) => {
    const keys = Object.hasOwn(e.knownGood, '4') ? ['4'] : Object.keys(e.knownGood);
    return keys.length > 0 && keys.every((k) => got.get(Number(k))?.toString('hex') === e.knownGood[k]);
  }).map((e) => e.id);
}

export { fmt as formatWidening };
