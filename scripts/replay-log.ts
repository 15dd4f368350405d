/**
 * Makes a TPM's PCRs match a measured-boot event log: PCR_Extend of every event's digests,
 * bank by bank, skipping EV_NO_ACTION. For tests and the demo, on a swtpm just (re)started,
 * so that the log and the quoted PCRs agree as after a real boot. A log with a StartupLocality
 * event cannot be reproduced on a running TPM (PCR 0 would start at another value): refused.
 *
 *   node --import tsx scripts/replay-log.ts --tpm swtpm:host=127.0.0.1,port=N --eventlog FILE
 * @module
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { parseEventLog } from '../src/measuredboot/index.ts';
import { Tpm } from '../src/tpm/tpm.ts';
import { PCR_Extend, getPCRBanks } from '../src/tpm/commands/pcr.ts';
import { TPM_ALG } from '../src/tpm/constants.ts';

const EV_NO_ACTION = 3;
const ALG: Record<string, number> = { sha1: TPM_ALG.SHA1, sha256: TPM_ALG.SHA256, sha384: TPM_ALG.SHA384, sha512: TPM_ALG.SHA512 };

/** Extends every event of `log` into `tpm`; returns the number of events extended. */
export async function replayLogIntoTpm(tpm: Tpm, logBytes: Buffer): Promise<number> {
  const log = parseEventLog(logBytes);
  if (log.events.some((e) => e.decoded.kind === 'startup-locality')) {
    throw new Error('the log has a StartupLocality event: its PCR 0 cannot be reproduced on a running TPM');
  }
  const active = new Set((await getPCRBanks(tpm)).filter((b) => b.pcrs.length > 0).map((b) => b.hash));
  let n = 0;
  for (const ev of log.events) {
    if (ev.type === EV_NO_ACTION || ev.pcr > 23) continue;
    const digests = [...ev.digests].filter(([bank]) => ALG[bank] !== undefined && active.has(ALG[bank])).map(([bank, digest]) => ({ hashAlg: ALG[bank], digest }));
    if (digests.length === 0) continue;
    await PCR_Extend(tpm, { pcrHandle: ev.pcr, digests });
    n++;
  }
  return n;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { tpm: { type: 'string' }, eventlog: { type: 'string' } } });
  if (!values.eventlog) {
    process.stderr.write('usage: replay-log.ts --tpm SPEC --eventlog FILE\n');
    process.exit(2);
  }
  const tpm = await Tpm.open(values.tpm);
  try {
    const n = await replayLogIntoTpm(tpm, readFileSync(values.eventlog));
    process.stdout.write(`replayed ${n} events of ${values.eventlog} into the TPM\n`);
  } finally {
    await tpm.close();
  }
}
