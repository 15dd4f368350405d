/**
 * `bootkey tpm ...` subcommands that talk to a TPM: info, pcrread, quote, ek, ak.
 * Every one takes `--tpm SPEC` (tpm2-tools TCTI spelling: device:/dev/tpmrm0,
 * swtpm:host=H,port=N, swtpm:path=SOCKET; default $BOOTKEY_TPM, else device:/dev/tpmrm0),
 * and flushes every transient object it created, also on error.
 * @module
 */
import { type Command, type Parsed, flag, opt, hexArg, printJson, writeOutput } from './command.ts';
import { UsageError, InputError } from '../errors.ts';
import { TPM_ALG, TPM_CAP, TPM_PT, HASH_INFO, algName } from '../tpm/constants.ts';
import { marshalPublic2B, marshalSignature, type TPMSPCRSelection } from '../tpm/structures.ts';
import { Tpm } from '../tpm/tpm.ts';
import { GetCapability, getProperties } from '../tpm/commands/startup.ts';
import { getPCRBanks, readPCRs } from '../tpm/commands/pcr.ts';
import { quotePCRs } from '../tpm/commands/attest.ts';
import { createAK, flushKey, getEK, readEKCertificate, type KeyHandle } from '../tpm/keys.ts';
import type { KeyAlg } from '../tpm/templates.ts';
import { pcrValuesToJson, isBankName } from '../pcrs.ts';
import { tpmVerifyCommands } from './tpm-verify.ts';

const TPM_OPT_HELP = `  --tpm SPEC   TPM to use: device:/dev/tpmrm0 (default; $BOOTKEY_TPM overrides),
               device:/dev/tpm0, swtpm:host=H,port=N or swtpm:path=SOCKET`;

const BANK_ALG: Record<string, number> = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384, sha512: TPM_ALG.SHA512, sm3_256: TPM_ALG.SM3_256 };

/** Parses tpm2-tools' PCR selection spelling: `sha256:0,4,7`, `sha1:0,1+sha256:all`. */
export function parsePcrSelection(spec: string, opt = 'pcrs'): TPMSPCRSelection[] {
  const out: TPMSPCRSelection[] = [];
  for (const part of spec.split('+')) {
    const m = /^([a-z0-9_]+):(all|\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)$/.exec(part.trim());
    if (!m) throw new UsageError(`--${opt}: "${part}" is not BANK:N,N,... (e.g. sha256:0,4,7 or sha1:0+sha256:all)`);
    const bank = m[1];
    if (!isBankName(bank) || !Object.hasOwn(BANK_ALG, bank)) throw new UsageError(`--${opt}: unknown bank "${bank}"`);
    const pcrs = new Set<number>();
    if (m[2] === 'all') for (let i = 0; i < 24; i++) pcrs.add(i);
    else
      for (const r of m[2].split(',')) {
        const [a, b] = r.split('-').map(Number);
        for (let i = a; i <= (b ?? a); i++) {
          if (i > 23) throw new UsageError(`--${opt}: PCR ${i} out of range 0-23`);
          pcrs.add(i);
        }
      }
    const hash = BANK_ALG[bank];
    const prev = out.find((s) => s.hash === hash);
    if (prev) throw new UsageError(`--${opt}: bank ${bank} given twice`);
    out.push({ hash, pcrs: [...pcrs].sort((x, y) => x - y) });
  }
  return out;
}

function keyAlg(args: Parsed, name: string, def: KeyAlg): KeyAlg {
  const v = opt(args, name) ?? def;
  if (v !== 'rsa' && v !== 'ecc') throw new UsageError(`--${name}: expected rsa or ecc, got "${v}"`);
  return v;
}

async function withTpm<T>(args: Parsed, fn: (tpm: Tpm) => Promise<T>): Promise<T> {
  const tpm = await Tpm.open(opt(args, 'tpm'));
  try {
    return await fn(tpm);
  } finally {
    await tpm.close();
  }
}

