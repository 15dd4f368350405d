/** The public API of the EFI-file layer (PE/COFF, Authenticode, UKIs). @module */
export { parsePe, authenticodeDigests, authenticodeDigest, authenticodeRanges, sectionData, DIGEST_NAMES } from './pe.ts';
export type { PeImage, PeSection, CertTableEntry, DigestName, Digests } from './pe.ts';
export { parseCertificateTable, parseSignature, verifyAuthenticode, loadCertificates, certInfo } from './authenticode.ts';
export type { WinCertificate, AuthenticodeSignature, SignatureResult, SignerResult, CertInfo, ChainResult } from './authenticode.ts';
export { parseUki, isUki, pcr11Events, pcr12CmdlineEvent, kernelAuthenticode, sectionText, measuredSections, UKI_SECTION_ORDER } from './uki.ts';
export type { Uki, UkiSection, UkiSectionName, Measurement } from './uki.ts';
export { efiReport } from './report.ts';
export type { EfiReport } from './report.ts';
export { EfiError } from './errors.ts';
export type { EfiErrorCode } from './errors.ts';
export { verifyDigestSignature } from './authenticode.ts';
export { measureParts, predictBoot } from './predict.ts';
export type { BootParts } from './predict.ts';
export { checkStagedSignature } from './signed-by.ts';
export type { StagedSignatureCode, StagedSignatureResult } from './signed-by.ts';
