/**
 * How many corpus logs with reliable expected PCRs does `tpm2_eventlog` (tpm2-tools) replay
 * wrongly, against bootkey? A log counts as wrong when the tool refuses or crashes on it, or
 * when any PCR it prints differs from the expected value (banks present in both). A PCR the
 * tool leaves out counts as missing (reported separately, not as wrong).
 * Run: `node --import tsx bench/tpm2-eventlog-compare.ts`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseEventLog, replay } from '../src/measuredboot/index.ts';
import { pcrValuesToJson } from '../src/pcrs.ts';

type Pcrs = Record<string, Record<string, string>>;
const DIR = fileURLToPath(new URL('../test/data/eventlogs/', import.meta.url));

/** The `pcrs:` section of tpm2_eventlog's YAML. */
function tpm2Pcrs(file: string): { pcrs?: Pcrs; error?: string } {
  const r = spawnSync('tpm2_eventlog', [file], { encoding: 'utf8', timeout: 20_000, maxBuffer: 256 << 20 });
  if (r.error) return { error: r.error.message };
  if (r.status !== 0) return { error: r.signal ? `killed by ${r.signal}` : `exit ${r.status}: ${(r.stderr ?? '').trim().split('\n')[0]}` };
  const at = r.stdout.indexOf('\npcrs:');
  if (at < 0) return { error: 'no pcrs: section' };
  const pcrs: Pcrs = {};
  let bank = '';
  for (const line of r.stdout.slice(at + 7).split('\n')) {
    const b = /^ {2}(\w+):\s*$/.exec(line);
    if (b) {
      bank = b[1];
      pcrs[bank] = {};
      continue;
    }
    const p = /^ {4}(\d+)\s*:\s*0x([0-9a-fA-F]+)/.exec(line);
    if (p && bank) pcrs[bank][p[1]] = p[2].toLowerCase();
  }
  return { pcrs };
}

function bootkeyPcrs(file: string): { pcrs?: Pcrs; error?: string } {
  try {
    return { pcrs: pcrValuesToJson(replay(parseEventLog(readFileSync(file)))) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function compare(got: { pcrs?: Pcrs; error?: string }, expected: Pcrs): { wrong: string[]; missing: number; compared: number; error?: string } {
  if (!got.pcrs) return { wrong: [], missing: 0, compared: 0, error: got.error };
  const wrong: string[] = [];
  let missing = 0;
  let compared = 0;
  for (const [bank, pcrs] of Object.entries(expected)) {
    if (!got.pcrs[bank]) continue;
    for (const [i, want] of Object.entries(pcrs)) {
      const v = got.pcrs[bank][i];
      if (v === undefined) missing++;
      else {
        compared++;
        if (v !== want.toLowerCase()) wrong.push(`${bank}:${i}`);
      }
    }
  }
  return { wrong, missing, compared };
}

const manifest: { file: string; kind: string; expected?: { file?: string; reliable?: boolean } }[] = JSON.parse(readFileSync(DIR + 'MANIFEST.json', 'utf8'));
const totals = { logs: 0, tpm2Wrong: 0, tpm2Failed: 0, tpm2Mismatch: 0, bootkeyWrong: 0 };
const lines: string[] = [];
for (const e of manifest) {
  if (!e.expected?.reliable || !e.expected.file) continue;
  const file = DIR + e.file.split('/').pop()!;
  const expected: Pcrs = JSON.parse(readFileSync(DIR + e.expected.file.split('/').pop()!, 'utf8'));
  const t = compare(tpm2Pcrs(file), expected);
  const b = compare(bootkeyPcrs(file), expected);
  totals.logs++;
  const tBad = t.error !== undefined || t.wrong.length > 0;
  const bBad = b.error !== undefined || b.wrong.length > 0;
  if (tBad) totals.tpm2Wrong++;
  if (t.error !== undefined) totals.tpm2Failed++;
  else if (t.wrong.length) totals.tpm2Mismatch++;
  if (bBad) totals.bootkeyWrong++;
  const name = e.file.split('/').pop()!;
  lines.push(`${tBad ? 'TPM2-WRONG' : 'tpm2-ok   '} ${bBad ? 'BOOTKEY-WRONG' : 'bootkey-ok'}  ${name}${t.error ? `  [tpm2_eventlog: ${t.error}]` : t.wrong.length ? `  [tpm2_eventlog wrong: ${t.wrong.join(',')}]` : ''}${b.error ? `  [bootkey: ${b.error}]` : b.wrong.length ? `  [bootkey wrong: ${b.wrong.join(',')}]` : ''}`);
}
console.log(lines.join('\n'));
console.log(`\n${totals.logs} logs with reliable expected PCRs: tpm2_eventlog wrong on ${totals.tpm2Wrong} (${totals.tpm2Failed} refused/crashed, ${totals.tpm2Mismatch} with wrong PCR values); bootkey wrong on ${totals.bootkeyWrong}`);