/** Runs fn with a transient key, flushing it afterwards whatever happens. */
async function withKey<T>(tpm: Tpm, make: () => Promise<KeyHandle>, fn: (k: KeyHandle) => Promise<T>): Promise<T> {
  const k = await make();
  try {
    return await fn(k);
  } finally {
    await flushKey(tpm, k).catch(() => undefined);
  }
}

const fourcc = (v: number): string => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b.toString('latin1').replace(/\0+$/g, '').replace(/[^\x20-\x7e]/g, '').trim();
};

const shortAlg = (a: number): string => algName(a).replace(/^TPM_ALG_/, '').toLowerCase();

export interface TpmInfo {
  manufacturer: string;
  vendorString: string;
  firmwareVersion: string;
  specification: { family: string; level: number; revision: string };
  algorithms: string[];
  pcrBanks: Record<string, number[]>;
  ekCertificates: { rsa: boolean; ecc: boolean };
}

async function tpmInfo(tpm: Tpm): Promise<TpmInfo> {
  const p = await getProperties(tpm, TPM_PT.FAMILY_INDICATOR, 64);
  const fw1 = p.get(TPM_PT.FIRMWARE_VERSION_1) ?? 0;
  const fw2 = p.get(TPM_PT.FIRMWARE_VERSION_2) ?? 0;
  const vendor = [TPM_PT.VENDOR_STRING_1, TPM_PT.VENDOR_STRING_2, TPM_PT.VENDOR_STRING_3, TPM_PT.VENDOR_STRING_4].map((k) => fourcc(p.get(k) ?? 0)).join('');
  const algs = await GetCapability(tpm, { capability: TPM_CAP.ALGS, property: 0, propertyCount: 256 });
  const banks = await getPCRBanks(tpm);
  const pcrBanks: Record<string, number[]> = {};
  for (const b of banks) if (b.pcrs.length) pcrBanks[HASH_INFO.get(b.hash)?.bank ?? shortAlg(b.hash)] = b.pcrs;
  const rev = p.get(TPM_PT.REVISION) ?? 0;
  return {
    manufacturer: fourcc(p.get(TPM_PT.MANUFACTURER) ?? 0),
    vendorString: vendor,
    firmwareVersion: `${fw1 >>> 16}.${fw1 & 0xffff}.${fw2 >>> 16}.${fw2 & 0xffff}`,
    specification: { family: fourcc(p.get(TPM_PT.FAMILY_INDICATOR) ?? 0), level: p.get(TPM_PT.LEVEL) ?? 0, revision: `${Math.floor(rev / 100)}.${String(rev % 100).padStart(2, '0')}` },
    algorithms: algs.capabilityData.capability === TPM_CAP.ALGS ? algs.capabilityData.algorithms.map((a) => shortAlg(a.alg)) : [],
    pcrBanks,
    ekCertificates: { rsa: (await readEKCertificate(tpm, 'rsa')) !== undefined, ecc: (await readEKCertificate(tpm, 'ecc')) !== undefined },
  };
}

