/**
 * End-to-end harness: a real key-release server (startServer, state from `bootkey server
 * init`), real swtpms whose PCRs are replayed from our own OVMF event logs, real cryptsetup on
 * LUKS2 image files, and the real client flows (enroll/unlock) in process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as assert from 'uvu/assert';
import { startSwtpm } from '../helpers/swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { replayLogIntoTpm } from '../../scripts/replay-log.ts';
import { startServer } from '../../src/server/server.ts';
import { initState } from '../../src/server/pki.ts';
import { formatImage, readMetadata, type Luks2Metadata } from '../../src/luks/cryptsetup.ts';
import { enroll, type EnrollOptions, type EnrollResult } from '../../src/enroll/enroll.ts';
import { unlock, type UnlockOptions, type UnlockResult } from '../../src/initrd/unlock.ts';
import { ClientError, withServer } from '../../src/client/connect.ts';

const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, '../..');
export const LOGS = join(ROOT, 'test/data/qemu');
export const log = (name: string): Buffer => readFileSync(join(LOGS, `${name}.bin`));
export const GOOD = 'uki-sb-on';

/** Runs the bootkey CLI from source; returns status, stdout, stderr. */
export async function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** A temp dir removed by cleanup(). */
export function tempDir(prefix: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `bootkey-e2e-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A server state dir made by initState (what `bootkey server init` runs; once per process, copied per server). */
let stateTemplate: string | undefined;
export async function serverState(dir: string): Promise<string> {
  const state = mkdtempSync(join(dir, 'server-'));
  rmSync(state, { recursive: true });
  if (!stateTemplate) {
    const t = mkdtempSync(join(tmpdir(), 'bootkey-e2e-state-'));
    rmSync(t, { recursive: true });
    await initState(t);
    stateTemplate = t;
  }
  await run('cp', ['-a', stateTemplate, state]);
  rmSync(join(state, 'bootkey.db'), { force: true });
  return state;
}

export interface TestServer {
  url: string;
  port: number;
  state: string;
  ca: string;
  adminToken: string;
  /** An enrolment token (1000 uses) once a server runs (testServer sets it; see newEnrolToken). */
  enrolToken: string;
  close(): Promise<void>;
}

export async function testServer(dir: string, opts: { nonceTtlMs?: number; releasedPcr?: number; state?: string; log?: (line: string) => void } = {}): Promise<TestServer> {
  const state = opts.state ?? (await serverState(dir));
  const lots = { burst: 10_000, perSecond: 10_000 };
  const s = await startServer({
    stateDir: state, listen: '127.0.0.1:0', nonceTtlMs: opts.nonceTtlMs, releasedPcr: opts.releasedPcr, log: opts.log ?? (() => undefined),
    rateLimit: { perPeer: lots, perMachine: lots },
  });
  const srv: TestServer = {
    url: `https://127.0.0.1:${s.port}`, port: s.port, state,
    ca: readFileSync(join(state, 'ca.pem'), 'utf8'),
    adminToken: readFileSync(join(state, 'admin.token'), 'utf8').trim(),
    enrolToken: '',
    close: () => s.close(),
  };
  srv.enrolToken = await newEnrolToken(srv, 1000);
  return srv;
}

/** Creates an enrolment token through the admin interface (the admin token stays in the test). */
export async function newEnrolToken(srv: Pick<TestServer, 'url' | 'ca' | 'adminToken'>, uses = 1, extra: { ttl?: number; comment?: string } = {}): Promise<string> {
  return ((await admin(srv, 'token-create', undefined, { uses, ...extra })) as { token: string }).token;
}

/** A 20 MiB LUKS2 image (PBKDF2, 1000 iterations) with passphrase file `pass`. */
export async function luksImage(dir: string, name = 'disk.img'): Promise<{ image: string; pass: string }> {
  const image = join(dir, name);
  const pass = join(dir, `${name}.pass`);
  writeFileSync(pass, 'initial passphrase');
  writeFileSync(image, '');
  truncateSync(image, 20 * 1024 * 1024);
  await formatImage(image, pass);
  return { image, pass };
}

