/**
 * The runtime verifier's cost, in process (no TLS, no store): `verifyRuntimeReport`
 * (src/server/runtime.ts) on a software quote (bench/sim/quote.ts) of sha256 PCRs 0–10 over an
 * ima-ng list built like test/runtime/helpers.ts, with a runtime policy that lists every file.
 *   - the first full list of N entries (default 20,000): time and heap/RSS growth;
 *   - an incremental report of 5 new entries on top of it: CPU time per attestation (median of 200).
 * Usage: node --import tsx bench/runtime-verifier.ts [--entries N] [--json]   (the fleet over TLS + PostgreSQL: bench/runtime.ts)
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { SimMachine, BootImage } from './sim/machine.ts';
import { softQuote } from './sim/quote.ts';
import { marshalSignature, marshalPublic2B } from '../src/tpm/structures.ts';
import { verifyRuntimeReport, RUNTIME_SELECTION } from '../src/server/runtime.ts';
import { checkRuntimePolicyText, compiledRuntimePolicy } from '../src/server/runtime-policy.ts';
import { emptyRuntime, type MachineRecord, type RuntimeRecord } from '../src/server/store.ts';
import type { PcrValues } from '../src/pcrs.ts';
import { imaNgData, binaryEntry, runtimePolicy, fileDigest } from '../test/runtime/helpers.ts';

const { values: a } = parseArgs({ options: { entries: { type: 'string' }, json: { type: 'boolean' } } });
const N = Number(a.entries ?? 20_000);

const sim = new SimMachine(0, Object.create(BootImage.prototype) as BootImage);
const boot = new Map<number, Buffer>();
for (let i = 0; i < 10; i++) boot.set(i, createHash('sha256').update(`pcr${i}`).digest());
let pcr10 = Buffer.alloc(32);
const files: Record<string, string> = {};
const bytes: Buffer[] = [];
function add(path: string, content: string): void {
  files[path] = content;
  const data = imaNgData(path, fileDigest(content));
  bytes.push(binaryEntry(data));
  pcr10 = createHash('sha256').update(pcr10).update(createHash('sha256').update(data).digest()).digest();
}
// entry 0: boot_aggregate over the sha256 PCRs 0-9
{
  const h = createHash('sha256');
  for (let i = 0; i < 10; i++) h.update(boot.get(i)!);
  const data = imaNgData('boot_aggregate', h.digest());
  bytes.push(binaryEntry(data));
  pcr10 = createHash('sha256').update(pcr10).update(createHash('sha256').update(data).digest()).digest();
}
for (let i = 1; i < N; i++) add(`/usr/lib/x86_64-linux-gnu/lib${i}.so.${i % 7}`, `file ${i}`);
const extra: string[] = [];
for (let i = 0; i < 200 * 5; i++) extra.push(`/usr/bin/extra${i}`);
for (const p of extra) files[p] = `x ${p}`;
const policy = runtimePolicy(files);

const machine = {
  id: 'm-bench', akPublic: marshalPublic2B(sim.akPublic), akName: sim.akName, state: 'active',
} as unknown as MachineRecord;

function report(from: number, entries: Buffer, resetCount = 1) {
  const nonce = randomBytes(32);
  const pcrs: PcrValues = new Map([['sha256', new Map([...boot, [10, pcr10]])]]);
  const q = softQuote({ akPrivate: sim.akKey.privateKey, akName: sim.akName, nonce, pcrs, selection: RUNTIME_SELECTION, clock: 1n, resetCount, restartCount: 0 });
  return { t: 'runtime-report' as const, machine: 'm-bench', akName: sim.akName, nonce, quote: q.quote, signature: marshalSignature(q.signature), pcrs, bank: 'sha256' as const, from, entries };
}

const ok = async () => 'ok' as const;
const policyHash = checkRuntimePolicyText(policy);
const compiled = await compiledRuntimePolicy(policyHash, async () => policy);
let rt: RuntimeRecord = { ...emptyRuntime('m-bench', 0), policyHash };
global.gc?.();
const heap0 = process.memoryUsage();
const msg = report(0, Buffer.concat(bytes));
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
const first = await verifyRuntimeReport({ machine, rt, policy: compiled, msg, consumeNonce: ok, now: 1 });
const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
const firstCpu = process.cpuUsage(cpu0);
const heap1 = process.memoryUsage();
if (first.result.state !== 'attesting') throw new Error(`first report: ${first.result.message}`);
rt = { ...first.record, version: 1 };

const samples: number[] = [];
for (let r = 0; r < 200; r++) {
  const start = bytes.length;
  for (let k = 0; k < 5; k++) add(extra[r * 5 + k], files[extra[r * 5 + k]]);
  const m2 = report(start, Buffer.concat(bytes.slice(start)));
  const c0 = process.cpuUsage();
  const v = await verifyRuntimeReport({ machine, rt, policy: compiled, msg: m2, consumeNonce: ok, now: 2 + r });
  const c = process.cpuUsage(c0);
  samples.push((c.user + c.system) / 1000);
  if (v.result.state !== 'attesting') throw new Error(`incremental: ${v.result.message}`);
  rt = { ...v.record, version: rt.version + 1 };
}
samples.sort((x, y) => x - y);
const out = {
  entries: N, listBytes: msg.entries.length,
  firstFullList: { ms: Math.round(firstMs), cpuMs: Math.round((firstCpu.user + firstCpu.system) / 1000), heapGrowthMiB: +((heap1.heapUsed - heap0.heapUsed) / 2 ** 20).toFixed(1), rssGrowthMiB: +((heap1.rss - heap0.rss) / 2 ** 20).toFixed(1) },
  incremental5: { medianCpuMs: +samples[100].toFixed(2), p95CpuMs: +samples[190].toFixed(2) },
  perCoreAt60s: Math.floor(60_000 / samples[100]),
};
if (a.json) console.log(JSON.stringify(out));
else {
  console.log(`runtime verifier (in process; quote, replay, policy; no TLS/store): ${N} entries, ${(out.listBytes / 2 ** 20).toFixed(1)} MiB`);
  console.log(`  first full list: ${out.firstFullList.ms} ms (${out.firstFullList.cpuMs} ms CPU), heap +${out.firstFullList.heapGrowthMiB} MiB, RSS +${out.firstFullList.rssGrowthMiB} MiB`);
  console.log(`  incremental report of 5 entries: median ${out.incremental5.medianCpuMs} ms CPU, p95 ${out.incremental5.p95CpuMs} ms → ~${out.perCoreAt60s} machines per core at 60 s (verifier only)`);
}
