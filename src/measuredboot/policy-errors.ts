/**
 * PolicyError: the one error class of the policy layer (`layer: 'policy'`).
 * @module
 */
import { BootkeyError } from '../errors.ts';

/** Stable codes of the policy layer. */
export type PolicyErrorCode =
  | 'BAD_POLICY' // a policy file that is not valid JSON or does not match schema/policy.schema.json
  | 'BAD_LOG' // a log whose structure cannot be trusted (duplicate separator, variable after separator, ...)
  | 'NO_BANK' // the requested bank is not in the log
  | 'SECUREBOOT_DOWNGRADE' // add-boot: Secure Boot was on in the policy and is off in the new boot
  | 'DBX_ROLLBACK' // add-boot: the new boot's dbx lacks revocations the policy requires
  | 'DEBUG_BOOT' // add-boot: the new boot had a UEFI debugger or DMA protection disabled
  | 'NO_CMDLINE' // generate: no kernel command line measured (and --allow-any-cmdline not given)
  | 'NOT_QUOTED' // generate: the quote/log does not cover a PCR the policy would read
  | 'BAD_OPTION'; // generatePolicy options out of range (PCR index, bank)

export class PolicyError extends BootkeyError {
  readonly layer = 'policy';
  constructor(code: PolicyErrorCode, message: string) {
    super(code, message);
  }
}
