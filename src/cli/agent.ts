/**
 * `bootkey agent`: the runtime attestation agent (src/agent/agent.ts) as a command, for the
 * systemd service on the booted system. Exit status with --once: 0 attesting, 1 failed or refused
 * (one `bootkey:` line with the server's code and reason, then the failing entries), 2 usage,
 * 3 no server reachable. Without --once it runs until SIGTERM/SIGINT (exit 0), one log line per
 * report; a refusal or an unreachable server is logged and tried again at the next interval.
 * @module
 */
import { type Command, type Parsed, flag, opt, req, printJson } from './command.ts';
import { UsageError } from '../errors.ts';
import { Tpm } from '../tpm/tpm.ts';
import { readToken } from '../initrd/unlock.ts';
import { clientErrorExit } from './unlock.ts';
import { ClientError } from '../client/connect.ts';
import { isBankName } from '../pcrs.ts';

const clean = (s: string): string => s.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();

const agentCmd: Command = {
  path: ['agent'],
  summary: 'on the booted machine: attest the IMA measurement list to the key-release server, every interval',
  help: `usage: bootkey agent --device DEV [--tpm SPEC] [--token-id N] [--interval SECONDS] [--once]
                     [--ima-list FILE [--ima-bank BANK]] [--deadline SECONDS] [--json] [--verbose]

Runtime attestation (docs/PROTOCOL.md): every interval (default 60 s, ±10 % jitter) gets a nonce
from the servers in DEV's bootkey token, quotes sha256 PCRs 0-10 with the enrolled AK, and sends
the IMA measurement list entries the server has not verified yet (the whole list after a
reboot, in chunks of at most 1 MiB). The server checks them against the machine's runtime
policy; a failure refuses the machine's next boot (RUNTIME_FAILED) until an admin clears it.
Push model: the machine opens no port. Runs as root (the TPM, securityfs). While the server
answers RUNTIME_OFF (no runtime policy for this machine) it asks every 10 minutes instead.

  --device DEV        the LUKS2 device holding the bootkey token (servers, CA, machine id, AK template)
  --tpm SPEC          device:/dev/tpmrm0 (default; $BOOTKEY_TPM), swtpm:host=H,port=N
  --interval SECONDS  between reports (default 60; 5..86400)
  --once              one report, then exit with its status
  --ima-list FILE     the binary measurement list (default ${'/sys/kernel/security/ima'}/binary_runtime_measurements_sha256
                      when the kernel has it, else binary_runtime_measurements)
  --ima-bank BANK     the bank of FILE's template hashes (default: from the name, _sha256 → sha256, else sha1)
  --deadline SECONDS  per report, to reach a server and get the answer (default 30)
  --json              one JSON object per report on stdout
  --verbose           connection progress on stderr

Exit status (--once): 0 attesting, 1 failed or refused, 2 usage, 3 no server reachable.`,
  options: {
    device: { type: 'string' }, tpm: { type: 'string' }, 'token-id': { type: 'string' }, interval: { type: 'string' }, once: { type: 'boolean' },
    'ima-list': { type: 'string' }, 'ima-bank': { type: 'string' }, deadline: { type: 'string' }, json: { type: 'boolean' }, verbose: { type: 'boolean', short: 'v' },
  },
  async run(args: Parsed) {
    const device = req(args, 'device');
    const num = (name: string, def: number, min: number, max: number): number => {
      const v = opt(args, name);
      const n = v === undefined ? def : Number(v);
      if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name}: seconds in [${min}, ${max}]`);
      return n;
    };
    const interval = num('interval', 60, 5, 86400);
    const deadline = num('deadline', 30, 1, 3600);
    const tid = opt(args, 'token-id');
    if (tid !== undefined && !/^\d{1,2}$/.test(tid)) throw new UsageError('--token-id: a number 0..31');
    const { attestRuntime, bankOfListFile, defaultImaList, nextDelayMs, AgentError } = await import('../agent/agent.ts');
    const file = opt(args, 'ima-list');
    const bankArg = opt(args, 'ima-bank');
    if (bankArg !== undefined && !isBankName(bankArg)) throw new UsageError(`--ima-bank: "${bankArg}" is not a bank (sha1, sha256, sha384, sha512)`);
    if (bankArg !== undefined && file === undefined) throw new UsageError('--ima-bank goes with --ima-list');
    const imaList = file === undefined ? defaultImaList() : { path: file, bank: bankArg && isBankName(bankArg) ? bankArg : bankOfListFile(file) };
    const json = flag(args, 'json');
    const verbose = flag(args, 'verbose');
    const log = (l: string): void => void process.stderr.write(`bootkey agent: ${clean(l)}\n`);
    const { token } = await readToken(device, tid === undefined ? undefined : Number(tid));
    const tpm = await Tpm.open(opt(args, 'tpm'));
    let stopping = false;
    let wake: (() => void) | undefined;
    const stop = (): void => {
      stopping = true;
      wake?.();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    let off = false; // the last answer was RUNTIME_OFF: ask less often until a policy is set
    const one = async (): Promise<number> => {
      off = false;
      try {
        const r = await attestRuntime({ tpm, token, imaList, deadlineMs: deadline * 1000, log: verbose ? log : undefined, client: { maxAttempts: 3 } });
        const res = r.result;
        if (json) printJson({ server: r.server, state: res.state, entries: res.count, from: r.from, sent: r.sent, unbound: res.unbound, message: res.message, failures: res.failures, ms: Math.round(r.ms) });
        else {
          log(`machine ${token.machine}: ${res.state} (${r.server}): ${res.message}; sent entries ${r.from}..${r.from + r.sent - 1 < r.from ? '-' : r.from + r.sent - 1} of ${r.listEntries}, ${Math.round(r.ms)} ms`);
          for (const f of res.failures) log(`  ${f}`);
        }
        return res.state === 'attesting' ? 0 : 1;
      } catch (e) {
        if (e instanceof AgentError) {
          process.stderr.write(`bootkey: agent: ${clean(e.message)}\n`);
          return 1;
        }
        if (e instanceof ClientError) {
          off = e.serverCode === 'RUNTIME_OFF';
          if (json) printJson({ state: 'error', code: e.serverCode ?? e.code, message: e.message, failures: e.failures ?? [] });
          const s = clientErrorExit(e, 'runtime attestation refused by');
          if (s !== undefined) return s;
        }
        throw e;
      }
    };
    try {
      if (flag(args, 'once')) return await one();
      log(`machine ${token.machine}: runtime attestation every ${interval} s to ${token.servers.join(' ')} (list ${imaList.path}, bank ${imaList.bank})`);
      while (!stopping) {
        await one().catch((e: unknown) => log(`error: ${(e as Error).message}`));
        if (stopping) break;
        await new Promise<void>((r) => {
          const t = setTimeout(r, nextDelayMs(off ? Math.max(interval, 600) : interval));
          wake = () => { clearTimeout(t); r(); };
        });
      }
      log('stopped');
      return 0;
    } finally {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      await tpm.close();
    }
  },
};

export const agentCommands: Command[] = [agentCmd];
