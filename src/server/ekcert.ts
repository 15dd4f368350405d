/**
 * EK certificate checks at enrolment, when the operator configured a manufacturer CA bundle
 * (`--ek-ca FILE`, PEM): the certificate chains to a self-signed root of the bundle through
 * certificates of the bundle (signature and issuer name at each step, at most 8 steps), and
 * its public key equals the EK public area sent. Pure (no network: no AIA fetching, no CRL).
 *
 * The EK certificate's own validity dates are checked against the server's clock with a
 * tolerance of {@link EK_CERT_CLOCK_SKEW_MS} (5 minutes) either side: notBefore − 5 min ≤ now ≤
 * notAfter + 5 min, else EK_CERT naming the date. Both UTCTime and GeneralizedTime are read
 * from the DER (RFC 5280 §4.1.2.5: UTCTime YY ≥ 50 is 19YY; notAfter 99991231235959Z, "no
 * well-defined expiration", is common on EK certificates and simply never expires).
 *
 * Not checked: the validity dates of the issuers in the bundle (the operator chose to trust
 * them; manufacturers' intermediate CAs often expire while the EK certificates they issued,
 * valid for the TPM's lifetime, are still in use), and EK certificate extensions.
 * @module
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { publicKeyFromTPMT } from '../tpm/verify.ts';
import type { TPMTPublic } from '../tpm/structures.ts';
import { ServerError } from './errors.ts';

/** Reads every certificate of a PEM bundle. @throws ServerError('EK_CA') */
export function loadCaBundle(file: string): X509Certificate[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ServerError('EK_CA', `cannot read the EK CA bundle ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (!pems.length) throw new ServerError('EK_CA', `${file}: no PEM certificate found`);
  return pems.map((p, i) => {
    try {
      return new X509Certificate(p);
    } catch (e) {
      throw new ServerError('EK_CA', `${file}: certificate ${i + 1}: ${(e as Error).message}`);
    }
  });
}

/** The tolerance for the server's clock against the certificate's dates. */
export const EK_CERT_CLOCK_SKEW_MS = 5 * 60_000;

/** A DER TLV at `off` within `end`: tag, content start and end. @throws Error on a bad length. */
function tlv(der: Buffer, off: number, end: number): { tag: number; start: number; end: number } {
  if (off + 2 > end) throw new Error(`DER: truncated at offset ${off}`);
  const tag = der[off];
  let len = der[off + 1];
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3 || start + n > end) throw new Error(`DER: bad length at offset ${off}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i];
    start += n;
  }
  if (start + len > end) throw new Error(`DER: element at offset ${off} runs past its container`);
  return { tag, start, end: start + len };
}

/** UTCTime (0x17) or GeneralizedTime (0x18), "Z" form, optional fractional seconds → ms since epoch. */
function derTime(der: Buffer, t: { tag: number; start: number; end: number }, what: string): number {
  const text = der.subarray(t.start, t.end).toString('latin1');
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : t.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d{1,9})?Z$/.exec(text) : null;
  if (!m) throw new Error(`${what}: not a UTCTime/GeneralizedTime in Z form (${JSON.stringify(text.slice(0, 20))})`);
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year >= 50 ? 1900 : 2000;
  const [mo, d, h, mi, se] = m.slice(2, 7).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) throw new Error(`${what}: ${text} is not a valid date`);
  const date = new Date(Date.UTC(2000, 0, 1, h, mi, se));
  date.setUTCFullYear(year, mo - 1, d); // Date.UTC maps years 0..99 to 19xx
  return date.getTime();
}

/**
 * notBefore/notAfter of a DER X.509 certificate (RFC 5280 §4.1: Certificate → TBSCertificate →
 * [0] version?, serialNumber, signature, issuer, validity), in ms since the epoch.
 * @throws Error naming the offset or field on malformed DER.
 */
