/**
 * The initrd agent end to end without QEMU: real server, a swtpm "booted" into an OVMF log,
 * an enrolled LUKS2 image, and an ask file whose Socket= is an AF_UNIX datagram socket (a python3
 * listener standing in for systemd-cryptsetup). The agent must answer with "+" + the LUKS key via
 * systemd-reply-password, and the key must open the image; in the same boot it must not get the
 * key again (released PCR extended → ALREADY_RELEASED on the console line). The boot in QEMU with
 * the real systemd-cryptsetup is qemu-tests/run-tests.sh.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, testServer, luksImage, machine, enrollMachine, type TestServer, type Machine } from '../e2e/helpers.ts';
import { runAgent, replyPasswordPath } from '../../src/initrd/agent.ts';
import { testKey } from '../../src/luks/cryptsetup.ts';

const tmp = tempDir('agent-e2e');
let srv: TestServer;
const haveReply = existsSync(replyPasswordPath());

test.before(async () => {
  srv = await testServer(tmp.dir);
});
test.after(async () => {
  await srv?.close();
  tmp.cleanup();
});

/** A one-datagram listener; resolves with what it received (or '' on timeout). */
function listener(sock: string, timeoutS: number): { ready: Promise<void>; got: Promise<Buffer> } {
  const py = `import socket,sys,os
s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(float(sys.argv[2]))
print('ready', flush=True)
try: sys.stdout.buffer.write(s.recv(4096))
except socket.timeout: pass`;
  const child = spawn(existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', ['-c', py, sock, String(timeoutS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  // "ready\n" may arrive in several chunks (PYTHONUNBUFFERED=1 makes print() write "ready" and
  // "\n" separately): accumulate until the marker is complete.
  let head = Buffer.alloc(0);
  let isReady = false;
  const chunks: Buffer[] = [];
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  child.stdout.on('data', (b: Buffer) => {
    if (!isReady) {
      head = Buffer.concat([head, b]);
      const i = head.indexOf('ready\n');
      if (i < 0) return;
      isReady = true;
      ready();
      b = head.subarray(i + 6);
    }
    chunks.push(b);
  });
  const got = new Promise<Buffer>((r) => child.on('close', () => r(Buffer.concat(chunks))));
  return { ready: readyP, got };
}

function ask(dir: string, name: string, sock: string, device: string): void {
  writeFileSync(join(dir, name), `[Ask]\nPID=1\nSocket=${sock}\nAcceptCached=1\nEcho=0\nNotAfter=0\nId=cryptsetup:${device}\nMessage=Please enter passphrase for disk test:\n`);
}

test('agent answers systemd-cryptsetup with the released key; not twice in one boot', async () => {
  if (!haveReply) {
    console.log('  (skipped: no systemd-reply-password)');
    return;
  }
  let m: Machine | undefined;
  try {
    m = await machine();
    const img = await luksImage(tmp.dir, 'agent.img');
    await enrollMachine(srv, m, img);
    const evlog = join(tmp.dir, 'eventlog.bin');
    writeFileSync(evlog, m.eventLog);
    await m.detach(); // swtpm serves one client: the agent opens it itself
    const config = { deadlineS: 20, tpm: m.sw.tcti, eventlog: evlog, disabled: false };
    const askDir = join(tmp.dir, 'ask1');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(askDir);
    const sock = join(askDir, 'sck.1');
    const l = listener(sock, 30);
    await l.ready;
    const lines: string[] = [];
    // started before the question (--wait-first, as the unit at sysinit.target): it waits for it
    const running = runAgent({ dir: askDir, config, log: (x) => lines.push(x), triedFile: join(tmp.dir, 'tried1'), waitFirst: true });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(lines, [], 'nothing to do before the question');
    ask(askDir, 'ask.1', sock, img.image);
    const n = await running;
    const reply = await l.got;
    assert.is(n, 1, lines.join('\n'));
    assert.is(reply[0], 0x2b, 'datagram starts with "+"');
    const key = reply.subarray(1, reply.at(-1) === 0 ? -1 : undefined); // systemd-reply-password sends the NUL too
    assert.is(key.length, 44, 'base64 of 32 bytes');
    assert.ok(await testKey(img.image, key), 'the key opens the image');
    assert.match(lines.join('\n'), /key handed to systemd-cryptsetup in [\d.]+ s/);
    assert.match(lines.join('\n'), /first TPM command at \d+ ms after the process start/);
    assert.match(lines.join('\n'), /phases ms: startup=\d+ token=\d+ tpm=\d+ connect=\d+ begin=\d+ finish=\d+ reply=\d+/);
    assert.not.ok(lines.join('\n').includes(key.toString()), 'the key is never logged');

    // same boot, a fresh agent (another tried file): the server refuses, nothing is sent
    const askDir2 = join(tmp.dir, 'ask2');
    mkdirSync(askDir2);
    const sock2 = join(askDir2, 'sck.2');
    const l2 = listener(sock2, 3);
    await l2.ready;
    ask(askDir2, 'ask.2', sock2, img.image);
    const lines2: string[] = [];
    assert.is(await runAgent({ dir: askDir2, config, log: (x) => lines2.push(x), triedFile: join(tmp.dir, 'tried2') }), 0);
    assert.match(lines2.join('\n'), /REFUSED by .*ALREADY_RELEASED.*use the passphrase prompt/);
    assert.is((await l2.got).length, 0, 'no answer sent');

    // and the first agent's tried file keeps a re-ask in this boot from even trying
    const lines3: string[] = [];
    assert.is(await runAgent({ dir: askDir2, config, log: (x) => lines3.push(x), triedFile: join(tmp.dir, 'tried1') }), 0);
    assert.ok(readFileSync(join(tmp.dir, 'tried1'), 'utf8').includes(img.image));
  } finally {
    await m?.stop();
  }
});

test.run();
