/**
 * `bootkey stage`: on the enrolled machine, called by update tooling (hooks/), asks the servers
 * to allow the boot the files being installed will make (src/client/stage.ts). Exit 0 staged
 * (or already allowed), 1 refused (one `bootkey:` line with the server's code and reason, then
 * the failures), 3 no server reachable, 2 usage.
 * @module
 */
import { type Command, type Parsed, flag, opt, req, readInput, printJson } from './command.ts';
import { UsageError } from '../errors.ts';
import { Tpm } from '../tpm/tpm.ts';
import { readToken } from '../initrd/unlock.ts';
import { DEFAULT_EVENTLOG } from './enroll.ts';
import { PART_OPTIONS, predictFrom } from './policy.ts';
import { clientErrorExit } from './unlock.ts';

const stageCmd: Command = {
  path: ['stage'],
  summary: 'on the enrolled machine: stage the boot an update installs with the key-release server',
  help: `usage: bootkey stage --device DEV (--uki F | --kernel F [--initrd F] [--kernel-path P] | --cmdline S | --shim F | --bootloader F)...
                     [--eventlog FILE] [--label L] [--tpm SPEC] [--token-id N] [--deadline SECONDS] [--dry-run] [--json] [--verbose]

Predicts the next boot from this boot's event log and the files being installed (as \`bootkey
policy predict\`), and asks the servers in DEV's bootkey token to allow it. The request is bound
to a fresh quote by the enrolled AK over a server nonce tied to the request: only this machine,
in a boot that passes its policy now, can stage for itself, and only within the policy's staging
permission (staging.mode: signed-by needs each new EFI image signed by a listed certificate and
refuses any other widening; any; none refuses). Called by the hooks in hooks/ (kernel-install,
/etc/kernel/postinst.d, sdbootutil); see docs/UPDATES.md.

  --device DEV        the LUKS2 device holding the bootkey token (servers, CA, machine id)
  --eventlog FILE     this boot's measured-boot log (default ${DEFAULT_EVENTLOG})
  --label L           a name for the staged boot (e.g. "kernel 6.1.0-57")
  --tpm SPEC          device:/dev/tpmrm0 (default; $BOOTKEY_TPM), swtpm:host=H,port=N
  --dry-run           print the prediction's summary, send nothing
  --json              print the server's answer (or the prediction) as JSON
${Object.keys(PART_OPTIONS).map((k) => `  --${k}`).join('\n')}
                      as for \`bootkey policy predict\`

Exit status: 0 staged or already allowed, 1 refused or failed, 2 usage, 3 no server reachable.`,
  options: {
    ...PART_OPTIONS, device: { type: 'string' }, eventlog: { type: 'string' }, label: { type: 'string' }, tpm: { type: 'string' },
    'token-id': { type: 'string' }, deadline: { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' }, verbose: { type: 'boolean', short: 'v' },
  },
  async run(args: Parsed) {
    const device = req(args, 'device');
    const label = opt(args, 'label');
    if (label !== undefined && (label.length > 128 || /[\x00-\x1f\x7f]/.test(label))) throw new UsageError('--label: at most 128 printable characters');
    const dl = opt(args, 'deadline');
    const deadline = dl === undefined ? 60 : Number(dl);
    if (!Number.isFinite(deadline) || deadline <= 0 || deadline > 3600) throw new UsageError('--deadline: seconds in (0, 3600]');
    const tid = opt(args, 'token-id');
    if (tid !== undefined && !/^\d{1,2}$/.test(tid)) throw new UsageError('--token-id: a number 0..31');
    const logPath = opt(args, 'eventlog') ?? DEFAULT_EVENTLOG;
    const eventLog = readInput(logPath, 'event log');
    const predicted = await predictFrom(logPath, args);
    const prediction = JSON.stringify(predicted);
    const summary = `PCR 4 ${predicted.images.map((i) => `${i.role} ${(i.digests.sha256 ?? Object.values(i.digests)[0] ?? '').slice(0, 12)}…${i.pkcs7?.length ? ' (signed)' : ' (unsigned)'}`).join(', ') || 'unchanged'}; changed PCRs ${predicted.changedPcrs.join(', ') || 'none'}`;
    if (flag(args, 'dry-run')) {
      if (flag(args, 'json')) printJson(predicted);
      else process.stdout.write(`would stage: ${summary}\n${predicted.notes.map((n) => `note: ${n}\n`).join('')}`);
      return 0;
    }
    const { token } = await readToken(device, tid === undefined ? undefined : Number(tid));
    const verbose = flag(args, 'verbose');
    const { stageWithServer } = await import('../client/stage.ts');
    const tpm = await Tpm.open(opt(args, 'tpm'));
    try {
      const t0 = process.hrtime.bigint();
      const r = await stageWithServer({
        tpm, token, eventLog, prediction, ...(label !== undefined ? { label } : {}), deadlineMs: deadline * 1000,
        log: verbose ? (l) => process.stderr.write(`stage: ${l}\n`) : undefined,
      });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (flag(args, 'json')) printJson({ server: r.server, ...r.staged, ms: Math.round(ms) });
      else if (r.staged.state === 'already-allowed') process.stdout.write(`bootkey: ${r.server}: this boot is already allowed (${summary}); nothing staged\n`);
      else {
        process.stdout.write(`bootkey: staged ${r.staged.id} (${r.staged.state}) with ${r.server}: ${summary}\n`);
        for (const w of r.staged.widenings) process.stdout.write(`  allows ${w}\n`);
        for (const s of r.staged.signers) process.stdout.write(`  ${s}\n`);
        if (r.staged.state === 'pending') process.stdout.write('  pending: an operator must approve it (bootkey admin staged approve) before the next boot unlocks by itself\n');
      }
      return 0;
    } catch (e) {
      const status = clientErrorExit(e, 'staging refused by');
      if (status !== undefined) return status;
      throw e;
    } finally {
      await tpm.close();
    }
  },
};

export const stageCommands: Command[] = [stageCmd];
