/**
 * A `bootkey server` child process (the real CLI: `node --import tsx src/cli/main.ts server
 * --state DIR --listen 127.0.0.1:0 [--store URL]`, or with `bundle: true` the server as it ships:
 * `node dist/bootkey.js server ...`, built by `node scripts/build.mjs`), its port read from the `event=listening`
 * log line, and its CPU time and memory read from /proc/PID/stat and /proc/PID/status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
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

export async function spawnServer(o: { stateDir: string; store?: string; listen?: string; env?: Record<string, string>; preload?: string[]; bundle?: boolean }): Promise<ServerProc> {
  const entry = o.bundle ? ['dist/bootkey.js'] : ['--import', 'tsx', 'src/cli/main.ts'];
  const args = [...(o.preload ?? []).flatMap((p) => ['--import', p]), ...entry, 'server', '--state', o.stateDir, '--listen', o.listen ?? '127.0.0.1:0'];
  if (o.store) args.push('--store', o.store);
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  const lines: string[] = [];
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let buf = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start within 30 s:\n${lines.join('\n')}`)), 30_000);
    const onData = (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(l);
        if (lines.length > 2000) lines.shift();
        const m = /event=listening .*port=(\d+)/.exec(l);
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
  return {
    proc, pid, port, lines, exited,
    stats: () => procStats(pid),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(t);
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
