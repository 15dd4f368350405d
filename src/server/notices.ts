/**
 * Notices: things the operator must act on although a release succeeded. They travel in the
 * `released` reply's `notices` (the client logs one line each), and the server logs and audits
 * them. Not refusals: a machine that gets a notice still unlocks.
 *
 * - AK_NO_DA: the enrolled AK has noDA CLEAR (AK template v1, bootkey before issue 10). Each
 *   power loss after an unlock raises the TPM's dictionary-attack counter, and after
 *   TPM_PT_MAX_AUTH_FAIL of them (3 on swtpm) TPM2_Quote answers TPM_RC_LOCKOUT and the machine
 *   can no longer unlock (until the counter decays, TPM_PT_LOCKOUT_INTERVAL per failure).
 *   Fix: re-enrol (`bootkey enroll`), which creates a v2 AK (noDA). docs/SERVER.md.
 * @module
 */
import { hasNoDA } from '../tpm/templates.ts';
import type { TPMTPublic } from '../tpm/structures.ts';
import type { Notice } from '../protocol/messages.ts';

export const NOTICE_AK_NO_DA = 'AK_NO_DA';

/** The notices an enrolled AK calls for (empty when none). */
export function akNotices(akPublic: TPMTPublic): Notice[] {
  if (hasNoDA(akPublic)) return [];
  return [{
    code: NOTICE_AK_NO_DA,
    message: 'the enrolled AK lacks noDA: power losses can lock the TPM out and stop unlocking; re-enrol this machine (bootkey enroll)',
  }];
}
