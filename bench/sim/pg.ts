/**
 * A throwaway PostgreSQL for tests and benchmarks, through scripts/pg.sh (loopback, temporary
 * data directory). `startPg()` returns undefined (with the reason) when the server binaries are
 * not installed, so that a suite can skip with a clear message.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PG_SH = fileURLToPath(new URL('../../scripts/pg.sh', import.meta.url));

export interface Pg {
  dir: string;
  url: string;
  stop(): void;
  kill(): void;
  start(): void;
  restart(): void;
  destroy(): void;
}

function sh(args: string[], env: Record<string, string> = {}): string {
  return execFileSync('bash', [PG_SH, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop()!;
}

export function startPg(o: { fsync?: boolean; maxConnections?: number } = {}): Pg | { missing: string } {
  const env: Record<string, string> = { PG_FSYNC: o.fsync === false ? 'off' : 'on', PG_MAX_CONNECTIONS: String(o.maxConnections ?? 300) };
  const dir = mkdtempSync(join(tmpdir(), 'bootkey-pg-'));
  let url: string;
  try {
    url = sh(['start', dir], env);
  } catch (e) {
    const err = e as { status?: number; stderr?: string };
    let log = '';
    try {
      log = readFileSync(join(dir, 'server.log'), 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      // no log
    }
    rmSync(dir, { recursive: true, force: true });
    if (err.status === 127) return { missing: (err.stderr ?? '').trim() || 'PostgreSQL is not installed' };
    throw new Error(`scripts/pg.sh start failed: ${err.stderr ?? String(e)}\n${log}`);
  }
  return {
    dir, url,
    stop: () => void sh(['stop', dir]),
    kill: () => void sh(['kill', dir]),
    start: () => void sh(['start', dir], env),
    restart: () => void sh(['restart', dir], env),
    destroy: () => {
      try {
        sh(['destroy', dir]);
      } catch {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A fresh database on the cluster (so that suites do not share tables). */
export async function createDatabase(url: string, name: string): Promise<string> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name}`);
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(url);
  u.pathname = '/' + name;
  return u.toString();
}

/**
 * CPU seconds of every process of a PostgreSQL cluster: the postmaster and its children
 * (utime + stime), plus the postmaster's cutime + cstime, where backends that exited (a pool
 * closing idle connections) are counted once reaped. 0 when the cluster is gone.
 */
export function pgCpuS(pg: Pg | undefined): number {
  if (!pg) return 0;
  let pid: number;
  try {
    pid = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return 0;
  }
  let total = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(p) === pid) total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
      else if (Number(f[1]) === pid) total += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // gone
    }
  }
  return total;
}
