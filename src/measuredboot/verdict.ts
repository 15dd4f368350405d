/**
 * The verdict on a boot: one function, used by the server (after it verified the quote's
 * signature, nonce and PCR digest) and by `bootkey policy check --pcrs` offline, so that both
 * give exactly the same decision with the same reasons.
 *
 * Checklist, in order; the first failing step decides the code:
 *  1. EVENTLOG: the log parses (strictly: every measured event has a digest for every bank).
 *  2. SELECTION: the quote covers every PCR the policy reads ({@link policyPcrs}, derived from
 *     the policy) in the policy's bank, and the released PCR.
 *  3. REPLAY: the log replays to every quoted PCR (bindLogToQuote); only then does anything in
 *     the log count, and only the events of quoted PCRs.
 *  4. ALREADY_RELEASED: the released PCR is still zero in every quoted bank.
 *  5. POLICY: checkPolicy on the TrustedLog; `failures` names every failed rule.
 * Without quoted values (offline, no --pcrs) steps 2–4 are skipped, the log is taken on its
 * word (unverifiedLog), and `verified` is false: the result says what the log CLAIMS.
 * Pure.
 * @module
 */
import { BANK_SIZE, type BankName, type PcrValues } from '../pcrs.ts';
import { parseEventLog } from './eventlog.ts';
import { EventLogError } from './errors.ts';
import { bindLogToQuote, unverifiedLog, BindError, type TrustedLog } from './trusted.ts';
import { checkPolicy, policyPcrs, type Failure, type Policy } from './policy.ts';
import type { EventLog } from './types.ts';

export type VerdictCode = 'EVENTLOG' | 'SELECTION' | 'REPLAY' | 'ALREADY_RELEASED' | 'POLICY';

export interface Verdict {
  pass: boolean;
  /** The refusal code, as the server sends it; absent when the boot passes. */
  code?: VerdictCode;
  /** One line saying why (absent when the boot passes). */
  message?: string;
  failures: Failure[];
  warnings: string[];
  /** True when the log was bound to quoted values; false: an unverified log, judged on its word. */
  verified: boolean;
  /** PCRs that passed as a whole as known-good values. */
  knownGoodPcrs: number[];
}

export interface VerdictOptions {
  /** The released PCR (default none): exempt from replay, must be zero, must be quoted when given. */
  releasedPcr?: number;
}

/** The selection a quote must cover: the policy's PCRs ∪ the released PCR, in the policy's bank. */
export function requiredPcrs(policy: Policy, releasedPcr?: number): number[] {
  const s = new Set(policyPcrs(policy));
  if (releasedPcr !== undefined) s.add(releasedPcr);
  return [...s].sort((a, b) => a - b);
}

function refused(code: VerdictCode, message: string, verified: boolean, failures: Failure[] = [], warnings: string[] = []): Verdict {
  return { pass: false, code, message, failures, warnings, verified, knownGoodPcrs: [] };
}

/**
 * The server's decision on a boot, from the policy, the log's bytes (or a parsed log), and the
 * PCR values the verified quote covered (exactly those PCRs).
 */
export function evaluateBoot(policy: Policy, eventLog: Uint8Array | EventLog, quoted: PcrValues | undefined, opts: VerdictOptions = {}): Verdict {
  const verified = quoted !== undefined;
  let log: EventLog;
  if (eventLog instanceof Uint8Array) {
    try {
      log = parseEventLog(eventLog);
    } catch (e) {
      if (e instanceof EventLogError) return refused('EVENTLOG', `event log: ${e.message}`, verified);
      throw e;
    }
  } else log = eventLog;

  let tl: TrustedLog;
  if (quoted) {
    const need = requiredPcrs(policy, opts.releasedPcr);
    const got = quoted.get(policy.bank);
    const missing = need.filter((p) => !got?.has(p));
    if (missing.length) return refused('SELECTION', `the quote does not cover PCR(s) ${missing.join(', ')} of bank ${policy.bank}, which the policy reads${opts.releasedPcr !== undefined && missing.includes(opts.releasedPcr) ? ` (PCR ${opts.releasedPcr} is the released PCR)` : ''}`, true);
    try {
      tl = bindLogToQuote(log, quoted, opts.releasedPcr !== undefined ? { skipPcr: opts.releasedPcr } : {});
    } catch (e) {
      if (e instanceof BindError) return refused('REPLAY', e.message, true);
      throw e;
    }
    if (opts.releasedPcr !== undefined) {
      for (const [bank, pcrs] of quoted) {
        const v = pcrs.get(opts.releasedPcr);
        if (v && !v.equals(Buffer.alloc(BANK_SIZE[bank as BankName]))) {
          return refused('ALREADY_RELEASED', `PCR ${bank}:${opts.releasedPcr} is not zero: a key was already released in this boot (or something else extended it)`, true);
        }
      }
    }
  } else tl = unverifiedLog(log);

  const res = checkPolicy(policy, tl);
  const unverifiedNote = verified ? '' : ' (UNVERIFIED: no quoted PCR values were given, so this is what the log claims, not what the TPM measured)';
  if (!res.pass) {
    return { pass: false, code: 'POLICY', message: `the boot does not match the policy: ${res.failures.length} rule(s) failed${unverifiedNote}`, failures: res.failures, warnings: res.warnings, verified, knownGoodPcrs: res.knownGoodPcrs };
  }
  return { pass: true, failures: [], warnings: verified ? res.warnings : [`UNVERIFIED: no quoted PCR values were given; the log passes the policy on its own word only`, ...res.warnings], verified, knownGoodPcrs: res.knownGoodPcrs };
}
