/**
 * Authenticode signatures of PE/COFF images: the certificate table (WIN_CERTIFICATE entries),
 * each a PKCS#7 SignedData whose content is an SpcIndirectDataContent carrying the image
 * digest it signs; the signers and certificates; and verification against given CA certificates.
 *
 * Decoding uses @peculiar/asn1-cms / asn1-x509 (RFC 5652 / RFC 5280 schemas over asn1js);
 * public keys, signatures and chains use node:crypto (X509Certificate, verify). See README.md
 * in this folder for why.
 *
 * `verifyAuthenticode` checks, per signature (a checklist, as firmware and OpenSSL's PKCS7_verify
 * apply it):
 *   1. the SignedData content type is SPC_INDIRECT_DATA (1.3.6.1.4.1.311.2.1.4);
 *   2. the digest in SpcIndirectDataContent equals the image's Authenticode digest recomputed
 *      here in that digest's algorithm;
 *   3. the signer (the certificate a SignerInfo names by issuer + serial, not every certificate
 *      of the bundle) is present; the signed attributes' messageDigest equals the hash of the
 *      SpcIndirectDataContent *contents* (without its outer tag and length), their contentType
 *      equals the eContentType, and the signature over the DER SET of signed attributes verifies
 *      with the signer's public key;
 *   4. with CAs given: a chain from the signer through the bundle's certificates to one of them
 *      (a CA equal to any certificate of the chain, the signer included, ends it — a db or MOK may
 *      hold a leaf, as EDK2's partial-chain verification accepts). Like UEFI firmware and shim,
 *      validity periods, key usage and EKU are **not** checked (there is no trusted time at boot),
 *      and neither is revocation (dbx is the firmware's business).
 * The PKCS#7 must be DER (its re-encoding must equal its bytes), so one signature has one
 * encoding. SignedData.version and .digestAlgorithms are not used (as OpenSSL's PKCS7_verify).
 * Timestamp countersignatures (unsigned attributes) are not verified.
 * @module
 */
import { createHash, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ContentInfo, SignedData, type SignerInfo } from '@peculiar/asn1-cms';
import type { Certificate } from '@peculiar/asn1-x509';
import { EfiError } from './errors.ts';
import { type DigestName, type PeImage, authenticodeDigest } from './pe.ts';

export const WIN_CERT_REVISION_2_0 = 0x0200;
export const WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002;
/** Limits on hostile tables: real signatures are ~2-10 KiB, shim carries two. */
export const MAX_SIGNATURE_SIZE = 1 << 20;
export const MAX_SIGNATURES = 16;

