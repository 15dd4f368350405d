/**
 * The JSON report `bootkey efi show --json` prints: Authenticode digests in every bank, the
 * signature(s) and their signers, and for a UKI its sections, texts, stub measurements and the
 * embedded kernel's Authenticode digests. Byte strings are lowercase hex.
 * @module
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { type Digests, type DigestName, type PeImage, DIGEST_NAMES, authenticodeDigests, parsePe } from './pe.ts';
import { type CertInfo, type SignatureResult, verifyAuthenticode } from './authenticode.ts';
import { type Measurement, isUki, kernelAuthenticode, parseUki, pcr11Events, sectionText } from './uki.ts';

export type HexDigests = Partial<Record<keyof Digests, string>>;

export interface SignerJson {
  subject: string;
  issuer: string;
  serial: string;
  sha256: string;
}

export interface EfiReport {
  file: { size: number; machine: string; format: 'PE32' | 'PE32+'; sections: Array<{ name: string; virtualSize: number; sizeOfRawData: number; pointerToRawData: number }> };
  authenticode: HexDigests;
  /** valid: some signature's signed digest equals the computed one and its PKCS#7 signature
   * verifies (and, with CAs, chains to one); invalid: signatures, none valid; none: unsigned. */
  signature: 'valid' | 'invalid' | 'none';
  signers: SignerJson[];
  signatures: Array<{
    offset: number;
    digestAlgorithm: string;
    signedDigest: string;
    digestMatches: boolean;
    valid: boolean;
    certificates: SignerJson[];
    signers: Array<SignerJson & { signatureVerifies: boolean; chain: string; anchor?: string; reason?: string }>;
    error?: string;
  }>;
  caChecked: boolean;
  uki?: {
    stubVersion?: string;
    sections: Record<string, { sha256: string; size: number }>;
    /** null when the UKI has no such section. */
    cmdline: string | null;
    osrel: string | null;
    uname: string | null;
    kernel: { authenticode: HexDigests };
    pcr11: Array<{ kind: string; section?: string; sha256: string }>;
  };
}

const MACHINES: Record<number, string> = { 0x8664: 'x64', 0x14c: 'ia32', 0xaa64: 'aa64', 0x1c2: 'arm', 0x5064: 'riscv64', 0x6264: 'loongarch64' };

function hexDigests(d: Partial<Digests>): HexDigests {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v!.toString('hex')]));
}

function signerJson(c: CertInfo): SignerJson {
  return { subject: c.subject, issuer: c.issuer, serial: c.serial, sha256: c.sha256 };
}

/**
 * Parses a PE/COFF file and builds the report. `banks`: the Authenticode digests to compute
 * (default all four; the image and the embedded kernel are hashed once, in all of them together;
 * a signature's own algorithm reuses them). The UKI sections and PCR 11 events are sha256.
 * @throws EfiError
 */
export function efiReport(bytes: Buffer, cas?: X509Certificate[], banks: readonly DigestName[] = DIGEST_NAMES, opts: { imageDigests?: () => Partial<Digests> } = {}): EfiReport {
  const pe = parsePe(bytes);
  // A UKI's sections are hashed first: `opts.imageDigests` may be hashing the image meanwhile (parallel.ts).
  const ukiPart = isUki(pe) ? ukiReport(pe, banks) : undefined;
  const digests = opts.imageDigests?.() ?? authenticodeDigests(pe, banks);
  const sigs: SignatureResult[] = verifyAuthenticode(pe, cas, digests);
  const signers: SignerJson[] = [];
  for (const s of sigs) for (const x of s.signers) if (x.cert && !signers.some((y) => y.sha256 === x.cert!.sha256)) signers.push(signerJson(x.cert));
  const report: EfiReport = {
    file: {
      size: bytes.length,
      machine: Object.hasOwn(MACHINES, pe.machine) ? MACHINES[pe.machine] : `0x${pe.machine.toString(16)}`,
      format: pe.pe32plus ? 'PE32+' : 'PE32',
      sections: pe.sections.map((s) => ({ name: s.longName ?? s.name, virtualSize: s.virtualSize, sizeOfRawData: s.sizeOfRawData, pointerToRawData: s.pointerToRawData })),
    },
    authenticode: hexDigests(digests),
    signature: sigs.length === 0 ? 'none' : sigs.some((s) => s.valid) ? 'valid' : 'invalid',
    signers,
    signatures: sigs.map((s) => ({
      offset: s.offset,
      digestAlgorithm: s.digestAlgorithm,
      signedDigest: s.signedDigest.toString('hex'),
      digestMatches: s.digestMatches,
      valid: s.valid,
      certificates: s.certificates.map(signerJson),
      signers: s.signers.map((x) => ({
        ...(x.cert ? signerJson(x.cert) : { subject: '', issuer: '', serial: '', sha256: '' }),
        signatureVerifies: x.signatureVerifies,
        chain: x.chain,
        ...(x.anchor ? { anchor: x.anchor } : {}),
        ...(x.reason ? { reason: x.reason } : {}),
      })),
      ...(s.error ? { error: s.error } : {}),
    })),
    caChecked: cas !== undefined,
  };
  if (ukiPart) report.uki = ukiPart;
  return report;
}

function ukiReport(pe: PeImage, banks: readonly DigestName[]): NonNullable<EfiReport['uki']> {
  const uki = parseUki(pe);
  const ev: Measurement[] = pcr11Events(uki, ['sha256']);
  // Each section hashed once: the PCR 11 data events already hold the measured ones.
  const sections: Record<string, { sha256: string; size: number }> = {};
  for (const s of uki.sections) {
    const measured = ev.find((m) => m.kind === 'data' && m.section === s.name);
    sections[s.name] = { sha256: (measured?.digests.sha256 ?? createHash('sha256').update(s.data).digest()).toString('hex'), size: s.data.length };
  }
  return {
    ...(uki.stubVersion ? { stubVersion: uki.stubVersion } : {}),
    sections,
    cmdline: sectionText(uki, '.cmdline') ?? null,
    osrel: sectionText(uki, '.osrel') ?? null,
    uname: sectionText(uki, '.uname') ?? null,
    kernel: { authenticode: hexDigests(kernelAuthenticode(uki, banks)) },
    pcr11: ev.map((m) => ({ kind: m.kind, section: m.section, sha256: m.digests.sha256!.toString('hex') })),
  };
}
