/**
 * `node --import tsx bench/profile.ts DIR|FILE.cpuprofile [--level C] [--bundle FILE] [--json]`
 *
 * Summarises the V8 CPU profiles of `bootkey server` (bench/server.ts --cpu-prof DIR, which writes
 * one profile per process, the primary and each worker, and DIR/windows.json, the monotonic time window of each concurrency level) into the
 * cost of one release by category. Only the samples inside the chosen level's window count
 * (default c = 16; enrolment and the other levels are left out). A category's ms per release is
 * its share of the main thread's non-idle samples times the process's CPU per release measured
 * from /proc in the same window (windows.json): sample times are wall-clock, inflated when the
 * machine is loaded, shares are not. The CPU of other threads (V8's GC helpers and compiler,
 * libuv's pool) is thus spread over the categories in proportion; the profiler's own cost is in
 * the /proc figure (compare with a run without --cpu-prof).
 *
 * Each sample goes to the DEEPEST frame of its stack that names an operation (so a hash inside
 * the log parser counts as log parsing, an SQLite call inside the audit as store):
 *
 *   TLS + sockets   (program) (native work outside JS: TLS handshakes and record crypto in
 *                   C++, libuv), node:tls / node:net / stream internals
 *   CBOR            cbor-x, src/protocol (codec, messages validation, connection framing)
 *   quote verify    verifyQuote, quotePcrDigest, verifyQuoteOnly
 *   log parse       parseEventLog and the parsers it calls
 *   replay          replay, bindLogToQuote
 *   policy          parsePolicy, checkPolicy, evaluateBoot's own work, the effective policy
 *   sealing         createImportBlob (Duplicate), the Vault (AES-GCM), MakeCredential
 *   store           store-sqlite / store-pg / better-sqlite3 / pg, the audit
 *   logging         the log line formatting (kv) and its write (the whole stack under it)
 *   metrics         src/server/metrics.ts
 *   GC              (garbage collector)
 *   other           the rest (service glue, promises, timers, rate limiter, random bytes)
 *
 * Frames of the bundle are mapped back to their source module through the `// src/…` markers
 * esbuild writes at each module's start: DIR/bootkey.js (the copy bench/server.ts makes of the
 * bundle it ran), else --bundle FILE, else dist/bootkey.js.
 */
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}
interface Window {
  system: string;
  concurrency: number;
  startUs: number;
  endUs: number;
  releases: number;
  cpuMsPerRelease: number;
}

export const CATEGORIES = ['TLS + sockets', 'CBOR', 'quote verify', 'log parse', 'replay', 'policy', 'sealing', 'store', 'logging', 'metrics', 'GC', 'other'] as const;
export type Category = (typeof CATEGORIES)[number];

