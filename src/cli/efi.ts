/**
 * `bootkey efi show`: a PE/COFF EFI file (application, kernel, UKI) as firmware and
 * systemd-stub measure it. Parsing errors are EfiErrors: one `bootkey:` line, exit 1.
 * @module
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import type { X509Certificate } from 'node:crypto';
import { type Command, type Parsed, flag, printJson, readInput } from './command.ts';
import { InputError, UsageError } from '../errors.ts';
import { EfiError } from '../efi/errors.ts';
import type { EfiReport } from '../efi/report.ts';

/** Largest file `efi show` reads (a UKI with a big initrd is ~100-200 MB). */
export const MAX_EFI_FILE = 1 << 30;

/** Files from this size on are hashed on two threads by `efi show` (see src/efi/parallel.ts). */
const PARALLEL_FROM = 8 << 20;

/**
 * Reads an EFI file with the size limit. `shared`: a file of PARALLEL_FROM bytes or more is read
 * straight into a SharedArrayBuffer, so that a worker thread can hash it without a copy.
 */
export function readEfiFile(path: string, opts: { shared?: boolean } = {}): Buffer {
  if (path !== '-') {
    let size: number;
    try {
      size = statSync(path).size;
    } catch (e) {
      throw new InputError('READ', `cannot read EFI file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (size > MAX_EFI_FILE) throw new EfiError('TOO_LARGE', `${path} is ${size} bytes, beyond the ${MAX_EFI_FILE}-byte limit`, 0);
    if (opts.shared && size >= PARALLEL_FROM) {
      const b = Buffer.from(new SharedArrayBuffer(size));
      let fd: number | undefined;
      try {
        fd = openSync(path, 'r');
        let got = 0;
        while (got < size) {
          const n = readSync(fd, b, got, size - got, got);
          if (n === 0) break;
          got += n;
        }
        if (got === size) return b;
      } catch (e) {
        throw new InputError('READ', `cannot read EFI file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
      // The file changed size while read: fall through to a plain read.
    }
  }
  const b = readInput(path, 'EFI file');
  if (b.length > MAX_EFI_FILE) throw new EfiError('TOO_LARGE', `${path} is ${b.length} bytes, beyond the ${MAX_EFI_FILE}-byte limit`, 0);
  return b;
}

function text(r: EfiReport): string {
  const out: string[] = [];
  out.push(`${r.file.format} ${r.file.machine}, ${r.file.size} bytes, ${r.file.sections.length} sections: ${r.file.sections.map((s) => s.name).join(' ')}`);
  out.push('', 'Authenticode digest (PCR 4, db/dbx):');
  for (const [k, v] of Object.entries(r.authenticode)) out.push(`  ${k.padEnd(6)} ${v}`);
  out.push('', `signature: ${r.signature}${r.caChecked ? ' (chained to the given CAs)' : r.signature === 'valid' ? ' (no CA given: not chained)' : ''}`);
  r.signatures.forEach((s, i) => {
    out.push(`  #${i} at byte ${s.offset}: ${s.error ?? `${s.digestAlgorithm} ${s.signedDigest} (${s.digestMatches ? 'matches the image' : 'DOES NOT match the image'})`}`);
    for (const x of s.signers) {
      out.push(`    signer: ${x.subject || '(certificate not in the signature)'}`);
      if (x.subject) out.push(`      issuer: ${x.issuer}`, `      serial: ${x.serial}`, `      sha256: ${x.sha256}`);
      out.push(`      signature ${x.signatureVerifies ? 'verifies' : 'does not verify'}${x.chain === 'not-checked' ? '' : `, chain ${x.chain}${x.anchor ? ` (CA ${x.anchor})` : ''}`}${x.reason ? `: ${x.reason}` : ''}`);
    }
    const others = s.certificates.filter((c) => !s.signers.some((x) => x.sha256 === c.sha256));
    for (const c of others) out.push(`    certificate: ${c.subject} (issuer ${c.issuer}; sha256 ${c.sha256})`);
  });
  if (r.uki) {
    const u = r.uki;
    out.push('', `UKI${u.stubVersion ? ` (systemd-stub ${u.stubVersion})` : ''}:`);
    for (const [name, s] of Object.entries(u.sections)) out.push(`  ${name.padEnd(9)} ${String(s.size).padStart(10)} bytes  sha256 ${s.sha256}`);
    if (u.cmdline !== null) out.push(`  cmdline: ${JSON.stringify(u.cmdline)}`);
    if (u.uname !== null) out.push(`  uname:   ${JSON.stringify(u.uname)}`);
    const pretty = u.osrel ? /^PRETTY_NAME=(.*)$/m.exec(u.osrel)?.[1] : undefined;
    if (pretty) out.push(`  osrel:   PRETTY_NAME=${pretty}`);
    out.push('  kernel (.linux) Authenticode digest (PCR 4, VenMedia event):');
    for (const [k, v] of Object.entries(u.kernel.authenticode)) out.push(`    ${k.padEnd(6)} ${v}`);
    out.push('  PCR 11 events systemd-stub logs (sha256):');
    for (const e of u.pcr11) out.push(`    ${e.section} ${e.kind.padEnd(4)} ${e.sha256}`);
  }
  return out.join('\n') + '\n';
}

const showCmd: Command = {
  path: ['efi', 'show'],
  summary: 'an EFI file (PE/COFF, UKI): Authenticode digests, signature, UKI sections',
  help: `usage: bootkey efi show FILE [--ca CERT]... [--json] [--bank LIST]

Reads the PE/COFF EFI file FILE ('-' reads stdin; an application, a kernel, shim, a boot
loader or a unified kernel image) and prints:
  - its Authenticode digest in sha1, sha256, sha384 and sha512: what firmware extends into
    PCR 4 (EV_EFI_BOOT_SERVICES_APPLICATION) and compares with db/dbx;
  - each Authenticode signature (WIN_CERTIFICATE with PKCS#7 SignedData): the digest it signs,
    its signer (subject, issuer, serial, certificate sha256) and the other certificates;
  - for a UKI (a .linux section): each UKI section (.linux .osrel .cmdline .initrd .ucode
    .splash .dtb .uname .sbat .pcrsig .pcrpkey) with its sha256, the command line, os-release
    and uname, the PCR 11 events systemd-stub logs (the stub version is read from .sdmagic),
    and the Authenticode digest of the embedded kernel (PCR 4's VenMedia event).

  --ca CERT  a CA certificate file (PEM, one or more certificates, or DER) the signer must
             chain to: a distribution's signing CA, a Secure Boot db or MOK certificate.
             Repeatable. Validity dates, key usage and revocation are not checked (UEFI
             firmware and shim do not check them either).
  --bank LIST  the Authenticode digests to compute, comma-separated (default
             sha1,sha256,sha384,sha512): fewer banks, less hashing on a large UKI
  --json     print {"authenticode": {"sha1": hex, ...}, "signature": "valid"|"invalid"|"none",
             "signers": [{subject, issuer, serial, sha256}], "signatures": [...],
             "uki": {"sections": {name: {sha256, size}}, cmdline, osrel, uname,
             "kernel": {"authenticode": {...}}, "pcr11": [...]}}

signature is "valid" when a signature's signed digest equals the computed one and its PKCS#7
signature verifies over the signed attributes (and, with --ca, its signer chains to a given
CA); "invalid" when the file has signatures but none is valid; "none" when it has none.
Exit status: 0 shown, 1 the file is not a valid PE/COFF image (the message gives the byte
offset), or --ca was given and the signature is not valid; 2 usage.`,
  options: { json: { type: 'boolean' }, ca: { type: 'string', multiple: true }, bank: { type: 'string' } },
  positionals: [1, 1],
  async run(args: Parsed): Promise<number> {
    // Imported on use: the ASN.1 schemas (asn1js, @peculiar/asn1-*) register themselves at load
    // time, and no other command (nor the initrd's start-up) should pay for that.
    const { efiReport, loadCertificates } = await import('../efi/index.ts');
    const { startImageDigests } = await import('../efi/parallel.ts');
    const caFiles = (args.values.ca as string[] | undefined) ?? [];
    let cas: X509Certificate[] | undefined;
    if (caFiles.length > 0) cas = caFiles.flatMap((f) => loadCertificates(readInput(f, 'CA certificate'), `CA certificate ${f}`));
    const bankArg = args.values.bank as string | undefined;
    const names = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
    const banks = bankArg === undefined ? [...names] : [...new Set(bankArg.split(',').map((b) => b.trim()))];
    for (const b of banks) if (!(names as readonly string[]).includes(b)) throw new UsageError(`--bank: "${b}" is not one of ${names.join(', ')}`);
    const bytes = readEfiFile(args.positionals[0], { shared: true });
    const chosen = banks as (typeof names)[number][];
    // A large file: the image's Authenticode digest on a second thread while the UKI sections are hashed here.
    const imageDigests = bytes.buffer instanceof SharedArrayBuffer ? startImageDigests(bytes, chosen) : undefined;
    const report = efiReport(bytes, cas, chosen, imageDigests ? { imageDigests } : {});
    if (flag(args, 'json')) printJson(report);
    else process.stdout.write(text(report));
    return cas && report.signature !== 'valid' ? 1 : 0;
  },
};

export const efiCommands: Command[] = [showCmd];
