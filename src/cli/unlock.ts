/**
 * `bootkey unlock`: the boot-time unlock (src/initrd/unlock.ts) from the device's bootkey
 * token. Exit 0 unlocked, 1 refused (one `bootkey:` line with the server's code and message,
 * then the policy failures), 3 no server reachable before the deadline, 2 usage.
 * @module
 */
import { type Command, flag, opt, req, readInput } from './command.ts';
import { UsageError } from '../errors.ts';
import { Tpm } from '../tpm/tpm.ts';
import { unlock } from '../initrd/unlock.ts';
import { ClientError } from '../client/connect.ts';
import { DEFAULT_EVENTLOG } from './enroll.ts';

export const EXIT_UNREACHABLE = 3;

/**
 * The exit status for a server's refusal (1: the reason and each failed rule on stderr) or no
 * server reachable (3); undefined for any other error (the caller rethrows it).
 */
export function clientErrorExit(e: unknown, refusedBy: string): number | undefined {
  if (!(e instanceof ClientError)) return undefined;
  const oneLine = (m: string) => m.replace(/\s*\n\s*/g, '; ');
  if (e.code === 'REFUSED') {
    process.stderr.write(`bootkey: ${refusedBy} ${e.server}: ${oneLine(e.message)}\n`);
    for (const f of e.failures ?? []) process.stderr.write(`  - ${f}\n`);
    return 1;
  }
  if (e.code === 'UNREACHABLE') {
    process.stderr.write(`bootkey: ${oneLine(e.message)}\n`);
    return EXIT_UNREACHABLE;
  }
  return undefined;
}

const unlockCmd: Command = {
  path: ['unlock'],
  summary: 'attest to the key-release server and unlock a LUKS2 device with the released key',
  help: `usage: bootkey unlock --device DEV (--test | --name NAME) [--tpm SPEC] [--eventlog FILE]
                      [--deadline SECONDS] [--token-id N] [--verbose]

Reads the bootkey token of DEV (servers, pinned CA, machine id, pinned EK, disk share), quotes
the PCRs the server asks for with its nonce, sends the quote and the event log, and receives the
server's key share sealed to this TPM's EK and this boot's PCRs. Unseals it in a session salted
to the pinned EK with response encryption, extends the released PCR (so nothing is released again
this boot), derives the LUKS key and gives it to cryptsetup on a pipe.

  --device DEV        LUKS2 block device or image file
  --test              only check the key: cryptsetup open --test-passphrase
  --name NAME         cryptsetup open DEV NAME (needs device-mapper)
  --tpm SPEC          device:/dev/tpmrm0 (default; $BOOTKEY_TPM), swtpm:host=H,port=N, swtpm:path=S
  --eventlog FILE     measured-boot log (default ${DEFAULT_EVENTLOG})
  --deadline SECONDS  give up reaching a server after this long (default 60)
  --token-id N        which bootkey token (default: the first)
  --verbose           progress on stderr (never a secret)

Exit status: 0 unlocked, 1 refused or failed, 2 usage, 3 no server reachable before the deadline.
`,
  options: {
    device: { type: 'string' }, tpm: { type: 'string' }, eventlog: { type: 'string' }, test: { type: 'boolean' }, name: { type: 'string' },
    deadline: { type: 'string' }, 'token-id': { type: 'string' }, verbose: { type: 'boolean', short: 'v' },
  },
  async run(args) {
    const device = req(args, 'device');
    const test = flag(args, 'test');
    const name = opt(args, 'name');
    if (test === (name !== undefined)) throw new UsageError('give exactly one of --test and --name NAME');
    const dl = opt(args, 'deadline');
    const deadline = dl === undefined ? 60 : Number(dl);
    if (!Number.isFinite(deadline) || deadline <= 0 || deadline > 3600) throw new UsageError('--deadline: seconds in (0, 3600]');
    const tid = opt(args, 'token-id');
    if (tid !== undefined && !/^\d{1,2}$/.test(tid)) throw new UsageError('--token-id: a number 0..31');
    const eventLog = readInput(opt(args, 'eventlog') ?? DEFAULT_EVENTLOG, 'event log');
    const verbose = flag(args, 'verbose');
    const tpm = await Tpm.open(opt(args, 'tpm'));
    try {
      const r = await unlock({
        device, tpm, eventLog, mode: test ? 'test' : { name: name! }, tokenId: tid === undefined ? undefined : Number(tid), deadlineMs: deadline * 1000,
        log: verbose ? (l) => process.stderr.write(`unlock: ${l}\n`) : undefined,
        notice: (l) => process.stderr.write(`bootkey: ${l}\n`),
      });
      process.stdout.write(`unlocked ${device}${test ? ' (key checked with cryptsetup open --test-passphrase)' : ` as /dev/mapper/${name}`}: machine ${r.machine}, server ${r.server}\n`);
      return 0;
    } catch (e) {
      const status = clientErrorExit(e, 'refused by');
      if (status !== undefined) return status;
      throw e;
    } finally {
      await tpm.close();
    }
  },
};

export const unlockCommands: Command[] = [unlockCmd];
