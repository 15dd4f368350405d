/**
 * Policy lint: is a policy so permissive that it matches (almost) any boot? Pure; used by
 * `bootkey admin set-policy` / `put-policy` on both sides (the CLI and the server refuse such a
 * policy unless `--allow-permissive` is given).
 *
 * A policy "pins code" when at least one of these holds:
 * - `firmware` lists at least one allowed firmware (PCR 0: the S-CRTM and firmware code);
 * - `bootChain` has a stage that is not `allowAny` and lists at least one allowed digest (PCR 4);
 * - `secureBoot` requires Secure Boot on AND `keys` or `authorities` say which keys may sign
 *   (PCR 7: only code signed by those keys runs);
 * - `pcrValues` pins PCR 0, 2 or 4 (code PCRs) to at least one value.
 * Checked in order; the first reason found is returned.
 * @module
 */
import type { Policy } from './policy.ts';

/** PCRs whose value is a measurement of code (firmware, option ROMs, boot applications). */
export const CODE_PCRS: readonly number[] = [0, 2, 4];

/** Why `policy` is permissive (matches boots that run arbitrary code), or undefined when it pins code. */
export function permissiveReason(policy: Policy): string | undefined {
  const r = policy.rules ?? {};
  if (!Array.isArray(policy.pcrs) || policy.pcrs.length === 0) return 'the policy selects no PCR, so the quote proves nothing about the boot';
  const pinned = Object.entries(r.pcrValues ?? {}).filter(([, v]) => Array.isArray(v) && v.length > 0);
  const hasRule = Boolean(r.firmware || r.bootChain || r.secureBoot || r.keys || r.authorities || r.debug || r.kernelCmdline) || pinned.length > 0;
  if (!hasRule) return 'the policy has no rules: it matches every boot';
  const firmware = (r.firmware?.allowed.length ?? 0) > 0;
  const stages = r.bootChain?.stages ?? [];
  const chain = stages.some((s) => !s.allowAny && s.allowed.length > 0);
  const sbKeys = r.secureBoot?.enabled === true && Boolean(r.keys || (r.authorities && r.authorities.allowed.length > 0));
  const codePcr = pinned.some(([p]) => CODE_PCRS.includes(Number(p)));
  if (firmware || chain || sbKeys || codePcr) return undefined;
  const why: string[] = [];
  if (stages.length > 0) why.push('every boot-chain stage allows any image');
  else if (policy.options?.allowAnyKernel) why.push('it allows any kernel');
  if (r.secureBoot && !r.secureBoot.enabled) why.push('Secure Boot may be off');
  else if (r.secureBoot) why.push('Secure Boot is required but no keys/authorities say which signers');
  return `no rule pins the code that runs (no firmware, boot-chain digests, Secure Boot keys, or PCR ${CODE_PCRS.join('/')} values)${why.length ? `: ${why.join('; ')}` : ''}`;
}
