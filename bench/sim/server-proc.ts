/**
 * A `bootkey server` child process as it ships: the bundle `node dist/bootkey.js server --state
 * DIR --listen 127.0.0.1:0 [--store URL]` (built by scripts/build.mjs when missing or older than
 * src/), or the single executable dist/bootkey-linux-x64 (`kind: 'sea'`); `kind: 'tsx'` (the
 * sources through the tsx loader) only to compare. Its port is read from the `event=listening`
 * log line, its CPU time and memory from /proc/PID/stat and /proc/PID/status.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BUNDLE = join(ROOT, 'dist', 'bootkey.js');
export const SEA = join(ROOT, 'dist', 'bootkey-linux-x64');

/** How the server runs: the bundle (default), the single executable, or the sources via tsx. */
export type ServerKind = 'bundle' | 'sea' | 'tsx';

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Builds dist/bootkey.js (scripts/build.mjs) when it is missing or older than any file in src/,
 * so that a benchmark or test never runs a stale bundle. Returns a description for the output.
 */
export function ensureBundle(): string {
  const stale = !existsSync(BUNDLE) || statSync(BUNDLE).mtimeMs < newestMtime(join(ROOT, 'src'));
  if (stale) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  return `${stale ? 'rebuilt' : 'up to date'} dist/bootkey.js (${(statSync(BUNDLE).size / 1e6).toFixed(1)} MB)`;
}

/** The command line that starts `bootkey` of this kind (program, leading arguments). */
export function serverCommand(kind: ServerKind, nodeFlags: string[] = []): { cmd: string; args: string[] } {
  if (kind === 'sea') {
    if (!existsSync(SEA)) throw new Error(`${SEA} is missing: run node scripts/build-sea.mjs`);
    // A single executable takes Node's own flags from NODE_OPTIONS only (see spawnServer).
    return { cmd: SEA, args: [] };
  }
  if (kind === 'tsx') return { cmd: process.execPath, args: [...nodeFlags, '--import', 'tsx', 'src/cli/main.ts'] };
  return { cmd: process.execPath, args: [...nodeFlags, BUNDLE] };
}
const CLK_TCK = 100; // getconf CLK_TCK on Linux

export interface ProcStats {
  /** user + system CPU seconds. */
  cpuS: number;
  /** Current and peak resident set size, MiB. */
  rssMb: number;
  peakRssMb: number;
}

export function procStats(pid: number): ProcStats {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields after the command: state(3) ... utime(14) stime(15) → indices 11, 12 here
  const cpuS = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { cpuS, rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 };
}

/**
 * Every server child still running. A child nobody stops (a set-up that failed half-way) must
 * neither outlive this process nor keep it alive: the children are unref'd, and SIGKILLed when
 * this process exits. (The storm suite's "hang in set-up, no CPU, no sockets" was exactly that:
 * the second server failed to start, the first was never recorded for the after-hook, uvu
 * swallowed the before-hook's error, and the first server's stdio pipes kept uvu alive forever.)
 */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** The process and its descendants (a `--workers N` server: the primary and its workers). */
export function processTree(pid: number): number[] {
  const parent = new Map<number, number[]>();
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const pp = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      const l = parent.get(pp);
      if (l) l.push(Number(p));
      else parent.set(pp, [Number(p)]);
    } catch {
      // gone
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(parent.get(out[i]) ?? []));
  return out;
}

/** CPU and memory summed over a process tree (peakRssMb: the sum of each process's VmHWM, an upper bound of the tree's peak). */
export function treeStats(pids: number[]): ProcStats {
  const t: ProcStats = { cpuS: 0, rssMb: 0, peakRssMb: 0 };
  for (const p of pids) {
    try {
      const s = procStats(p);
      t.cpuS += s.cpuS;
      t.rssMb += s.rssMb;
      t.peakRssMb += s.peakRssMb;
    } catch {
      // a worker that ended: its CPU is lost (rare: only a crash)
    }
  }
  return t;
}

export interface ServerProc {
  proc: ChildProcess;
  pid: number;
  port: number;
  /** Log lines (the last 2000). */
  lines: string[];
  stats(): ProcStats;
  /** SIGTERM and wait for the exit (SIGKILL after 8 s). */
  stop(): Promise<void>;
  /** SIGKILL, no goodbye. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

export async function spawnServer(o: {
  stateDir: string; store?: string; listen?: string; env?: Record<string, string>; preload?: string[];
  /** Default 'bundle' (call ensureBundle() first). */
  kind?: ServerKind;
  /** Extra Node flags (e.g. --cpu-prof); for the single executable they go in NODE_OPTIONS. */
  nodeFlags?: string[];
  /** Extra `bootkey server` arguments. */
  args?: string[];
  /** `--workers N`; default 1 (one process). Stats then sum the primary and its workers. */
  workers?: number;
}): Promise<ServerProc> {
  const workers = o.workers ?? 1;
  const kind = o.kind ?? 'bundle';
  const nodeFlags = [...(o.preload ?? []).flatMap((p) => ['--import', p]), ...(o.nodeFlags ?? [])];
  const { cmd, args: lead } = serverCommand(kind, nodeFlags);
  const args = [...lead, 'server', '--state', o.stateDir, '--listen', o.listen ?? '127.0.0.1:0', '--workers', String(workers), ...(o.args ?? [])];
  if (o.store) args.push('--store', o.store);
  const env: Record<string, string | undefined> = { ...process.env, ...o.env };
  // The children must not inherit this process's loader (tsx) through NODE_OPTIONS.
  const inherited = (process.env.NODE_OPTIONS ?? '').replace(/--(import|loader|require)[= ]\S*tsx\S*/g, '').trim();
  env.NODE_OPTIONS = [inherited, ...(kind === 'sea' ? nodeFlags : [])].filter(Boolean).join(' ') || undefined;
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  // neither the child nor its pipes keep this process alive (see `live`)
  proc.unref();
  (proc.stdout as unknown as { unref(): void }).unref();
  (proc.stderr as unknown as { unref(): void }).unref();
  const lines: string[] = [];
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => {
      // Never leave a child behind: its stdio pipes would keep this process alive.
      proc.kill('SIGKILL');
      reject(new Error(`server did not start within 30 s:\n${lines.join('\n')}`));
    }, 30_000);
    const onData = (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(l);
        if (lines.length > 2000) lines.shift();
        // with workers, the primary's line (all of them listen) names the port and `workers=N`
        const m = (workers > 1 ? /^event=listening host=\S+ port=(\d+) workers=/ : /event=listening .*port=(\d+)/).exec(l);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
    void exited.then((c) => {
      clearTimeout(t);
      reject(new Error(`server exited (${c}) before listening:\n${lines.join('\n')}`));
    });
  });
  const pid = proc.pid!;
  let tree = { at: 0, pids: [pid] };
  return {
    proc, pid, port, lines, exited,
    stats: () => {
      if (workers === 1) return procStats(pid);
      // the tree changes only when a worker is restarted: look again at most once a second
      if (Date.now() - tree.at > 1000) tree = { at: Date.now(), pids: processTree(pid) };
      return treeStats(tree.pids);
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.ref(); // wait for it
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(t);
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.ref();
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
