/**
 * Event-log benchmark: parse + replay every corpus log (test/data/eventlogs) repeatedly on one
 * core, then the same plus a policy check against a policy generated from that log (the
 * server's per-release work on the log). `npm run bench` calls benchEventlog(); standalone: `node --import tsx bench/eventlog.ts`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseEventLog, replay } from '../src/measuredboot/index.ts';
import { generatePolicy, type Policy } from '../src/measuredboot/policy.ts';
import { unverifiedLog } from '../src/measuredboot/trusted.ts';
import { evaluateBoot } from '../src/measuredboot/verdict.ts';

const DIR = fileURLToPath(new URL('../test/data/eventlogs/', import.meta.url));

function corpus(): Buffer[] {
  const manifest: { file: string; kind: string }[] = JSON.parse(readFileSync(DIR + 'MANIFEST.json', 'utf8'));
  const logs: Buffer[] = [];
  for (const e of manifest) {
    if (e.kind === 'negative') continue;
    const b = readFileSync(DIR + e.file.split('/').pop()!);
    try {
      parseEventLog(b);
      logs.push(b);
    } catch {
      // refused logs are not part of the throughput figure
    }
  }
  return logs;
}

/** Parses + replays the corpus for about `seconds`; returns throughput figures. */
export async function benchEventlog(seconds = 3): Promise<Record<string, number>> {
  const logs = corpus();
  const bytes = logs.reduce((n, b) => n + b.length, 0);
  for (const b of logs) replay(parseEventLog(b)); // warm-up
  let rounds = 0;
  let events = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    for (const b of logs) {
      const log = parseEventLog(b);
      replay(log);
      events += log.events.length;
    }
    rounds++;
  }
  const s = (performance.now() - t0) / 1000;

  // + policy check: only logs a policy can be generated from (a trustworthy structure).
  const withPolicy: [Buffer, Policy][] = [];
  for (const b of logs) {
    try {
      withPolicy.push([b, generatePolicy(unverifiedLog(parseEventLog(b)), { allowAnyCmdline: true })]);
    } catch {
      // e.g. logs with duplicate separators: generate refuses them
    }
  }
  let prounds = 0;
  let pevents = 0;
  const t1 = performance.now();
  while (performance.now() - t1 < seconds * 1000) {
    for (const [b, pol] of withPolicy) {
      const log = parseEventLog(b);
      const v = evaluateBoot(pol, log, replay(log));
      if (!v.pass) throw new Error(`bench: a log failed its own policy: ${v.message}`);
      pevents += log.events.length;
    }
    prounds++;
  }
  const ps = (performance.now() - t1) / 1000;
  return {
    'eventlog.logs': logs.length,
    'eventlog.rounds': rounds,
    'eventlog.events_per_s': Math.round(events / s),
    'eventlog.logs_per_s': Math.round((rounds * logs.length) / s),
    'eventlog.mb_per_s': Math.round(((rounds * bytes) / s / 1e6) * 100) / 100,
    'eventlog+policy.logs': withPolicy.length,
    'eventlog+policy.events_per_s': Math.round(pevents / ps),
    'eventlog+policy.logs_per_s': Math.round((prounds * withPolicy.length) / ps),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await benchEventlog(), null, 2));
}
