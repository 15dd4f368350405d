/**
 * `ima replay` throughput: entries/s of the built bundle (dist/bootkey.js, `node scripts/build.mjs`)
 * replaying a large IMA list, binary and ASCII, with and without --pcrs (which also binds every
 * entry: template hashes recomputed in both banks, boot_aggregate checked).
 *
 * The lists are synthesised from the real capture test/data/ima/qemu-debian (Debian 6.1, swtpm):
 * its boot_aggregate, then its other entries repeated (every template, the violation included),
 * each copy's path made unique (`/data/ng` → `/data/ng.123`) and its template hash recomputed.
 * The PCR file holds that capture's real PCRs 0-9 and the synthetic list's PCR 10.
 *
 *   npm run bench:ima                 (20,000 and 100,000 entries, median of 3 runs each)
 *   node --import tsx bench/ima.ts 5000 20000
 * @module
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { loadavg, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseImaList } from '../src/ima/list.ts';
import { replayIma } from '../src/ima/replay.ts';
import type { ImaEntry } from '../src/ima/types.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CAPTURE = ROOT + 'test/data/ima/qemu-debian/';
const BUNDLE = ROOT + 'dist/bootkey.js';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** A copy of a real entry with its path suffixed and its sha1 template hash recomputed. */
function copyOf(e: ImaEntry, k: number): { bin: Buffer; ascii: string } {
  const suffix = `.${k}`;
  let data: Buffer;
  const path = (e.path ?? '') + suffix;
  if (e.templateName === 'ima') {
    data = Buffer.concat([e.digest!, u32(Buffer.byteLength(path)), Buffer.from(path)]);
  } else {
    // Fields: d-ng, n-ng, then the rest unchanged (as they are in the real data).
    const dLen = e.templateData.readUInt32LE(0);
    const nAt = 4 + dLen;
    const nLen = e.templateData.readUInt32LE(nAt);
    const name = Buffer.concat([Buffer.from(path), Buffer.from([0])]);
    data = Buffer.concat([e.templateData.subarray(0, nAt), u32(name.length), name, e.templateData.subarray(nAt + 4 + nLen)]);
  }
  let hash: Buffer;
  if (e.violation) hash = Buffer.alloc(20);
  else if (e.templateName === 'ima') {
    const padded = Buffer.alloc(256);
    Buffer.from(path).copy(padded);
    hash = createHash('sha1').update(e.digest!).update(padded).digest();
  } else hash = createHash('sha1').update(data).digest();
  const name = Buffer.from(e.templateName);
  const bin = Buffer.concat([u32(10), hash, u32(name.length), name, ...(e.templateName === 'ima' ? [] : [u32(data.length)]), data]);
  // The ASCII line of the same entry.
  const d = `${e.digestAlgo}:${e.digest!.toString('hex')}`;
  const tail = e.templateName === 'ima' ? `${e.digest!.toString('hex')} ${path}`
    : e.templateName === 'ima-ng' ? `${d} ${path}`
    : e.templateName === 'ima-sig' ? `${d} ${path} ${e.sig!.toString('hex')}`
    : e.templateName === 'ima-buf' ? `${d} ${path} ${e.buf!.toString('hex')}`
    : `${d} ${path} ${e.sig!.toString('hex')} ${e.modsigDigest ? `${e.modsigDigestAlgo}:${e.modsigDigest.toString('hex')}` : ''} ${e.modsig!.toString('hex')}`;
  return { bin, ascii: `10 ${hash.toString('hex')} ${e.templateName} ${tail}\n` };
}

/** Writes a binary list, its ASCII twin and a PCR file for n entries into dir. */
export function synthesise(dir: string, n: number): { bin: string; ascii: string; pcrs: string } {
  const real = parseImaList(readFileSync(CAPTURE + 'binary_runtime_measurements'), { bank: 'sha1' }).entries;
  const bootAgg = readFileSync(CAPTURE + 'binary_runtime_measurements').subarray(0, real[1].offset);
  const asciiFirst = readFileSync(CAPTURE + 'ascii_runtime_measurements', 'latin1').split('\n')[0] + '\n';
  const bins: Buffer[] = [bootAgg];
  const lines: string[] = [asciiFirst];
  for (let k = 1; k < n; k++) {
    const c = copyOf(real[1 + ((k - 1) % (real.length - 1))], k);
    bins.push(c.bin);
    lines.push(c.ascii);
  }
  const bin = join(dir, 'binary_runtime_measurements');
  const ascii = join(dir, 'ascii_runtime_measurements');
  writeFileSync(bin, Buffer.concat(bins));
  writeFileSync(ascii, lines.join(''));
  const list = parseImaList(readFileSync(bin), { bank: 'sha1' });
  const r = replayIma(list.entries, 'sha1', ['sha1', 'sha256']);
  const pcrs = JSON.parse(readFileSync(CAPTURE + 'pcrs.json', 'utf8'));
  pcrs.sha1['10'] = r.pcr10.get('sha1')!.toString('hex');
  pcrs.sha256['10'] = r.pcr10.get('sha256')!.toString('hex');
  const pcrFile = join(dir, 'pcrs.json');
  writeFileSync(pcrFile, JSON.stringify(pcrs));
  return { bin, ascii, pcrs: pcrFile };
}

function wall(args: string[], runs: number): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [BUNDLE, ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
    t.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`bootkey ${args.join(' ')}: exit ${r.status}: ${r.stderr}${r.stdout.slice(0, 500)}`);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

export async function benchIma(sizes = [20_000, 100_000], runs = 3): Promise<Record<string, number>> {
  if (!existsSync(BUNDLE)) execFileSync(process.execPath, [ROOT + 'scripts/build.mjs'], { cwd: ROOT, stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'bk-bench-ima-'));
  const out: Record<string, number> = {};
  try {
    const startup = wall(['--version'], runs);
    out.startupMs = Math.round(startup);
    for (const n of sizes) {
      const f = synthesise(dir, n);
      // In-process (what a server pays per report, no process start): parse + replay both banks.
      for (const [label, path] of [['inproc.binary', f.bin], ['inproc.ascii', f.ascii]] as const) {
        const t: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          const l = parseImaList(readFileSync(path));
          replayIma(l.entries, l.bank, ['sha1', 'sha256']);
          t.push(performance.now() - t0);
        }
        const ms = t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
        out[`${label}.${n}.ms`] = Math.round(ms);
        out[`${label}.${n}.entriesPerSec`] = Math.round(n / (ms / 1000));
      }
      for (const [label, args] of [
        ['binary', ['ima', 'replay', f.bin, '--json']],
        ['ascii', ['ima', 'replay', f.ascii, '--json']],
        ['binary+pcrs', ['ima', 'replay', f.bin, '--json', '--pcrs', f.pcrs]],
      ] as const) {
        const ms = wall([...args], runs);
        out[`${label}.${n}.ms`] = Math.round(ms);
        out[`${label}.${n}.entriesPerSec`] = Math.round(n / (ms / 1000));
        out[`${label}.${n}.entriesPerSecExclStartup`] = Math.round(n / (Math.max(ms - startup, 1) / 1000));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map(Number).filter((x) => x > 1);
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  const r = await benchIma(sizes.length ? sizes : undefined);
  console.log(`ima replay (dist/bootkey.js, node ${process.version}, ${cpus().length} cores, ${cpus()[0]?.model ?? '?'}, load before: ${load}, after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}); median of 3 runs`);
  console.log(JSON.stringify(r, null, 2));
}