export function certificateValidity(der: Buffer): { notBefore: number; notAfter: number } {
  const cert = tlv(der, 0, der.length);
  if (cert.tag !== 0x30) throw new Error('DER: the certificate is not a SEQUENCE');
  const tbs = tlv(der, cert.start, cert.end);
  if (tbs.tag !== 0x30) throw new Error('DER: the TBSCertificate is not a SEQUENCE');
  let off = tbs.start;
  let e = tlv(der, off, tbs.end);
  if (e.tag === 0xa0) e = tlv(der, (off = e.end), tbs.end); // version
  for (let i = 0; i < 3; i++) e = tlv(der, (off = e.end), tbs.end); // serialNumber → signature → issuer → validity
  if (e.tag !== 0x30) throw new Error(`DER: validity at offset ${off} is not a SEQUENCE`);
  const nb = tlv(der, e.start, e.end);
  const na = tlv(der, nb.end, e.end);
  return { notBefore: derTime(der, nb, 'notBefore'), notAfter: derTime(der, na, 'notAfter') };
}

function sameKey(a: KeyObject, b: KeyObject): boolean {
  const ja = a.export({ format: 'jwk' });
  const jb = b.export({ format: 'jwk' });
  return ja.kty === jb.kty && ja.n === jb.n && ja.e === jb.e && ja.crv === jb.crv && ja.x === jb.x && ja.y === jb.y;
}

/**
 * The EK certificate's checks (module doc); `now` is the server's clock (ms since the epoch).
 * @throws ServerError('EK_CERT') naming what failed.
 */
export function checkEkCertificate(der: Buffer | undefined, ek: TPMTPublic, bundle: X509Certificate[], now: number = Date.now()): void {
  if (!der) throw new ServerError('EK_CERT', 'EK certificate: none sent, and this server requires one (an EK CA bundle is configured)');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (e) {
    throw new ServerError('EK_CERT', `EK certificate: cannot parse: ${(e as Error).message}`);
  }
  let validity: { notBefore: number; notAfter: number };
  try {
    validity = certificateValidity(der);
  } catch (e) {
    throw new ServerError('EK_CERT', `EK certificate: cannot read its validity: ${(e as Error).message}`);
  }
  const iso = (t: number): string => new Date(t).toISOString();
  if (now < validity.notBefore - EK_CERT_CLOCK_SKEW_MS) {
    throw new ServerError('EK_CERT', `EK certificate: not yet valid: notBefore ${iso(validity.notBefore)} is after the server's time ${iso(now)} (allowed clock skew 5 min)`);
  }
  if (now > validity.notAfter + EK_CERT_CLOCK_SKEW_MS) {
    throw new ServerError('EK_CERT', `EK certificate: expired: notAfter ${iso(validity.notAfter)} is before the server's time ${iso(now)} (allowed clock skew 5 min)`);
  }
  let ekKey: KeyObject;
  try {
    ekKey = publicKeyFromTPMT(ek);
  } catch (e) {
    throw new ServerError('EK_CERT', `EK public: ${(e as Error).message}`);
  }
  if (!sameKey(cert.publicKey, ekKey)) throw new ServerError('EK_CERT', 'EK certificate: its public key is not the EK public sent');
  let cur = cert;
  for (let depth = 0; depth < 8; depth++) {
    const issuer = bundle.find((c) => c.subject === cur.issuer && cur.checkIssued(c) && cur.verify(c.publicKey));
    if (!issuer) throw new ServerError('EK_CERT', `EK certificate: no issuer for "${cur.issuer.replace(/\n/g, ', ')}" in the EK CA bundle${depth ? ` (after ${depth} step(s))` : ''}`);
    if (issuer.subject === issuer.issuer && issuer.verify(issuer.publicKey)) return;
    if (issuer.ca === false) throw new ServerError('EK_CERT', `EK certificate: "${issuer.subject.replace(/\n/g, ', ')}" is not a CA certificate`);
    cur = issuer;
  }
  throw new ServerError('EK_CERT', 'EK certificate: the chain is longer than 8 certificates');
}
