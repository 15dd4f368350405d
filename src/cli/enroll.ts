/**
 * `bootkey enroll`: enrols this machine's TPM with a key-release server and adds a bootkey
 * keyslot + token to a LUKS2 device (src/enroll/enroll.ts). Any failure leaves the device and
 * the server as they were.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { type Command, type Parsed, flag, opt, req, readInput, printJson } from './command.ts';
import { UsageError, InputError } from '../errors.ts';
import { Tpm } from '../tpm/tpm.ts';
import type { KeyAlg } from '../tpm/templates.ts';
import { enroll } from '../enroll/enroll.ts';
import { parseServerUrl } from '../client/connect.ts';
import { loadMachineConf, MACHINE_CONF_FILE, DEFAULT_PINNED_CA, type MachineSettings } from '../config/machine-conf.ts';

export const DEFAULT_EVENTLOG = '/sys/kernel/security/tpm0/binary_bios_measurements';

function keyAlg(args: Parsed, name: string, def: KeyAlg): KeyAlg {
  const v = opt(args, name) ?? def;
  if (v !== 'rsa' && v !== 'ecc') throw new UsageError(`--${name}: expected rsa or ecc, got "${v}"`);
  return v;
}

/** /etc/machine-id, or --machine-id. */
function machineId(args: Parsed): string {
  const given = opt(args, 'machine-id');
  const id = given ?? (() => {
    try {
      return readFileSync('/etc/machine-id', 'utf8').trim();
    } catch {
      throw new UsageError('no /etc/machine-id: give --machine-id ID');
    }
  })();
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(id)) throw new UsageError(`machine id ${JSON.stringify(id)}: use letters, digits and . _ : - (at most 128)`);
  return id;
}

function machineConfDefaults(file: string | undefined): MachineSettings {
  const path = file ?? MACHINE_CONF_FILE;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (file === undefined && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new InputError('READ', `cannot read the configuration ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return loadMachineConf(text, path, true).settings;
}

const enrollCmd: Command = {
  path: ['enroll'],
  summary: 'enrol this TPM with a key-release server and add a bootkey keyslot to a LUKS2 device',
  help: `usage: bootkey enroll --server https://HOST:PORT [--server ...] --ca FILE --enrol-token FILE
                      --device DEV --key-file FILE [--tpm SPEC] [--eventlog FILE]
                      [--ek-alg rsa|ecc] [--ak-alg ecc|rsa] [--machine-id ID] [--json]

Proves to the server (TLS 1.3, CA pinned from --ca) that this TPM holds the AK (credential
activation in an EK session salted to the EK, parameters encrypted) and what it booted (quote +
event log), receives the server's key share, adds a LUKS2 keyslot whose key is
HKDF(server share ‖ random disk share, machine id), stores a "bootkey" token (servers, CA,
machine, EK public, disk share, the server's signature over machine/EK/released PCR) in the LUKS2
header, checks the key, then commits. On any failure the token and keyslot are removed and the
enrolment is aborted on the server.

  --server URL       key-release server; repeat for failover (all go into the token);
                     default: servers = in /etc/bootkey/bootkey.conf
  --ca FILE          the server CA certificate (PEM), pinned into the token; default: ca = in
                     bootkey.conf, else /etc/bootkey/ca.pem when present
  --config FILE      the machine configuration (default /etc/bootkey/bootkey.conf, if present)
  --enrol-token FILE file holding an enrolment token (\`bootkey admin token create\` on the admin's
                     host); the admin token is refused here (it never leaves the admin's host)
  --device DEV       LUKS2 block device or image file
  --key-file FILE    an existing passphrase of DEV (file contents, no newline added)
  --tpm SPEC         device:/dev/tpmrm0 (default; $BOOTKEY_TPM), swtpm:host=H,port=N, swtpm:path=S
  --eventlog FILE    measured-boot log (default ${DEFAULT_EVENTLOG})
  --ek-alg rsa|ecc   EK to enrol (default rsa)
  --ak-alg ecc|rsa   AK (default ecc)
  --machine-id ID    default: /etc/machine-id
  --json             print the result as JSON
`,
  options: {
    server: { type: 'string', multiple: true }, ca: { type: 'string' }, config: { type: 'string' }, 'enrol-token': { type: 'string' }, 'admin-token': { type: 'string' }, tpm: { type: 'string' },
    device: { type: 'string' }, 'key-file': { type: 'string' }, eventlog: { type: 'string' }, 'ek-alg': { type: 'string' },
    'ak-alg': { type: 'string' }, 'machine-id': { type: 'string' }, json: { type: 'boolean' }, verbose: { type: 'boolean', short: 'v' },
  },
  async run(args) {
    // Defaults from /etc/bootkey/bootkey.conf (servers, ca; read strictly: a bad line is named), flags win.
    const conf = machineConfDefaults(opt(args, 'config'));
    const servers = (args.values.server as string[] | undefined) ?? conf.servers ?? [];
    if (servers.length === 0) throw new UsageError('missing --server (or servers = in /etc/bootkey/bootkey.conf; see --help)');
    for (const s of servers) {
      try {
        parseServerUrl(s);
      } catch (e) {
        throw new UsageError(`--server: ${(e as Error).message}`);
      }
    }
    const caFile = opt(args, 'ca') ?? conf.ca ?? (existsSync(DEFAULT_PINNED_CA) ? DEFAULT_PINNED_CA : undefined);
    if (!caFile) throw new UsageError('missing --ca (or ca = in /etc/bootkey/bootkey.conf; see --help)');
    const ca = readInput(caFile, 'CA certificate').toString();
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new InputError('BAD_CA', `--ca ${caFile}: not a PEM certificate`);
    if (opt(args, 'admin-token') !== undefined) {
      throw new UsageError('--admin-token is not accepted by enroll: create an enrolment token on the admin host (`bootkey admin token create --uses 1 --expires 24h`) and pass it with --enrol-token FILE');
    }
    const enrolToken = readInput(req(args, 'enrol-token'), 'enrolment token').toString().trim();
    const device = req(args, 'device');
    const keyFile = req(args, 'key-file');
    const eventLog = readInput(opt(args, 'eventlog') ?? DEFAULT_EVENTLOG, 'event log');
    const json = flag(args, 'json');
    const verbose = flag(args, 'verbose') || !json;
    const tpm = await Tpm.open(opt(args, 'tpm'));
    try {
      const r = await enroll({
        servers, ca, enrolToken, tpm, device, keyFile, eventLog, ekAlg: keyAlg(args, 'ek-alg', 'rsa'), akAlg: keyAlg(args, 'ak-alg', 'ecc'),
        machineId: machineId(args), hostname: hostname(),
        log: verbose ? (l) => process.stderr.write(`enroll: ${l}\n`) : undefined,
      });
      if (json) printJson(r);
      else process.stdout.write(`enrolled ${device}: machine ${r.machine}, keyslot ${r.keyslot}, token ${r.tokenId}, released PCR ${r.releasedPcr}\n`);
      return 0;
    } finally {
      await tpm.close();
    }
  },
};

export const enrollCommands: Command[] = [enrollCmd];
