/**
 * EK certificate checks at enrolment, when the operator configured a manufacturer CA bundle
 * (`--ek-ca FILE`, PEM): the certificate chains to a self-signed root of the bundle through
 * certificates of the bundle (signature and issuer name at each step, at most 8 steps), and
 * its public key equals the EK public area sent. Pure (no network: no AIA fetching, no CRL).
 *
 * Not checked: validity dates (TPM EK certificates commonly outlive their issuers' stated
 * validity, and TPMs have no trusted clock at manufacture) and EK certificate extensions.
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

function sameKey(a: KeyObject, b: KeyObject): boolean {
  const ja = a.export({ format: 'jwk' });
  const jb = b.export({ format: 'jwk' });
  return ja.kty === jb.kty && ja.n === jb.n && ja.e === jb.e && ja.crv === jb.crv && ja.x === jb.x && ja.y === jb.y;
}

/** @throws ServerError('EK_CERT') naming what failed. */
export function checkEkCertificate(der: Buffer | undefined, ek: TPMTPublic, bundle: X509Certificate[]): void {
  if (!der) throw new ServerError('EK_CERT', 'EK certificate: none sent, and this server requires one (an EK CA bundle is configured)');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (e) {
    throw new ServerError('EK_CERT', `EK certificate: cannot parse: ${(e as Error).message}`);
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