/** Line → module of an esbuild bundle (its `// path` markers). */
function bundleModules(file: string): (line: number) => string {
  const starts: [number, string][] = [];
  readFileSync(file, 'utf8').split('\n').forEach((l, i) => {
    // "// src/x.ts", "// node_modules/p/x.js", or "// ../main/node_modules/p/x.js" (a symlinked node_modules)
    const m = /^\/\/ (?:\S*?\/)?((?:src|node_modules)\/\S+)$/.exec(l);
    if (m) starts.push([i, m[1].replace(/^.*?node_modules\//, 'node_modules/')]);
  });
  return (line) => {
    let lo = 0, hi = starts.length - 1, best = '';
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid][0] <= line) {
        best = starts[mid][1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  };
}

const OPS: [RegExp, Category][] = [
  [/^(verifyQuoteOnly|verifyQuote|quotePcrDigest|verifySignature|parseAttest|unmarshalAttest)$/, 'quote verify'],
  [/^(parseEventLog|parseLog)$/, 'log parse'],
  [/^(replay|bindLogToQuote|checkReplay|replayEvents)$/, 'replay'],
  [/^(checkPolicy|parsePolicy|evaluateBoot|effective|effectivePolicy|requiredSelection|requiredPcrs|compiledPolicy|policyFor)$/, 'policy'],
  [/^(createImportBlob|makeCredential|finish|policyPCRDigest)$/, 'sealing'],
  [/^(kv|logLine)$/, 'logging'],
];

function isLogging(f: CallFrame, mod: string): boolean {
  return (mod === 'src/cli/server.ts' && f.functionName === 'log') || mod === 'src/server/logwriter.ts' || /^(kv|logLine)$/.test(f.functionName);
}

export function categorise(frame: CallFrame, mod: string): Category | undefined {
  const fn = frame.functionName;
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'TLS + sockets';
  const url = frame.url;
  if (/^node:(_tls|tls|net|internal\/(stream_base_commons|streams|net|tls))/.test(url)) return 'TLS + sockets';
  if (mod.startsWith('node_modules/cbor-x') || /^src\/protocol\//.test(mod)) return 'CBOR';
  if (/^src\/server\/store-(sqlite|pg|rows)\.ts$/.test(mod) || mod.startsWith('node_modules/better-sqlite3') || mod.startsWith('node_modules/pg')) return 'store';
  if (mod === 'src/server/metrics.ts') return 'metrics';
  if (mod === 'src/server/secrets.ts' && /^(open|seal)$/.test(fn)) return 'sealing';
  if (mod === 'src/server/service.ts' && fn === 'audit') return 'store';
  if (mod === 'src/cli/server.ts' && fn === 'log') return 'logging';
  if (/^src\/measuredboot\/(policy|policy-load|verdict|staging)\.ts$/.test(mod) || mod === 'src/server/staging.ts') return 'policy';
  if (/^src\/measuredboot\/(eventlog|events|reader|efi|devicepath|cmdline|eventtypes)\.ts$/.test(mod)) return 'log parse';
  if (/^src\/measuredboot\/(replay|trusted)\.ts$/.test(mod)) return 'replay';
  if (mod === 'src/tpm/duplicate.ts' || mod === 'src/tpm/credential.ts' || mod === 'src/tpm/policydigest.ts') return 'sealing';
  if (mod === 'src/tpm/quote.ts') return 'quote verify';
  for (const [re, c] of OPS) if (re.test(fn)) return c;
  return undefined;
}

export interface Summary {
  file: string;
  window?: Window;
  releases: number;
  sampledMs: number;
  procMsPerRelease?: number;
  rows: { category: Category; ms: number; share: number }[];
  top: { fn: string; mod: string; ms: number }[];
}

export function summarise(files: string[], o: { window?: Window; releases?: number; bundle?: string } = {}): Summary {
  const ms = new Map<Category, number>();
  const self = new Map<string, number>();
  let sampled = 0;
  // one profile per process (a --workers N server: the primary and each worker), summed
  for (const file of files) sampled += addProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, o, ms, self);
  const releases = o.window?.releases ?? o.releases ?? 1;
  // ms per release: share × /proc CPU per release when the window says it, else sampled time
  const scale = o.window ? o.window.cpuMsPerRelease / Math.max(sampled, 1e-9) : 1 / releases;
  const rows: Summary['rows'] = CATEGORIES.map((c) => ({ category: c, ms: (ms.get(c) ?? 0) * scale, share: (ms.get(c) ?? 0) / Math.max(sampled, 1e-9) }));
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => ({ fn: k.split('\t')[0], mod: k.split('\t')[1], ms: v * scale }));
  return { file: files.join(', '), window: o.window, releases, sampledMs: sampled, procMsPerRelease: o.window?.cpuMsPerRelease, rows, top };
}

function addProfile(p: Profile, o: { window?: Window; bundle?: string }, ms: Map<Category, number>, self: Map<string, number>): number {
  const byId = new Map<number, ProfNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const modOf = o.bundle && existsSync(o.bundle) ? bundleModules(o.bundle) : () => '';
  const moduleOf = (f: CallFrame): string => {
    if (/bootkey\.js$|bootkey-linux-x64$/.test(f.url) || f.url === '') return f.url === '' ? '' : modOf(f.lineNumber);
    const m = /\/((?:src|node_modules)\/.*)$/.exec(f.url.replace(/^file:\/\//, ''));
    return m ? m[1].replace(/^.*node_modules\//, 'node_modules/') : f.url;
  };
  const catOf = new Map<number, Category>();
  const leafOf = new Map<number, string>();
  const cat = (id: number): Category => {
    const hit = catOf.get(id);
    if (hit) return hit;
    // logging owns its whole stack (the write under it is a socket or pipe write); otherwise the
    // deepest operation frame: walk from the leaf towards the root, first match wins
    let c: Category | undefined;
    for (let x: number | undefined = id; x !== undefined && !c; x = parent.get(x)) {
      const f = byId.get(x)!.callFrame;
      if (isLogging(f, moduleOf(f))) c = 'logging';
    }
    for (let x: number | undefined = id; x !== undefined && !c; x = parent.get(x)) {
      const f = byId.get(x)!.callFrame;
      c = categorise(f, moduleOf(f));
    }
    const r = c ?? 'other';
    catOf.set(id, r);
    return r;
  };
  let t = p.startTime;
  let sampled = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (o.window && (t < o.window.startUs || t > o.window.endUs)) continue;
    const node = byId.get(p.samples[i])!;
    if (node.callFrame.functionName === '(idle)') continue;
    // a sample's time is the delta to the next sample
    const d = (p.timeDeltas[i + 1] ?? p.timeDeltas[i]) / 1000;
    sampled += d;
    const c = cat(node.id);
    ms.set(c, (ms.get(c) ?? 0) + d);
    let key = leafOf.get(node.id);
    if (!key) {
      const f = node.callFrame;
      key = `${f.functionName || '(anonymous)'}\t${moduleOf(f) || f.url}`;
      leafOf.set(node.id, key);
    }
    self.set(key, (self.get(key) ?? 0) + d);
  }
  return sampled;
}

function main(): void {
  const argv = process.argv.slice(2);
  const target = argv.find((a, i) => !a.startsWith('--') && !['--level', '--bundle'].includes(argv[i - 1]));
  if (!target) {
    console.error('usage: bench/profile.ts DIR|FILE.cpuprofile [--level C] [--json]');
    process.exit(2);
  }
  const li = argv.indexOf('--level');
  const level = li >= 0 ? Number(argv[li + 1]) : 16;
  let files = [target];
  let window: Window | undefined;
  let server = '';
  if (statSync(target).isDirectory()) {
    const wf = join(target, 'windows.json');
    const w = existsSync(wf) ? (JSON.parse(readFileSync(wf, 'utf8')) as { server: string; pid: number; windows: Window[] }) : undefined;
    // every process of the profiled server (primary and workers: the windows say when)
    files = readdirSync(target).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(target, f));
    if (!files.length) throw new Error(`no .cpuprofile in ${target}`);
    window = w?.windows.find((x) => x.concurrency === level);
    if (w && !window) throw new Error(`no window for c=${level} in ${wf} (levels ${w.windows.map((x) => x.concurrency).join(',')})`);
    server = w?.server ?? '';
  }
  // the bundle the profiled server ran (bench/server.ts copies it beside the profile)
  const bi = argv.indexOf('--bundle');
  const beside = statSync(target).isDirectory() ? join(target, 'bootkey.js') : '';
  const bundle = bi >= 0 ? argv[bi + 1] : beside && existsSync(beside) ? beside : fileURLToPath(new URL('../dist/bootkey.js', import.meta.url));
  const s = summarise(files, { window, bundle });
  if (argv.includes('--json')) {
    console.log(JSON.stringify(s));
    return;
  }
  console.log(`${files.map((f) => basename(f)).join(' + ')}${server ? ` (${server})` : ''}${window ? `, c=${window.concurrency}: ${window.releases} releases, server CPU ${window.cpuMsPerRelease.toFixed(3)} ms/release (/proc)` : ''}`);
  console.log('');
  console.log('| category | ms per release | share of main thread |');
  console.log('|---|--:|--:|');
  for (const r of s.rows) console.log(`| ${r.category} | ${r.ms.toFixed(3)} | ${Number.isNaN(r.share) ? '-' : (100 * r.share).toFixed(1) + ' %'} |`);
  console.log(`| **total** | **${(s.procMsPerRelease ?? s.sampledMs / s.releases).toFixed(3)}** | |`);
  console.log('');
  console.log('heaviest functions (self time, ms per release):');
  for (const t of s.top) console.log(`  ${t.ms.toFixed(4)}  ${t.fn}  ${t.mod}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
