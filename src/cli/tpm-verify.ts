/**
 * `bootkey tpm checkquote` and `bootkey tpm makecredential`: the server-side TPM operations,
 * done in software on files tpm2-tools writes (no TPM needed).
 * Wire into src/cli/tpm.ts: `export const tpmCommands = [...others, ...tpmVerifyCommands]`.
 * @module
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { type Command, type Parsed, flag, hexArg, opt, printJson, readInput, req, writeOutput } from './command.ts';
import { UsageError, InputError } from '../errors.ts';
import { TpmError } from '../tpm/errors.ts';
import { algName } from '../tpm/constants.ts';
import { unmarshalAttest, unmarshalPublic, unmarshalPublic2B, type TPMTPublic } from '../tpm/structures.ts';
import { verifyQuote, type HashName } from '../tpm/quote.ts';
import { makeCredential, marshalCredentialFile, ekPublicFromKey } from '../tpm/credential.ts';
import { objectName } from '../tpm/crypto.ts';
import { parseTpm2ToolsPcrs } from '../tpm/pcrfile.ts';
import { pcrValuesFromJson, pcrValuesToJson, type PcrValues } from '../pcrs.ts';

/** A public key file: TPM2B_PUBLIC (tpm2-tools -u), a bare TPMT_PUBLIC, or a PEM public key. */
export function loadPublic(path: string, what: string): { pub?: TPMTPublic; key?: KeyObject } {
  const b = readInput(path, what);
  if (b.subarray(0, 64).toString('latin1').includes('-----BEGIN')) {
    try {
      return { key: createPublicKey(b) };
    } catch (e) {
      throw new InputError('PEM', `${what} ${path}: not a PEM public key (${(e as Error).message})`);
    }
  }
  try {
    return { pub: unmarshalPublic2B(b, `${what} ${path} (TPM2B_PUBLIC)`) };
  } catch (e2b) {
    try {
      return { pub: unmarshalPublic(b, `${what} ${path}`) };
    } catch {
      throw e2b;
    }
  }
}

function loadPcrs(path: string, message: Buffer): PcrValues {
  const b = readInput(path, 'PCR values');
  const text = b.subarray(0, 16).toString('latin1').trimStart();
  if (text.startsWith('{')) {
    let j: unknown;
    try {
      j = JSON.parse(b.toString('utf8'));
    } catch (e) {
      throw new InputError('PCR_JSON', `PCR values ${path}: invalid JSON (${(e as Error).message})`);
    }
    return pcrValuesFromJson(j);
  }
  // tpm2-tools' PCR file; the values format takes its selection from the (unverified) message,
  // which is harmless: the digest check below fails unless the values are the signed ones.
  let selection;
  try {
    const a = unmarshalAttest(message, 'quote message');
    if ('pcrSelect' in a.attested) selection = a.attested.pcrSelect;
  } catch {
    /* the quote check reports a bad message */
  }
  return parseTpm2ToolsPcrs(b, selection, `PCR values ${path}`);
}

const HASHES: HashName[] = ['sha1', 'sha256', 'sha384', 'sha512'];

