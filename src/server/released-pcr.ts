/**
 * Which PCR may be the "released" PCR (the one the client extends after a release so that no
 * second release happens in the same boot). It must be one that nothing can reset during a
 * boot, and one the policy does not measure:
 *
 * - 16 is the debug PCR (resettable and extendable from any locality);
 * - 17-22 are the DRTM PCRs, reset by a dynamic launch (locality 4) and some by locality 2/3;
 * - 23 is the application PCR, resettable by software with TPM2_PCR_Reset;
 * - a PCR of the policy (or one carrying the kernel command line) would make the boot's own
 *   measurements depend on whether a key was released.
 * @module
 */

/** PCRs that can be reset during a boot (PC Client PTP, PCR attributes). */
export const RESETTABLE_PCRS: readonly number[] = [16, 17, 18, 19, 20, 21, 22, 23];

/** Why `pcr` cannot be the released PCR, or undefined when it can. `policyPcrs`: the PCRs the policy quotes. */
export function releasedPcrProblem(pcr: number, policyPcrs: readonly number[] = []): string | undefined {
  if (!Number.isInteger(pcr) || pcr < 0 || pcr > 23) return `released PCR ${pcr} is not 0-23`;
  if (pcr === 16) return 'released PCR 16 is the debug PCR: any locality can reset it, so a second release in one boot would go unnoticed';
  if (pcr >= 17 && pcr <= 22) return `released PCR ${pcr} is a DRTM PCR: a dynamic launch (and locality 2-4) resets it`;
  if (pcr === 23) return 'released PCR 23 is the application PCR: software can reset it (TPM2_PCR_Reset)';
  if (policyPcrs.includes(pcr)) return `released PCR ${pcr} is one of the policy's PCRs (${[...policyPcrs].sort((a, b) => a - b).join(',')}): the policy would measure the release itself`;
  return undefined;
}
