/**
 * TPM_RC decoding, Part 2 §6.6: response code → spec name, subject (handle, parameter,
 * session) and its index, e.g. 0x9a2 → "TPM_RC_BAD_AUTH (session 1)".
 * @module
 */

const FMT0: Record<number, string> = {
  0x000: 'INITIALIZE', 0x001: 'FAILURE', 0x003: 'SEQUENCE', 0x00b: 'PRIVATE', 0x019: 'HMAC',
  0x020: 'DISABLED', 0x021: 'EXCLUSIVE', 0x024: 'AUTH_TYPE', 0x025: 'AUTH_MISSING', 0x026: 'POLICY',
  0x027: 'PCR', 0x028: 'PCR_CHANGED', 0x02d: 'UPGRADE', 0x02e: 'TOO_MANY_CONTEXTS',
  0x02f: 'AUTH_UNAVAILABLE', 0x030: 'REBOOT', 0x031: 'UNBALANCED', 0x042: 'COMMAND_SIZE',
  0x043: 'COMMAND_CODE', 0x044: 'AUTHSIZE', 0x045: 'AUTH_CONTEXT', 0x046: 'NV_RANGE', 0x047: 'NV_SIZE',
  0x048: 'NV_LOCKED', 0x049: 'NV_AUTHORIZATION', 0x04a: 'NV_UNINITIALIZED', 0x04b: 'NV_SPACE',
  0x04c: 'NV_DEFINED', 0x050: 'BAD_CONTEXT', 0x051: 'CPHASH', 0x052: 'PARENT', 0x053: 'NEEDS_TEST',
  0x054: 'NO_RESULT', 0x055: 'SENSITIVE',
};

const FMT1: Record<number, string> = {
  0x001: 'ASYMMETRIC', 0x002: 'ATTRIBUTES', 0x003: 'HASH', 0x004: 'VALUE', 0x005: 'HIERARCHY',
  0x007: 'KEY_SIZE', 0x008: 'MGF', 0x009: 'MODE', 0x00a: 'TYPE', 0x00b: 'HANDLE', 0x00c: 'KDF',
  0x00d: 'RANGE', 0x00e: 'AUTH_FAIL', 0x00f: 'NONCE', 0x010: 'PP', 0x012: 'SCHEME', 0x015: 'SIZE',
  0x016: 'SYMMETRIC', 0x017: 'TAG', 0x018: 'SELECTOR', 0x01a: 'INSUFFICIENT', 0x01b: 'SIGNATURE',
  0x01c: 'KEY', 0x01d: 'POLICY_FAIL', 0x01f: 'INTEGRITY', 0x020: 'TICKET', 0x021: 'RESERVED_BITS',
  0x022: 'BAD_AUTH', 0x023: 'EXPIRED', 0x024: 'POLICY_CC', 0x025: 'BINDING', 0x026: 'CURVE',
  0x027: 'ECC_POINT',
};

const WARN: Record<number, string> = {
  0x001: 'CONTEXT_GAP', 0x002: 'OBJECT_MEMORY', 0x003: 'SESSION_MEMORY', 0x004: 'MEMORY',
  0x005: 'SESSION_HANDLES', 0x006: 'OBJECT_HANDLES', 0x007: 'LOCALITY', 0x008: 'YIELDED',
  0x009: 'CANCELED', 0x00a: 'TESTING', 0x020: 'NV_RATE', 0x021: 'LOCKOUT', 0x022: 'RETRY',
  0x023: 'NV_UNAVAILABLE',
};
for (let i = 0; i < 7; i++) {
  WARN[0x010 + i] = `REFERENCE_H${i}`;
  WARN[0x018 + i] = `REFERENCE_S${i}`;
}

export interface DecodedRC {
  rc: number;
  /** Spec name without subject, e.g. "TPM_RC_POLICY_FAIL". */
  name: string;
  /** The base code with subject bits cleared (what callers compare against). */
  base: number;
  subject?: 'handle' | 'parameter' | 'session';
  index?: number;
  warning: boolean;
}

/** A table's own entry (never an Object.prototype property). */
const own = (t: Record<number, string>, n: number): string | undefined => (Object.hasOwn(t, n) ? t[n] : undefined);

/** Decodes a response code; unknown codes get a hex name. */
export function decodeRC(rc: number): DecodedRC {
  rc >>>= 0;
  if (rc === 0) return { rc, name: 'TPM_RC_SUCCESS', base: 0, warning: false };
  if (rc & 0x080) {
    const n = rc & 0x3f;
    const base = 0x080 + n;
    const name = own(FMT1, n) ? `TPM_RC_${own(FMT1, n)}` : `TPM_RC_0x${base.toString(16)}`;
    if (rc & 0x040) return { rc, name, base, subject: 'parameter', index: (rc >> 8) & 0xf, warning: false };
    if (rc & 0x800) return { rc, name, base, subject: 'session', index: (rc >> 8) & 0x7, warning: false };
    const h = (rc >> 8) & 0x7;
    return h ? { rc, name, base, subject: 'handle', index: h, warning: false } : { rc, name, base, warning: false };
  }
  if (rc & 0x100) {
    const n = rc & 0x7f;
    if (rc & 0x400) return { rc, name: `TPM_RC_VENDOR_0x${rc.toString(16)}`, base: rc, warning: false };
    if (rc & 0x800) return { rc, name: own(WARN, n) ? `TPM_RC_${own(WARN, n)}` : `TPM_RC_WARN_0x${rc.toString(16)}`, base: rc, warning: true };
    return { rc, name: own(FMT0, n) ? `TPM_RC_${own(FMT0, n)}` : `TPM_RC_0x${rc.toString(16)}`, base: rc, warning: false };
  }
  return { rc, name: `TPM_RC_0x${rc.toString(16)} (TPM 1.2 code)`, base: rc, warning: false };
}

/** "TPM_RC_BAD_AUTH (session 1, 0x9a2)" */
export function formatRC(rc: number): string {
  const d = decodeRC(rc);
  const subj = d.subject ? `${d.subject} ${d.index}, ` : '';
  return `${d.name} (${subj}0x${(rc >>> 0).toString(16)})`;
}

/** Response-code constants callers compare against (`TpmError.rcBase`). */
export const TPM_RC = {
  SUCCESS: 0x000,
  INITIALIZE: 0x100,
  FAILURE: 0x101,
  POLICY: 0x126,
  PCR_CHANGED: 0x128,
  NV_UNINITIALIZED: 0x14a,
  HANDLE: 0x08b,
  AUTH_FAIL: 0x08e,
  POLICY_FAIL: 0x09d,
  INTEGRITY: 0x09f,
  BAD_AUTH: 0x0a2,
  VALUE: 0x084,
  SIZE: 0x095,
  OBJECT_MEMORY: 0x902,
  LOCKOUT: 0x921,
  RETRY: 0x922,
  TESTING: 0x90a,
  YIELDED: 0x908,
} as const;