/**
 * A swtpm for e2e tests. test/helpers/swtpm.ts gives the provisioned state (EK certificates);
 * the process is run here because that helper's restart() leaves a 2 s SIGKILL timer aimed at
 * its `child` variable, which by then is the NEW process (reported to the lead).
 */
export interface E2eTpm {
  tcti: string;
  port: number;
  stateDir: string;
  restart(): Promise<void>;
  /** A power loss: SIGKILL, no TPM2_Shutdown, then a new swtpm on the same state (startup-clear). */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  for (;;) {
    const a = net.createServer();
    await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
    const port = (a.address() as net.AddressInfo).port;
    await new Promise((r) => a.close(r));
    if (port >= 65535) continue;
    const b = net.createServer();
    const ok = await new Promise<boolean>((r) => { b.once('error', () => r(false)); b.listen(port + 1, '127.0.0.1', () => r(true)); });
    if (ok) {
      await new Promise((r) => b.close(r));
      return port;
    }
  }
}

/** `blank`: a fresh TPM with its own seeds (another EK and AK; no EK certificate). */
export async function e2eTpm(opts: { blank?: boolean } = {}): Promise<E2eTpm> {
  const stateDir = mkdtempSync(join(tmpdir(), 'bootkey-e2e-tpm-'));
  // startSwtpm copies the provisioned template (made once per process): take that copy
  const tmpl = await startSwtpm({ blank: opts.blank });
  // Stop it first: a running swtpm may be writing (and renaming) TMP2-00.permall mid-copy.
  await tmpl.halt();
  await run('cp', ['-a', `${tmpl.stateDir}/.`, stateDir]);
  await tmpl.stop();
  let child: ChildProcess | undefined;
  const h: E2eTpm = {
    tcti: '', port: 0, stateDir,
    async restart() {
      await kill();
      await launch();
    },
    async crash() {
      const c = child;
      child = undefined;
      if (c && c.exitCode === null && c.signalCode === null) {
        await new Promise<void>((resolve) => {
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        });
      }
      await launch();
    },
    async stop() {
      await kill();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 2000);
      c.once('exit', () => { clearTimeout(t); resolve(); });
      c.kill('SIGTERM');
    });
  };
  const launch = async (): Promise<void> => {
    const port = await freePort();
    const c = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${stateDir}`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear', '--log', 'level=0'], { stdio: 'ignore' });
    child = c;
    h.port = port;
    h.tcti = `swtpm:host=127.0.0.1,port=${port}`;
  };
  await launch();
  return h;
}

/**
 * Tpm.open, retried briefly: right after a (re)start swtpm may not listen yet.
 */
export async function openTpm(sw: { tcti: string }): Promise<Tpm> {
  for (let i = 0; ; i++) {
    try {
      return await Tpm.open(sw.tcti);
    } catch (e) {
      if (i >= 100 || !/ECONNREFUSED|ECONNRESET|closed/.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * TPM2_Shutdown(TPM_SU_CLEAR), as the kernel sends before a reboot: without it the next
 * TPM2_Startup counts a non-orderly shutdown as a dictionary-attack failure, and after a few
 * "reboots" the AK (DA-protected) answers TPM_RC_LOCKOUT.
 */
export async function shutdown(tpm: Tpm): Promise<void> {
  const cmd = Buffer.from('80010000000c000001450000', 'hex');
  const rsp = await tpm.transport.send(cmd);
  const rc = rsp.readUInt32BE(6);
  if (rc !== 0) throw new Error(`TPM2_Shutdown: rc 0x${rc.toString(16)}`);
}

/** A "machine": a swtpm whose PCRs were extended from an event log, as after that boot. */
export interface Machine {
  sw: E2eTpm;
  tpm: Tpm;
  eventLog: Buffer;
  /** Reboot into another (or the same) log: restart swtpm (PCRs reset), replay. */
  reboot(logName?: string): Promise<void>;
  /** Power loss and boot again: no TPM2_Shutdown (a non-orderly shutdown), then replay the log. */
  crash(logName?: string): Promise<void>;
  /** swtpm serves one client at a time: close our connection while a child process uses the TPM. */
  detach(): Promise<void>;
  attach(): Promise<void>;
  stop(): Promise<void>;
}

/** Every non-blank machine comes from ONE provisioned template: they share seeds (same EK, same AK); use `blank` for another TPM. */
export async function machine(logName = GOOD, opts: { blank?: boolean } = {}): Promise<Machine> {
  const sw = await e2eTpm(opts);
  const m: Machine = {
    sw, tpm: await openTpm(sw), eventLog: log(logName),
    async reboot(name = logName) {
      await shutdown(m.tpm);
      await m.tpm.close();
      await sw.restart();
      m.tpm = await openTpm(sw);
      m.eventLog = log(name);
      await replayLogIntoTpm(m.tpm, m.eventLog);
    },
    async crash(name = logName) {
      await m.tpm.close();
      await sw.crash();
      m.tpm = await openTpm(sw);
      m.eventLog = log(name);
      await replayLogIntoTpm(m.tpm, m.eventLog);
    },
    async detach() {
      await m.tpm.close();
    },
    async attach() {
      m.tpm = await openTpm(sw);
    },
    async stop() {
      await m.tpm.close().catch(() => undefined);
      await sw.stop();
    },
  };
  await replayLogIntoTpm(m.tpm, m.eventLog);
  return m;
}

let machineCounter = 0;

export async function enrollMachine(
  srv: TestServer, m: Machine, img: { image: string; pass: string }, extra: Partial<EnrollOptions> = {},
): Promise<EnrollResult> {
  return enroll({
    servers: [srv.url], ca: srv.ca, enrolToken: srv.enrolToken, tpm: m.tpm, device: img.image, keyFile: img.pass,
    eventLog: m.eventLog, machineId: `e2e-${process.pid}-${++machineCounter}`, hostname: 'e2e', client: { deadlineMs: 30_000 }, ...extra,
  });
}

export function unlockImage(m: Machine, image: string, extra: Partial<UnlockOptions> = {}): Promise<UnlockResult> {
  return unlock({ device: image, tpm: m.tpm, eventLog: m.eventLog, mode: 'test', deadlineMs: 20_000, ...extra });
}

/** Expects a ClientError REFUSED with that server code; returns it. */
export async function refused(p: Promise<unknown>, serverCode: string | RegExp): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ClientError) || e.code !== 'REFUSED') throw e;
    if (typeof serverCode === 'string') assert.is(e.serverCode, serverCode, e.message);
    else assert.match(e.serverCode ?? '', serverCode, e.message);
    return e;
  }
  assert.unreachable(`expected a refusal ${serverCode}`);
  throw new Error();
}

/** Expects an error with that class name and code. */
export async function fails(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  try {
    await p;
  } catch (e) {
    assert.is((e as { code?: string }).code, code, (e as Error).message);
    return e as Error & { code: string };
  }
  assert.unreachable(`expected an error ${code}`);
  throw new Error();
}

/** An admin operation; returns the parsed JSON result. */
export async function admin(srv: Pick<TestServer, 'url' | 'ca' | 'adminToken'>, op: string, machineId?: string, fields: { uses?: number; ttl?: number; comment?: string; policy?: string; allowPermissive?: boolean } = {}): Promise<unknown> {
  const r = await withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000 }, (s) => s.request({ t: 'admin', adminToken: srv.adminToken, op, machine: machineId, ...fields }, ['admin-result']));
  return JSON.parse(r.json);
}

export function metadata(image: string): Promise<Luks2Metadata> {
  return readMetadata(image);
}
