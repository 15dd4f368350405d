/**
 * Crash safety: a `bootkey server` child process is SIGKILLed in the middle of enrolments and
 * releases, 5 rounds. Afterwards the database is not corrupt (the server restarts and serves),
 * no machine is half-enrolled (a pending one is never released to; the failed enrolment left no
 * keyslot or token on its image), and every completed enrolment still unlocks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { tempDir, serverState, luksImage, machine, enrollMachine, unlockImage, refused, admin, metadata, fails, newEnrolToken, ROOT, type TestServer } from './helpers.ts';
import { withServer } from '../../src/client/connect.ts';

const tmp = tempDir('crash');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function spawnServer(state: string, port: number): Promise<ChildProcess> {
  // The same port on every restart (the token holds it): wait for THIS process's
  // event=listening line, so that another program on the port fails loudly instead of passing.
  const c = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'server', '--state', state, '--listen', `127.0.0.1:${port}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  c.stdout!.on('data', (b: Buffer) => { if (out.length < 65536) out += b.toString(); });
  c.stderr!.on('data', (b: Buffer) => { if (out.length < 65536) out += b.toString(); });
  for (let i = 0; i < 300; i++) {
    if (new RegExp(`event=listening .*port=${port}\\b`).test(out)) {
      c.stdout!.resume();
      c.stderr!.resume();
      return c;
    }
    if (c.exitCode !== null) throw new Error(`bootkey server exited with ${c.exitCode} instead of listening on ${port}: ${out.trim().split('\n').slice(-3).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  c.kill('SIGKILL');
  throw new Error(`bootkey server did not report listening on ${port}: ${out.slice(-500)}`);
}

function sigkill(c: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (c.exitCode !== null || c.signalCode !== null) return r();
    c.once('exit', () => r());
    c.kill('SIGKILL');
  });
}

test.after(() => tmp.cleanup());

test('SIGKILL during enrolments and releases, 5 rounds: DB intact, nothing half-enrolled, completed enrolments unlock', async () => {
  const state = await serverState(tmp.dir);
  const port = await freePort();
  const srv: TestServer = {
    url: `https://127.0.0.1:${port}`, port, state, ca: readFileSync(join(state, 'ca.pem'), 'utf8'),
    adminToken: readFileSync(join(state, 'admin.token'), 'utf8').trim(), enrolToken: '', close: async () => undefined,
  };
  // One machine (a blank swtpm: its own seeds, so its own EK) per round: the server keeps one
  // machine per EK, and every completed enrolment must still unlock at the end.
  const machines: Awaited<ReturnType<typeof machine>>[] = [];
  let child = await spawnServer(state, port);
  srv.enrolToken = await newEnrolToken(srv, 100);
  const completed: { m: Awaited<ReturnType<typeof machine>>; image: string }[] = [];
  const steps = ['accepted', 'keyslot', 'token', 'verified', 'accepted'] as const;
  try {
    for (let round = 0; round < 5; round++) {
      const m = await machine(undefined, { blank: true });
      machines.push(m);
      // a complete enrolment
      const ok = await luksImage(tmp.dir, `ok-${round}.img`);
      await enrollMachine(srv, m, ok, { machineId: `crash-ok-${round}` });
      completed.push({ m, image: ok.image });
      const victim = m;

      // an enrolment during which the server is killed
      const img = await luksImage(tmp.dir, `killed-${round}.img`);
      const before = await metadata(img.image);
      const step = steps[round];
      await fails(enrollMachine(srv, victim, img, {
        machineId: `crash-killed-${round}`, client: { deadlineMs: 3000, maxAttempts: 2, backoffMs: 50 },
        hook: async (s) => { if (s === step) await sigkill(child); },
      }), 'UNREACHABLE');
      assert.equal(await metadata(img.image), before, `round ${round}: the image is unchanged (killed after "${step}")`);
      child = await spawnServer(state, port);

      // a release during which the server is killed (before the quote reaches it)
      await m.reboot();
      await fails(unlockImage(m, ok.image, {
        deadlineMs: 1500, client: { backoffMs: 50 },
        tamper: async (f) => { await sigkill(child); return f; },
      }), 'UNREACHABLE');
      child = await spawnServer(state, port);
    }

    // the database serves; pending (never committed) machines are not released to
    const list = (await admin(srv, 'list')) as { id: string; machineId: string; state: string }[];
    for (let round = 0; round < 5; round++) {
      const k = list.filter((x) => x.machineId === `crash-killed-${round}`);
      assert.ok(k.every((x) => x.state !== 'active'), `crash-killed-${round} not active: ${JSON.stringify(k)}`);
      for (const x of k) {
        await refused(withServer({ servers: [srv.url], ca: srv.ca }, (s) => s.request({ t: 'attest-begin', machine: x.id, akName: Buffer.alloc(34), ekName: Buffer.alloc(34), releasedPcr: 15 }, ['attest-challenge'])), /^(PENDING|UNKNOWN_MACHINE)$/);
      }
    }
    // every completed enrolment is active and unlocks (each machine after a fresh boot)
    assert.is(completed.length, 5);
    for (let round = 0; round < 5; round++) {
      assert.ok(list.some((x) => x.machineId === `crash-ok-${round}` && x.state === 'active'), `crash-ok-${round} is active`);
      const { m, image } = completed[round];
      await m.reboot();
      assert.ok(await unlockImage(m, image), `crash-ok-${round} unlocks`);
    }
  } finally {
    await sigkill(child);
    for (const m of machines) await m.stop();
  }
});

test.run();
