/**
 * Signed-by staging rules (issue 11 §2): may a digest be added to a boot-chain stage on the
 * strength of an Authenticode signature? A stage's `signedBy` lists certificates (by the SHA-256
 * of their DER); a staging request carries the digest and the PKCS#7 SignedData blob of the file
 * (not the file). The check, in order:
 *   1. the stage lists at least one certificate (else UNLISTED_SIGNER: nothing may be staged into
 *      it by signature), and there is a blob (else UNSIGNED);
 *   2. the blob decodes as DER PKCS#7 SignedData with an SpcIndirectDataContent (else BAD_SIGNATURE);
 *   3. the digest it signs is the staged digest, in the policy's bank (else DIGEST_NOT_COVERED);
 *   4. a SignerInfo's signed attributes match and its signature verifies with the signer's key
 *      (else BAD_SIGNATURE);
 *   5. that signer chains, through the blob's certificates, to a certificate whose DER SHA-256 the
 *      stage lists (in the blob, or among the `certs` given) (else UNLISTED_SIGNER). As firmware and shim: no validity
 *      dates, no key usage, no revocation.
 * This can only happen at staging time: at boot the quote carries digests, never signatures, so
 * the server checks the boot against the digests staged. A key that signed a staged image stays
 * trusted for that image until the image is dropped from the policy; dbx is the firmware's.
 * Pure.
 * @module
 */
import { createHash, type X509Certificate } from 'node:crypto';
import type { BankName } from '../pcrs.ts';
import type { Stage } from '../measuredboot/policy.ts';
import { EfiError } from './errors.ts';
import { verifyDigestSignature } from './authenticode.ts';
import { DIGEST_NAMES, type DigestName } from './pe.ts';

export type StagedSignatureCode = 'UNSIGNED' | 'UNLISTED_SIGNER' | 'DIGEST_NOT_COVERED' | 'BAD_SIGNATURE';

export type StagedSignatureResult =
  | { ok: true; /** The signer's subject. */ signer: string; /** SHA-256 of the listed certificate the chain ended at. */ anchor: string }
  | { ok: false; code: StagedSignatureCode; message: string };

const sha256 = (der: Buffer) => createHash('sha256').update(der).digest('hex');
const short = (h: string) => (h.length > 12 ? h.slice(0, 12) + '…' : h);

/**
 * Checks that `pkcs7` (an Authenticode PKCS#7 SignedData, DER) signs `digest` (in `bank`) and
 * chains to a certificate `stage.signedBy` lists. `certs`: certificates that may complete the
 * chain (a distribution's CA, a db or MOK certificate) beyond those inside the blob.
 */
export function checkStagedSignature(stage: Stage, digest: Buffer, bank: BankName, pkcs7: Buffer | undefined, certs: X509Certificate[] = []): StagedSignatureResult {
  const no = (code: StagedSignatureCode, message: string): StagedSignatureResult => ({ ok: false, code, message });
  const listed = new Set((stage.signedBy ?? []).map((c) => c.sha256));
  const names = (stage.signedBy ?? []).map((c) => c.subject ?? short(c.sha256));
  if (!listed.size) return no('UNLISTED_SIGNER', `the ${stage.role} stage lists no signing certificate (signedBy): no image may be staged into it by signature`);
  if (!pkcs7 || pkcs7.length === 0) return no('UNSIGNED', `the staged ${stage.role} ${bank} ${short(digest.toString('hex'))} comes without an Authenticode signature; the ${stage.role} stage requires one by ${names.join(' or ')}`);
  if (!(DIGEST_NAMES as readonly string[]).includes(bank)) return no('DIGEST_NOT_COVERED', `Authenticode signs SHA-1/256/384/512 digests, the policy's bank is ${bank}`);
  // The listed certificates among those at hand: the blob's own and the given ones.
  let res;
  try {
    const pool = certs.filter((c) => listed.has(sha256(c.raw)));
    // A first pass without anchors decodes the blob, so its own certificates can be anchors too.
    const first = verifyDigestSignature(pkcs7, digest, bank as DigestName);
    const anchors = [...pool, ...first.certificates.filter((c) => listed.has(c.sha256)).map((c) => c.x509)];
    // Chains run through the blob's certificates to a listed one; given certificates that are
    // not listed are not used.
    res = verifyDigestSignature(pkcs7, digest, bank as DigestName, anchors.length ? anchors : []);
    if (!res.digestMatches) {
      return no('DIGEST_NOT_COVERED', res.digestAlgorithm !== bank
        ? `the signature signs a ${res.digestAlgorithm} digest, the staged digest is ${bank}: it does not cover it`
        : `the signature signs ${bank} ${short(res.signedDigest.toString('hex'))}, not the staged ${stage.role} digest ${short(digest.toString('hex'))}`);
    }
    const verifying = res.signers.filter((s) => s.attributesMatch && s.signatureVerifies);
    if (!verifying.length) return no('BAD_SIGNATURE', `the signature does not verify: ${res.signers.map((s) => s.reason ?? 'no reason').join('; ') || 'no signer'}`);
    const trusted = verifying.find((s) => s.chain === 'trusted');
    if (!trusted) {
      const who = verifying.map((s) => s.cert?.subject ?? 'an unknown signer').join('; ');
      return no('UNLISTED_SIGNER', `the ${stage.role} is signed by ${who}, which does not chain to a certificate the ${stage.role} stage lists (${names.join(' or ')})`);
    }
    return { ok: true, signer: trusted.cert?.subject ?? '', anchor: trusted.anchor ?? '' };
  } catch (e) {
    if (e instanceof EfiError) return no('BAD_SIGNATURE', `the signature blob does not decode: ${e.message}`);
    throw e;
  }
}