const checkquote: Command = {
  path: ['tpm', 'checkquote'],
  summary: 'verify a TPM quote (signature, magic, type, nonce, PCR digest) in software',
  help: `usage: bootkey tpm checkquote --public F --message F --signature F --nonce HEX [--pcr-values F] [--json]

Verifies a TPM2_Quote as tpm2_quote writes it, without a TPM:
  --public F       the AK: a TPM2B_PUBLIC (tpm2_createak -u), or a PEM public key (then the
                   AK attributes cannot be checked; the output says so)
  --message F      the TPMS_ATTEST (tpm2_quote -m)
  --signature F    the TPMT_SIGNATURE (tpm2_quote -s, default tss format)
  --nonce HEX      the qualifying data given to tpm2_quote -q ('' for none)
  --pcr-values F   PCR values: JSON {"sha256": {"0": "hex", ...}} or tpm2_quote -o's file
                   (serialized or values format); every quoted PCR must be present.
                   Without it the PCR digest is NOT checked (reported).
  --hash ALG       require this signature hash (sha256, sha384, ...)
  --allow-sha1     accept SHA-1 signatures (refused by default)
  --json           print the result as JSON

Checks, in order: AK attributes (restricted signing key), signature hash, signature, magic
TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE, nonce, PCR digest.
Exit status: 0 verified, 1 a check failed (one 'bootkey:' line names it) or bad input, 2 usage.`,
  options: {
    public: { type: 'string' },
    message: { type: 'string' },
    signature: { type: 'string' },
    nonce: { type: 'string' },
    'pcr-values': { type: 'string' },
    hash: { type: 'string' },
    'allow-sha1': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  run(args: Parsed): number {
    // Usage checks first, then the files.
    const paths = { public: req(args, 'public'), message: req(args, 'message'), signature: req(args, 'signature') };
    const nonceArg = args.values.nonce;
    if (typeof nonceArg !== 'string') throw new UsageError('missing --nonce (see --help)');
    const nonce = hexArg('nonce', nonceArg);
    const hashOpt = opt(args, 'hash');
    if (hashOpt !== undefined && !HASHES.includes(hashOpt as HashName)) throw new UsageError(`--hash: expected one of ${HASHES.join(', ')}`);
    const ak = loadPublic(paths.public, 'AK public key');
    const message = readInput(paths.message, 'quote message');
    const signature = readInput(paths.signature, 'quote signature');
    const pcrPath = opt(args, 'pcr-values');
    const pcrs = pcrPath ? loadPcrs(pcrPath, message) : undefined;
    let r;
    try {
      r = verifyQuote({
        akPublic: ak.pub ?? ak.key!,
        message,
        signature,
        nonce,
        pcrs,
        requireHash: hashOpt as HashName | undefined,
        allowSHA1: flag(args, 'allow-sha1') || hashOpt === 'sha1',
      });
    } catch (e) {
      if (e instanceof TpmError) throw new TpmError(e.code, `checkquote: ${e.code}: ${e.message}`);
      throw e;
    }
    const selection = r.pcrSelect.map((s) => ({ bank: algName(s.hash).replace('TPM_ALG_', '').toLowerCase(), pcrs: s.pcrs }));
    const info = {
      verified: true,
      checks: { akAttributes: r.akAttributesChecked, signature: true, magic: true, type: true, nonce: true, pcrDigest: r.pcrsVerified },
      signature: { algorithm: algName(r.sigAlg).replace('TPM_ALG_', '').toLowerCase(), hash: r.hashName },
      akName: ak.pub ? objectName(ak.pub).toString('hex') : undefined,
      nonce: nonce.toString('hex'),
      selection,
      pcrDigest: r.pcrDigest.toString('hex'),
      clock: r.attest.clockInfo.clock.toString(),
      resetCount: r.attest.clockInfo.resetCount,
      restartCount: r.attest.clockInfo.restartCount,
      firmwareVersion: '0x' + r.attest.firmwareVersion.toString(16),
      pcrs: r.pcrs ? pcrValuesToJson(r.pcrs) : undefined,
      unquoted: r.unquoted,
    };
    if (flag(args, 'json')) {
      printJson(info);
      return 0;
    }
    const lines = [
      `quote verified`,
      `  AK attributes: ${r.akAttributesChecked ? 'restricted signing key (checked)' : 'NOT checked (PEM public key: give the TPM2B_PUBLIC to check them)'}`,
      `  signature:     ${info.signature.algorithm}/${r.hashName} ok`,
      `  magic, type:   TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE ok`,
      `  nonce:         ${nonce.length ? nonce.toString('hex') : '(empty)'} ok`,
      `  PCRs:          ${selection.map((s) => `${s.bank}:${s.pcrs.join(',')}`).join(' + ') || '(none)'}`,
      `  PCR digest:    ${r.pcrDigest.toString('hex')} ${r.pcrsVerified ? 'ok (matches the given PCR values)' : 'NOT checked (no --pcr-values)'}`,
      ...(r.unquoted.length ? [`  NOT verified:  ${r.unquoted.join(', ')} (given in --pcr-values but not quoted)`] : []),
      `  clock:         ${info.clock} ms, resets ${info.resetCount}, restarts ${info.restartCount}, firmware ${info.firmwareVersion}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

const makecredential: Command = {
  path: ['tpm', 'makecredential'],
  summary: 'TPM2_MakeCredential in software: encrypt a secret to an EK for an AK name',
  help: `usage: bootkey tpm makecredential --ek-public F --name HEX --secret F --out F

Encrypts the secret (at most the EK name hash's digest size, 32 bytes for SHA-256) so that
only the TPM holding the EK can recover it, with TPM2_ActivateCredential, for the object
(AK) whose Name is given. The output is tpm2-tools' credential file, which
'tpm2_activatecredential -i' reads.
  --ek-public F   the EK: TPM2B_PUBLIC (tpm2_createek -u; RSA or ECC), or a PEM public key
                  (then the default EK template is assumed: nameAlg SHA-256, AES-128-CFB)
  --name HEX      the AK's Name (tpm2_createak -n, as hex): nameAlg ‖ digest
  --secret F      the secret ('-' for stdin)
  --out F         the credential file ('-' for stdout)
Exit status: 0 written, 1 bad input, 2 usage.`,
  options: {
    'ek-public': { type: 'string' },
    name: { type: 'string' },
    secret: { type: 'string' },
    out: { type: 'string' },
  },
  run(args: Parsed): number {
    // Usage checks first, then the files.
    const ekPath = req(args, 'ek-public');
    const name = hexArg('name', req(args, 'name'));
    if (name.length < 4) throw new UsageError('--name: too short for a Name (nameAlg ‖ digest)');
    const secretPath = req(args, 'secret');
    const out = req(args, 'out');
    const ek = loadPublic(ekPath, 'EK public key');
    const secret = readInput(secretPath, 'secret');
    const ekPub = ek.pub ?? ekPublicFromKey(ek.key!);
    const cred = makeCredential(ekPub, name, secret);
    writeOutput(out, marshalCredentialFile(cred), 0o600);
    if (out !== '-') process.stdout.write(`credential for ${name.toString('hex')} written to ${out}\n`);
    return 0;
  },
};

export const tpmVerifyCommands: Command[] = [checkquote, makecredential];