const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_SPC_INDIRECT_DATA = '1.3.6.1.4.1.311.2.1.4';
const OID_CONTENT_TYPE = '1.2.840.113549.1.9.3';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';
const DIGEST_OIDS: Record<string, DigestName> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
/** Signature algorithms node:crypto.verify handles with a digest name and its key's defaults. */
const SIGNATURE_OIDS: Record<string, DigestName | 'from-digest'> = {
  '1.2.840.113549.1.1.1': 'from-digest', // rsaEncryption: the SignerInfo digest algorithm
  '1.2.840.113549.1.1.5': 'sha1',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.2.1': 'from-digest', // id-ecPublicKey
  '1.2.840.10045.4.1': 'sha1',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

/** WIN_CERTIFICATE — PE/COFF spec §4.7 "The Attribute Certificate Table". */
export interface WinCertificate {
  /** File offset of the WIN_CERTIFICATE header. */
  offset: number;
  length: number;
  revision: number;
  certificateType: number;
  /** bCertificate: the PKCS#7 DER for type 2. */
  data: Buffer;
}

export interface CertInfo {
  subject: string;
  issuer: string;
  /** Serial number, uppercase hex as OpenSSL prints it. */
  serial: string;
  /** SHA-256 of the DER certificate, lowercase hex. */
  sha256: string;
  der: Buffer;
  x509: X509Certificate;
}

export interface AuthenticodeSignature {
  /** File offset of its WIN_CERTIFICATE. */
  offset: number;
  /** SpcIndirectDataContent.messageDigest: the image digest signed, and its algorithm. */
  digestAlgorithm: DigestName;
  signedDigest: Buffer;
  /** The SpcIndirectDataContent contents (without outer tag and length): what messageDigest hashes. */
  spcContents: Buffer;
  certificates: CertInfo[];
  /** The same certificates, decoded (parallel to `certificates`). */
  decodedCertificates: Certificate[];
  signerInfos: SignerInfo[];
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

export function certInfo(der: Buffer): CertInfo {
  const x = new X509Certificate(der);
  return { subject: oneLine(x.subject), issuer: oneLine(x.issuer), serial: x.serialNumber.toUpperCase(), sha256: createHash('sha256').update(der).digest('hex'), der, x509: x };
}

/**
 * The WIN_CERTIFICATE entries of the certificate table, each 8-byte aligned.
 * @throws EfiError BAD_CERT_TABLE, TOO_LARGE
 */
export function parseCertificateTable(pe: PeImage): WinCertificate[] {
  const t = pe.certTable;
  if (!t || t.size === 0) return [];
  const b = pe.bytes;
  const end = t.offset + t.size;
  const out: WinCertificate[] = [];
  let off = t.offset;
  while (off < end) {
    if (end - off < 8) {
      // Trailing padding shorter than a header: tolerated only if it is zeros.
      if (b.subarray(off, end).every((x) => x === 0)) break;
      throw new EfiError('BAD_CERT_TABLE', `${end - off} stray bytes after the last WIN_CERTIFICATE`, off);
    }
    const length = b.readUInt32LE(off);
    if (length < 8 || length > end - off) throw new EfiError('BAD_CERT_TABLE', `WIN_CERTIFICATE dwLength ${length} does not fit the certificate table (${end - off} bytes left)`, off);
    if (length > MAX_SIGNATURE_SIZE + 8) throw new EfiError('TOO_LARGE', `WIN_CERTIFICATE of ${length} bytes exceeds the ${MAX_SIGNATURE_SIZE}-byte limit`, off);
    if (out.length >= MAX_SIGNATURES) throw new EfiError('TOO_LARGE', `more than ${MAX_SIGNATURES} WIN_CERTIFICATE entries`, off);
    out.push({ offset: off, length, revision: b.readUInt16LE(off + 4), certificateType: b.readUInt16LE(off + 6), data: b.subarray(off + 8, off + length) });
    off += (length + 7) & ~7;
  }
  return out;
}

/** One DER element: its tag/length header size and its contents, via asn1js. */
function berElement(der: Uint8Array): asn1js.AsnType {
  const r = asn1js.fromBER(der);
  if (r.offset === -1) throw new Error(`ASN.1: ${r.result.error}`);
  if (r.offset !== der.byteLength) throw new Error(`ASN.1: ${der.byteLength - r.offset} bytes after the element`);
  return r.result;
}

/**
 * Decodes one PKCS#7 Authenticode signature.
 * @throws EfiError BAD_SIGNATURE (with the WIN_CERTIFICATE offset)
 */
export function parseSignature(wc: WinCertificate): AuthenticodeSignature {
  const fail = (msg: string, cause?: unknown): never => {
    throw new EfiError('BAD_SIGNATURE', `WIN_CERTIFICATE: ${msg}`, wc.offset, { cause });
  };
  if (wc.revision !== WIN_CERT_REVISION_2_0 || wc.certificateType !== WIN_CERT_TYPE_PKCS_SIGNED_DATA) {
    fail(`revision 0x${wc.revision.toString(16)} type 0x${wc.certificateType.toString(16)} is not a PKCS#7 SignedData (revision 0x0200, type 0x0002)`);
  }
  let sd: SignedData;
  let ciContent: ArrayBuffer | undefined;
  try {
    // Signers pad bCertificate to 8 bytes: parse the first element only.
    const outer = asn1js.fromBER(wc.data);
    if (outer.offset === -1) fail(`not DER: ${outer.result.error}`);
    const ci = AsnConvert.parse(wc.data.subarray(0, outer.offset), ContentInfo);
    if (ci.contentType !== OID_SIGNED_DATA) fail(`content type ${ci.contentType} is not SignedData`);
    ciContent = ci.content;
    sd = AsnConvert.parse(ci.content, SignedData);
    // DER only: the re-encoding of what was decoded must give back the same bytes. BER leniency
    // (lengths, tags a lenient decoder forgives) would let one signature take many encodings,
    // and the bytes verified here differ from the bytes in the file.
    const again = Buffer.concat([Buffer.from(AsnConvert.serialize(ci)), Buffer.from(AsnConvert.serialize(sd))]);
    const orig = Buffer.concat([wc.data.subarray(0, outer.offset), Buffer.from(ci.content)]);
    if (!again.equals(orig)) {
      let i = 0;
      while (i < again.length && i < orig.length && again[i] === orig[i]) i++;
      fail(`PKCS#7 SignedData is not DER (its re-encoding differs at byte ${i < outer.offset ? i : i - outer.offset} of the ${i < outer.offset ? 'ContentInfo' : 'SignedData'})`);
    }
  } catch (e) {
    if (e instanceof EfiError) throw e;
    return fail(`PKCS#7 SignedData does not decode: ${(e as Error)?.message ?? e}`, e);
  }
  if (sd.encapContentInfo.eContentType !== OID_SPC_INDIRECT_DATA) fail(`content type ${sd.encapContentInfo.eContentType} is not SPC_INDIRECT_DATA`);
  const spcDer = sd.encapContentInfo.eContent?.any;
  if (!spcDer) fail('no SpcIndirectDataContent');
  let digestAlgorithm: DigestName | undefined;
  let signedDigest: Buffer | undefined;
  let spcContents: Buffer | undefined;
  try {
    // SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue,
    //   messageDigest DigestInfo ::= SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING } }
    const bytes = new Uint8Array(spcDer!);
    const spc = berElement(bytes);
    if (!(spc instanceof asn1js.Sequence) || spc.valueBlock.value.length < 2) fail('SpcIndirectDataContent is not a SEQUENCE of two');
    const head = spc.idBlock.blockLength + spc.lenBlock.blockLength;
    spcContents = Buffer.from(bytes.subarray(head));
    const di = (spc as asn1js.Sequence).valueBlock.value[1];
    if (!(di instanceof asn1js.Sequence) || di.valueBlock.value.length !== 2) fail('DigestInfo is not a SEQUENCE of two');
    const [alg, dig] = (di as asn1js.Sequence).valueBlock.value;
    const oidBlock = alg instanceof asn1js.Sequence ? alg.valueBlock.value[0] : undefined;
    if (!(oidBlock instanceof asn1js.ObjectIdentifier)) fail('DigestInfo algorithm has no OID');
    const oid = (oidBlock as asn1js.ObjectIdentifier).valueBlock.toString();
    digestAlgorithm = Object.hasOwn(DIGEST_OIDS, oid) ? DIGEST_OIDS[oid] : undefined;
    if (!digestAlgorithm) fail(`digest algorithm ${oid} is not SHA-1/256/384/512`);
    if (!(dig instanceof asn1js.OctetString)) fail('DigestInfo digest is not an OCTET STRING');
    signedDigest = Buffer.from((dig as asn1js.OctetString).valueBlock.valueHexView);
    if (signedDigest.length !== createHash(digestAlgorithm!).digest().length) fail(`${digestAlgorithm} digest of ${signedDigest.length} bytes`);
  } catch (e) {
    if (e instanceof EfiError) throw e;
    return fail(`SpcIndirectDataContent does not decode: ${(e as Error)?.message ?? e}`, e);
  }
  // The certificates as their bytes are in the file (not re-encoded from the parsed form, which
  // could normalise a byte away): SignedData ::= SEQUENCE { version, digestAlgorithms,
  // encapContentInfo, certificates [0] IMPLICIT SET OF Certificate OPTIONAL, crls [1], signerInfos }.
  const certificates: CertInfo[] = [];
  const decodedCertificates: Certificate[] = [];
  try {
    const sdBlock = berElement(new Uint8Array(ciContent!));
    const items = sdBlock instanceof asn1js.Sequence ? sdBlock.valueBlock.value : [];
    const certSet = items.find((x) => x.idBlock.tagClass === 3 && x.idBlock.tagNumber === 0);
    const raw = certSet && 'value' in certSet.valueBlock && Array.isArray(certSet.valueBlock.value) ? (certSet.valueBlock.value as asn1js.AsnType[]) : [];
    const parsed = sd.certificates ?? [];
    if (parsed.length !== raw.length) fail('certificate set does not decode consistently');
    raw.forEach((c, i) => {
      const cert = parsed[i].certificate;
      if (!(c instanceof asn1js.Sequence) || !cert) return; // other CertificateChoices (attribute certificates)
      certificates.push(certInfo(Buffer.from(c.valueBeforeDecodeView)));
      decodedCertificates.push(cert);
    });
  } catch (e) {
    return fail(`a certificate does not decode: ${(e as Error)?.message ?? e}`, e);
  }
  return { offset: wc.offset, digestAlgorithm: digestAlgorithm!, signedDigest: signedDigest!, spcContents: spcContents!, certificates, decodedCertificates, signerInfos: [...sd.signerInfos] };
}

/** The certificate a SignerInfo names by issuer and serial number, if the bundle has it. */
function findSigner(si: SignerInfo, sig: AuthenticodeSignature): CertInfo | undefined {
  const ias = si.sid.issuerAndSerialNumber;
  if (!ias) return undefined; // subjectKeyIdentifier: not used by Authenticode
  const issuer = Buffer.from(AsnConvert.serialize(ias.issuer));
  const serial = stripZeros(Buffer.from(ias.serialNumber));
  const i = sig.decodedCertificates.findIndex(
    (c) => stripZeros(Buffer.from(c.tbsCertificate.serialNumber)).equals(serial) && Buffer.from(AsnConvert.serialize(c.tbsCertificate.issuer)).equals(issuer),
  );
  return i < 0 ? undefined : sig.certificates[i];
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

export type ChainResult = 'trusted' | 'untrusted' | 'not-checked';

export interface SignerResult {
  /** The signer's certificate, when the bundle has it. */
  cert?: CertInfo;
  /** messageDigest attribute = hash(SpcIndirectDataContent contents), contentType attribute right. */
  attributesMatch: boolean;
  /** The signature over the signed attributes verifies with the signer's key. */
  signatureVerifies: boolean;
  chain: ChainResult;
  /** The CA the chain ended at (its sha256), when trusted. */
  anchor?: string;
  /** Why not valid, when not. */
  reason?: string;
}

export interface SignatureResult {
  offset: number;
  digestAlgorithm: DigestName;
  signedDigest: Buffer;
  /** The image's own digest in that algorithm equals the signed one. */
  digestMatches: boolean;
  certificates: CertInfo[];
  signers: SignerResult[];
  /** Digest matches and some signer verifies (and chains, when CAs were given). */
  valid: boolean;
  /** A WIN_CERTIFICATE that did not decode: the EfiError message (with its offset). */
  error?: string;
}

function chainTo(leaf: CertInfo, bundle: CertInfo[], cas: X509Certificate[]): { chain: ChainResult; anchor?: string } {
  let current = leaf.x509;
  const pool = bundle.map((c) => c.x509);
  const seen = new Set<string>();
  for (let depth = 0; depth < 8; depth++) {
    const fp = current.fingerprint256;
    if (seen.has(fp)) break;
    seen.add(fp);
    for (const ca of cas) {
      if (ca.fingerprint256 === fp) return { chain: 'trusted', anchor: hexFp(ca) };
      if (current.checkIssued(ca) && current.verify(ca.publicKey)) return { chain: 'trusted', anchor: hexFp(ca) };
    }
    const next = pool.find((p) => !seen.has(p.fingerprint256) && current.checkIssued(p) && current.verify(p.publicKey));
    if (!next) break;
    current = next;
  }
  return { chain: 'untrusted' };
}

function hexFp(x: X509Certificate): string {
  return x.fingerprint256.replace(/:/g, '').toLowerCase();
}

function checkSigner(sig: AuthenticodeSignature, si: SignerInfo, cas: X509Certificate[] | undefined): SignerResult {
  const cert = findSigner(si, sig);
  const res: SignerResult = { cert, attributesMatch: false, signatureVerifies: false, chain: cas ? 'untrusted' : 'not-checked' };
  const dOid = si.digestAlgorithm.algorithm;
  const dAlg = Object.hasOwn(DIGEST_OIDS, dOid) ? DIGEST_OIDS[dOid] : undefined;
  if (!dAlg) return { ...res, reason: `signer digest algorithm ${dOid} not supported` };
  const contentHash = createHash(dAlg).update(sig.spcContents).digest();
  let signedBytes: Buffer;
  if (si.signedAttrs && si.signedAttrs.length > 0) {
    const md = si.signedAttrs.filter((a) => a.attrType === OID_MESSAGE_DIGEST);
    const ct = si.signedAttrs.filter((a) => a.attrType === OID_CONTENT_TYPE);
    let mdValue: Buffer | undefined;
    let ctValue: string | undefined;
    try {
      if (md.length === 1 && md[0].attrValues.length === 1) {
        const v = berElement(new Uint8Array(md[0].attrValues[0]));
        if (v instanceof asn1js.OctetString) mdValue = Buffer.from(v.valueBlock.valueHexView);
      }
      if (ct.length === 1 && ct[0].attrValues.length === 1) {
        const v = berElement(new Uint8Array(ct[0].attrValues[0]));
        if (v instanceof asn1js.ObjectIdentifier) ctValue = v.valueBlock.toString();
      }
    } catch {
      /* left undefined: reported below */
    }
    if (!mdValue || !mdValue.equals(contentHash)) return { ...res, reason: 'the signed messageDigest attribute does not match the SpcIndirectDataContent' };
    if (ctValue !== OID_SPC_INDIRECT_DATA) return { ...res, reason: 'the signed contentType attribute is not SPC_INDIRECT_DATA' };
    res.attributesMatch = true;
    // RFC 5652 §5.4: the signature covers the DER SET OF the attributes (tag 0x31, not [0]).
    const set = new asn1js.Set({ value: si.signedAttrs.map((a) => berElement(new Uint8Array(AsnConvert.serialize(a)))) });
    signedBytes = Buffer.from(set.toBER(false));
  } else {
    res.attributesMatch = true;
    signedBytes = sig.spcContents;
  }
  if (!cert) return { ...res, reason: 'the signer certificate is not in the signature' };
  const sOid = si.signatureAlgorithm.algorithm;
  const sAlg = Object.hasOwn(SIGNATURE_OIDS, sOid) ? SIGNATURE_OIDS[sOid] : undefined;
  if (!sAlg) return { ...res, reason: `signature algorithm ${sOid} not supported` };
  try {
    const key = cert.x509.publicKey;
    res.signatureVerifies = cryptoVerify(sAlg === 'from-digest' ? dAlg : sAlg, signedBytes, key, Buffer.from(si.signature.buffer));
  } catch (e) {
    return { ...res, reason: `signature check failed: ${(e as Error).message}` };
  }
  if (!res.signatureVerifies) return { ...res, reason: "the signature does not verify with the signer's key" };
  if (cas) {
    Object.assign(res, chainTo(cert, sig.certificates, cas));
    if (res.chain !== 'trusted') res.reason = 'the signer does not chain to any given CA';
  }
  return res;
}

/**
 * Decodes and verifies every signature of the image. `cas`: the CA certificates (DER or PEM
 * X509Certificates) a signer must chain to; without them only the digest and the PKCS#7
 * signature are checked. `known`: the image's Authenticode digests the caller already computed
 * (authenticodeDigests of this same image), so the image is not hashed again.
 * @throws EfiError BAD_CERT_TABLE / TOO_LARGE for a malformed certificate table; a signature
 *   that does not decode is reported in its result's `error`, not thrown.
 */
export function verifyAuthenticode(pe: PeImage, cas?: X509Certificate[], known: Partial<Record<DigestName, Buffer>> = {}): SignatureResult[] {
  const out: SignatureResult[] = [];
  // The image's own digests, computed at most once per algorithm (`known`: already computed by the caller).
  const ownDigest = new Map<DigestName, Buffer>(Object.entries(known).filter(([, v]) => Buffer.isBuffer(v)) as [DigestName, Buffer][]);
  for (const wc of parseCertificateTable(pe)) {
    let sig: AuthenticodeSignature;
    try {
      sig = parseSignature(wc);
    } catch (e) {
      if (!(e instanceof EfiError)) throw e;
      out.push({ offset: wc.offset, digestAlgorithm: 'sha256', signedDigest: Buffer.alloc(0), digestMatches: false, certificates: [], signers: [], valid: false, error: e.message });
      continue;
    }
    if (!ownDigest.has(sig.digestAlgorithm)) ownDigest.set(sig.digestAlgorithm, authenticodeDigest(pe, sig.digestAlgorithm));
    out.push(judge(sig, ownDigest.get(sig.digestAlgorithm)!.equals(sig.signedDigest), cas, sig.offset));
  }
  return out;
}

/** Loads CA certificates from PEM (one or more) or DER bytes. @throws EfiError BAD_SIGNATURE */
export function loadCertificates(bytes: Buffer, name = 'certificate file'): X509Certificate[] {
  const text = bytes.toString('latin1');
  try {
    if (text.includes('-----BEGIN CERTIFICATE-----')) {
      const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
      return pems.map((p) => new X509Certificate(p));
    }
    return [new X509Certificate(bytes)];
  } catch (e) {
    throw new EfiError('BAD_SIGNATURE', `${name}: not a PEM or DER X.509 certificate (${(e as Error).message})`, 0, { cause: e });
  }
}

/**
 * Verifies a detached Authenticode signature (the PKCS#7 SignedData of a WIN_CERTIFICATE, without
 * the file) over a given image digest: what a server does when a staging request carries a digest
 * and the signature blob but not the file. The checklist of {@link verifyAuthenticode}, with step 2
 * read as "the signed digest equals `digest`, in `algorithm`" (`digestMatches`).
 * @throws EfiError BAD_SIGNATURE when the blob does not decode (offset = byte in the blob), TOO_LARGE
 */
export function verifyDigestSignature(pkcs7: Buffer, digest: Buffer, algorithm: DigestName, cas?: X509Certificate[]): SignatureResult {
  if (pkcs7.length > MAX_SIGNATURE_SIZE) throw new EfiError('TOO_LARGE', `a signature of ${pkcs7.length} bytes exceeds the ${MAX_SIGNATURE_SIZE}-byte limit`, 0);
  const sig = parseSignature({ offset: 0, length: pkcs7.length + 8, revision: WIN_CERT_REVISION_2_0, certificateType: WIN_CERT_TYPE_PKCS_SIGNED_DATA, data: pkcs7 });
  const digestMatches = sig.digestAlgorithm === algorithm && sig.signedDigest.equals(digest);
  return judge(sig, digestMatches, cas, 0);
}

/** Steps 3–5 of the checklist for one signature whose digest step is done: signers, chain, verdict. */
function judge(sig: AuthenticodeSignature, digestMatches: boolean, cas: X509Certificate[] | undefined, offset: number): SignatureResult {
  const signers = sig.signerInfos.map((si) => {
    try {
      return checkSigner(sig, si, cas);
    } catch (e) {
      return { attributesMatch: false, signatureVerifies: false, chain: (cas ? 'untrusted' : 'not-checked') as ChainResult, reason: `signer does not decode: ${(e as Error)?.message ?? e}` };
    }
  });
  const valid = digestMatches && signers.some((s) => s.attributesMatch && s.signatureVerifies && (!cas || s.chain === 'trusted'));
  return { offset, digestAlgorithm: sig.digestAlgorithm, signedDigest: sig.signedDigest, digestMatches, certificates: sig.certificates, signers, valid };
}