const infoCmd: Command = {
  path: ['tpm', 'info'],
  summary: 'show the TPM: manufacturer, firmware, algorithms, PCR banks, EK certificates',
  help: `usage: bootkey tpm info [--tpm SPEC] [--json]

Prints the TPM's manufacturer, vendor string, firmware version, specification level and
revision, supported algorithms, allocated PCR banks and whether EK certificates (RSA at NV
0x01C00002/0x01C00012, ECC at 0x01C0000A/0x01C00014) are present.

${TPM_OPT_HELP}
  --json       print the same as a JSON object
Exit status: 0 ok, 1 TPM or transport error, 2 usage.`,
  options: { tpm: { type: 'string' }, json: { type: 'boolean' } },
  run: (args) =>
    withTpm(args, async (tpm) => {
      const info = await tpmInfo(tpm);
      if (flag(args, 'json')) printJson(info);
      else {
        const lines = [
          `manufacturer:     ${info.manufacturer}`,
          `vendor string:    ${info.vendorString}`,
          `firmware version: ${info.firmwareVersion}`,
          `specification:    ${info.specification.family} level ${info.specification.level} revision ${info.specification.revision}`,
          `algorithms:       ${info.algorithms.join(' ')}`,
          `PCR banks:        ${Object.entries(info.pcrBanks).map(([b, p]) => `${b} (${p.length} PCRs)`).join(', ') || 'none'}`,
          `EK certificates:  RSA ${info.ekCertificates.rsa ? 'present' : 'absent'}, ECC ${info.ekCertificates.ecc ? 'present' : 'absent'}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }
      return 0;
    }),
};

const pcrreadCmd: Command = {
  path: ['tpm', 'pcrread'],
  summary: 'read PCR values',
  help: `usage: bootkey tpm pcrread [--tpm SPEC] [--pcrs SEL] [--json]

Reads PCRs (any number per bank; the TPM answers at most 8 per call, bootkey repeats).

${TPM_OPT_HELP}
  --pcrs SEL   tpm2-tools selection: sha256:0,4,7 or sha1:0,1+sha256:all (default: every
               PCR of every allocated bank)
  --json       print {"sha256": {"0": "<hex>", ...}, ...}
Exit status: 0 ok, 1 TPM or transport error, 2 usage.`,
  options: { tpm: { type: 'string' }, pcrs: { type: 'string' }, json: { type: 'boolean' } },
  run: (args) => {
    const selArg = opt(args, 'pcrs');
    const sel = selArg ? parsePcrSelection(selArg) : undefined;
    return withTpm(args, async (tpm) => {
      const selection = sel ?? (await getPCRBanks(tpm)).filter((b) => b.pcrs.length > 0);
      const values = pcrValuesToJson(await readPCRs(tpm, selection));
      if (flag(args, 'json')) printJson(values);
      else {
        const lines: string[] = [];
        for (const [bank, v] of Object.entries(values)) {
          lines.push(`${bank}:`);
          for (const [i, hex] of Object.entries(v)) lines.push(`  ${i.padStart(2)} : 0x${hex.toUpperCase()}`);
        }
        process.stdout.write(lines.join('\n') + '\n');
      }
      return 0;
    });
  },
};

const quoteCmd: Command = {
  path: ['tpm', 'quote'],
  summary: "quote PCRs with bootkey's AK (tpm2_quote-compatible output files)",
  help: `usage: bootkey tpm quote --pcrs SEL --nonce HEX --message F --signature F --public F
                         [--tpm SPEC] [--ak-alg ecc|rsa] [--pcr-values F]

Creates bootkey's AK (a primary under the endorsement hierarchy, the same on every boot),
quotes the PCRs with the nonce as qualifying data, and writes:
  --message F     the TPMS_ATTEST bytes (as tpm2_quote -m)
  --signature F   the TPMT_SIGNATURE bytes (as tpm2_quote -s)
  --public F      the AK's TPM2B_PUBLIC (as tpm2_createak -u)
  --pcr-values F  the quoted PCR values as JSON {"sha256": {"0": "<hex>", ...}}
The PCR values are read after the quote and checked against its PCR digest. The AK is
flushed afterwards, also on error.

${TPM_OPT_HELP}
  --ak-alg ALG   ecc (P-256, ECDSA-SHA256; default) or rsa (2048, RSASSA-SHA256)
  --pcrs SEL     tpm2-tools selection: sha256:0,4,7 or sha1:0,1+sha256:0,4,7
  --nonce HEX    qualifying data (at most 64 bytes)
Verify with: tpm2_checkquote -u PUBLIC -m MESSAGE -s SIGNATURE -q NONCE -g sha256
Exit status: 0 ok, 1 TPM or transport error, 2 usage.`,
  options: {
    tpm: { type: 'string' }, 'ak-alg': { type: 'string' }, pcrs: { type: 'string' }, nonce: { type: 'string' },
    message: { type: 'string' }, signature: { type: 'string' }, public: { type: 'string' }, 'pcr-values': { type: 'string' },
  },
  run: (args) => {
    const need = (n: string): string => {
      const v = opt(args, n);
      if (!v) throw new UsageError(`tpm quote: missing --${n} (see --help)`);
      return v;
    };
    const selection = parsePcrSelection(need('pcrs'));
    const nonce = hexArg('nonce', need('nonce'));
    if (nonce.length > 64) throw new UsageError('--nonce: at most 64 bytes');
    const out = { message: need('message'), signature: need('signature'), public: need('public') };
    const alg = keyAlg(args, 'ak-alg', 'ecc');
    return withTpm(args, (tpm) =>
      withKey(tpm, () => createAK(tpm, alg), async (ak) => {
        const q = await quotePCRs(tpm, ak, { selection, nonce });
        writeOutput(out.message, q.quoted);
        writeOutput(out.signature, marshalSignature(q.signature));
        writeOutput(out.public, marshalPublic2B(ak.public));
        const pv = opt(args, 'pcr-values');
        if (pv) writeOutput(pv, JSON.stringify(pcrValuesToJson(q.pcrs), null, 2) + '\n');
        return 0;
      }),
    );
  },
};

const ekCmd: Command = {
  path: ['tpm', 'ek'],
  summary: 'show the endorsement key (name, public area, certificate)',
  help: `usage: bootkey tpm ek [--tpm SPEC] [--alg rsa|ecc] [--range low|high] [--public F] [--cert F]

Gets the EK (the persistent one at 0x81010001/0x81010002 when present and of the right
type, else a primary from the TCG EK Credential Profile template L-1/L-2, or H-1/H-2 with
--range high) and prints its Name in hex.

${TPM_OPT_HELP}
  --alg ALG     rsa (default) or ecc
  --range R     low (default) or high: which EK template
  --public F    write the EK's TPM2B_PUBLIC (as tpm2_createek -u)
  --cert F      write the EK certificate (DER) from NV; exit 1 when there is none
Exit status: 0 ok, 1 TPM or transport error or no certificate, 2 usage.`,
  options: { tpm: { type: 'string' }, alg: { type: 'string' }, range: { type: 'string' }, public: { type: 'string' }, cert: { type: 'string' } },
  run: (args) => {
    const alg = keyAlg(args, 'alg', 'rsa');
    const range = opt(args, 'range') ?? 'low';
    if (range !== 'low' && range !== 'high') throw new UsageError(`--range: expected low or high, got "${range}"`);
    return withTpm(args, (tpm) =>
      withKey(tpm, () => getEK(tpm, alg, { range }), async (ek) => {
        const pub = opt(args, 'public');
        if (pub) writeOutput(pub, marshalPublic2B(ek.public));
        const certPath = opt(args, 'cert');
        if (certPath) {
          const cert = await readEKCertificate(tpm, alg);
          if (!cert) throw new InputError('NO_EK_CERT', `the TPM has no ${alg.toUpperCase()} EK certificate in NV`);
          writeOutput(certPath, cert);
        }
        process.stdout.write(`${ek.name.toString('hex')}\n`);
        return 0;
      }),
    );
  },
};

const akCmd: Command = {
  path: ['tpm', 'ak'],
  summary: "show bootkey's attestation key (name, public area)",
  help: `usage: bootkey tpm ak [--tpm SPEC] [--alg ecc|rsa] [--public F]

Creates bootkey's AK (a restricted signing primary under the endorsement hierarchy; the same
TPM always yields the same AK), prints its Name in hex and flushes it.

${TPM_OPT_HELP}
  --alg ALG    ecc (P-256, ECDSA-SHA256; default) or rsa (2048, RSASSA-SHA256)
  --public F   write the AK's TPM2B_PUBLIC (as tpm2_createak -u)
Exit status: 0 ok, 1 TPM or transport error, 2 usage.`,
  options: { tpm: { type: 'string' }, alg: { type: 'string' }, public: { type: 'string' } },
  run: (args) => {
    const alg = keyAlg(args, 'alg', 'ecc');
    return withTpm(args, (tpm) =>
      withKey(tpm, () => createAK(tpm, alg), async (ak) => {
        const pub = opt(args, 'public');
        if (pub) writeOutput(pub, marshalPublic2B(ak.public));
        process.stdout.write(`${ak.name.toString('hex')}\n`);
        return 0;
      }),
    );
  },
};

export const tpmCommands: Command[] = [infoCmd, pcrreadCmd, quoteCmd, ekCmd, akCmd, ...tpmVerifyCommands];
