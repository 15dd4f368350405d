/**
 * Test harness: a real swtpm (Debian package) on free loopback TCP ports (data N, control
 * N+1, as tpm2-tools' swtpm TCTI expects) with a fresh
 * state directory. EK certificates (RSA at 0x01C00002, and ECC at 0x01C0000A) are made
 * once per process by swtpm_setup with swtpm's local CA, then the state is copied for
 * every new instance, so each test gets an identical, fresh TPM quickly.
 *
 *   const tpm = await startSwtpm();   // tpm.tcti === 'swtpm:host=127.0.0.1,port=N'
 *   ...; await tpm.stop();
 *
 * Environment for tpm2-tools: `tpm.env` (TPM2TOOLS_TCTI set).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, cpSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

export interface Swtpm {
  host: string;
  port: number;
  /** tpm2-tools / bootkey spelling: swtpm:host=127.0.0.1,port=N */
  tcti: string;
  /** process.env plus TPM2TOOLS_TCTI for tpm2-tools calls */
  env: NodeJS.ProcessEnv;
  stateDir: string;
  stop(): Promise<void>;
  /** Stops the process and keeps the state directory (to copy it while nothing writes to it). */
  halt(): Promise<void>;
  /** Stops and restarts the swtpm process on the same state (a "reboot": PCRs reset). */
  restart(): Promise<void>;
}

let template: string | undefined;

/**
 * The pristine state, made once per process by swtpm_setup (as root it uses /etc's swtpm
 * config and the local CA under /var/lib/swtpm-localca): an RSA 2048 EK persisted at
 * 0x81010001 with its certificate at NV 0x01C00002, an ECC NIST P-384 EK at 0x81010016
 * with its certificate at NV 0x01C00016 (swtpm 0.7 makes P-384, not the P-256 of
 * 0x01C0000A), a platform certificate, and banks sha1, sha256 and sha384.
 */
function templateState(): string {
  if (template && existsSync(template)) return template;
  const dir = mkdtempSync(join(tmpdir(), 'bootkey-swtpm-template-'));
  execFileSync('swtpm_setup', ['--tpm2', '--tpmstate', dir, '--createek', '--create-ek-cert', '--create-platform-cert',
    '--lock-nvram', '--overwrite', '--pcr-banks', 'sha1,sha256,sha384'], { stdio: 'ignore' });
  template = dir;
  return dir;
}

/** swtpm's local CA (issuer and root), for EK certificate chain checks. */
export const SWTPM_LOCALCA_DIR = '/var/lib/swtpm-localca';

function listen(port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

/** A free port N with N+1 free too: tpm2-tools' swtpm TCTI expects the control port at N+1. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const a = await listen(0);
    if (!a) continue;
    const port = (a.address() as net.AddressInfo).port;
    const b = port < 65535 ? await listen(port + 1) : undefined;
    await new Promise((r) => a.close(r));
    if (b) {
      await new Promise((r) => b.close(r));
      return port;
    }
  }
  throw new Error('no free pair of loopback ports');
}

async function waitForPort(port: number, child: ChildProcess, ms = 10000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`swtpm exited with status ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`swtpm did not listen on port ${port} within ${ms} ms`);
}

export interface SwtpmOptions {
  /** Start from an empty state (no EK certificates, no provisioning): faster to set up. */
  blank?: boolean;
}

export async function startSwtpm(opts: SwtpmOptions = {}): Promise<Swtpm> {
  const stateDir = mkdtempSync(join(tmpdir(), 'bootkey-swtpm-'));
  if (!opts.blank) cpSync(templateState(), stateDir, { recursive: true });
  let child: ChildProcess;
  let port = 0;

  const launch = async (): Promise<void> => {
    port = await freePortPair();
    child = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${stateDir}`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear', '--log', 'level=0'], { stdio: 'ignore' });
    await waitForPort(port, child);
    h.port = port;
    h.tcti = `swtpm:host=127.0.0.1,port=${port}`;
    h.env = { ...process.env, TPM2TOOLS_TCTI: h.tcti };
  };
  /** A clean power-off: TPM2_Shutdown(CLEAR) first, as an OS does on reboot (without it each
   * restart counts as a dictionary-attack failure and the TPM ends in lockout). Needs no other
   * client connected (swtpm serves one connection at a time); failures are ignored. */
  const shutdown = (): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      const done = (): void => { s.destroy(); resolve(); };
      s.setTimeout(2000, done);
      s.once('error', done);
      s.once('data', done);
      s.once('connect', () => s.write(Buffer.from('80010000000c000001450000', 'hex')));
    });
  const kill = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await shutdown();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 2000);
      c.once('exit', () => { clearTimeout(t); resolve(); });
      c.kill('SIGTERM');
    });
  };

  const h: Swtpm = {
    host: '127.0.0.1', port: 0, tcti: '', env: process.env, stateDir,
    async stop() {
      await kill();
      rmSync(stateDir, { recursive: true, force: true });
    },
    async halt() {
      await kill();
    },
    async restart() {
      await kill();
      await launch();
    },
  };
  await launch();
  return h;
}

/** Runs a tpm2-tools command against the swtpm; returns stdout. Throws with stderr on failure. */
export function tpm2(t: Swtpm, tool: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): string {
  try {
    return execFileSync(tool, args, { env: t.env, cwd: opts.cwd, input: opts.input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`${tool} ${args.join(' ')} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}
