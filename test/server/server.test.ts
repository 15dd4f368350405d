/**
 * The TLS front end and `bootkey server init`: file modes, a certificate node:tls accepts with
 * the CA pinned (and nothing else), TLS 1.3 only; garbage, an oversize frame, a wrong protocol
 * version and a slowloris each get a clean error and/or close, and the server still serves the
 * next request; admin auth; the CLI.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import tls from 'node:tls';
import { spawnSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initState } from '../../src/server/pki.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import { adminRequest } from '../../src/server/admin-client.ts';
import { ServerError } from '../../src/server/errors.ts';
import { frame, encodeCbor, Deframer } from '../../src/protocol/codec.ts';
import { parseMessage, encodeMessage, type Message } from '../../src/protocol/messages.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
let dir: string;
let srv: RunningServer;
let ca: Buffer;
let token: string;
const lines: string[] = [];

test.before(async () => {
  dir = join(mkdtempSync(join(tmpdir(), 'bootkey-srv-')), 'state');
  await initState(dir, { sans: ['bootkey.test'] });
  ca = readFileSync(join(dir, 'ca.pem'));
  token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  srv = await startServer({ stateDir: dir, listen: '127.0.0.1:0', messageTimeoutMs: 400, connectionTimeoutMs: 5000, log: (l) => lines.push(l) });
});
test.after(async () => {
  await srv?.close();
  rmSync(join(dir, '..'), { recursive: true, force: true });
  rmSync(`${dir}-ca`, { recursive: true, force: true });
});

function connect(o: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca, servername: 'localhost', ...o });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes bytes, collects every reply frame until the server closes. */
async function exchange(data: Buffer | undefined, waitMs = 3000): Promise<{ replies: Message[]; closed: boolean }> {
  const s = await connect();
  const d = new Deframer();
  const replies: Message[] = [];
  if (data) s.write(data);
  const closed = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), waitMs);
    s.on('data', (b: Buffer) => {
      d.push(b);
      for (let f = d.next(); f; f = d.next()) replies.push(parseMessage(f));
    });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(t); resolve(true); });
  });
  s.destroy();
  return { replies, closed };
}

async function stillServes(): Promise<void> {
  const r = await adminRequest({ server: `https://127.0.0.1:${srv.port}`, ca, adminToken: token }, 'list');
  assert.ok(Array.isArray(r));
}

test('server init: directory 0700, secrets 0600, certificate accepted by node:tls with the CA pinned', async () => {
  assert.is(statSync(dir).mode & 0o777, 0o700);
  for (const f of ['server.key', 'master.key', 'token-signing.key', 'admin.token']) assert.is(statSync(join(dir, f)).mode & 0o777, 0o600, f);
  assert.is(statSync(join(dir, 'master.key')).size, 32);
  for (const name of ['localhost', 'bootkey.test']) {
    const s = await connect({ servername: name, checkServerIdentity: (h, c) => tls.checkServerIdentity(name, c) });
    assert.is(s.getProtocol(), 'TLSv1.3');
    s.destroy();
  }
  (await connect({ servername: undefined })).destroy();
  let refused = false;
  try {
    (await connect({ ca: undefined })).destroy();
  } catch {
    refused = true;
  }
  assert.ok(refused, 'an unpinned client must not trust the server');
  const again = await initState(dir);
  assert.equal(again.created, [], 'init is idempotent');
});

test('TLS 1.2 is refused', async () => {
  let failed = false;
  try {
    (await connect({ maxVersion: 'TLSv1.2' })).destroy();
  } catch {
    failed = true;
  }
  assert.ok(failed);
  await stillServes();
});

test('garbage (a frame that is not CBOR) → error BAD_MESSAGE, close; server still serves', async () => {
  const r = await exchange(frame(Buffer.from('this is not CBOR \xff\xfe', 'latin1')));
  assert.ok(r.closed);
  assert.is(r.replies[0]?.t, 'error');
  assert.is((r.replies[0] as { code: string }).code, 'BAD_MESSAGE');
  const r2 = await exchange(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.ok(r2.closed, 'an HTTP request (announcing a 1.1 GB frame) is closed');
  await stillServes();
});

test('oversize frame (length over MAX_FRAME) → error TOO_LARGE without buffering, close; server still serves', async () => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(0xffffffff);
  const r = await exchange(Buffer.concat([h, Buffer.alloc(1000)]));
  assert.ok(r.closed);
  assert.is((r.replies[0] as { code: string }).code, 'TOO_LARGE');
  await stillServes();
});

test('wrong protocol version → error BAD_VERSION; unknown type, wrong field → BAD_MESSAGE', async () => {
  let r = await exchange(frame(encodeCbor({ v: 2, t: 'attest-begin', machine: 'm-1', akName: Buffer.alloc(34) })));
  assert.is((r.replies[0] as { code: string }).code, 'BAD_VERSION');
  assert.ok(r.closed);
  r = await exchange(frame(encodeCbor({ v: 1, t: 'released', blob: {}, sealedTo: [] })));
  assert.is((r.replies[0] as { code: string }).code, 'BAD_MESSAGE', 'a reply type is not a request');
  r = await exchange(frame(encodeCbor({ v: 1, t: 'attest-begin', machine: 'm-1', akName: 'not bytes' })));
  assert.is((r.replies[0] as { code: string; message: string }).code, 'BAD_MESSAGE');
  await stillServes();
});

test('slowloris: half a frame, then silence → error TIMEOUT and close', async () => {
  const t0 = Date.now();
  const r = await exchange(Buffer.from([0, 0]), 4000);
  assert.ok(r.closed);
  assert.is((r.replies[0] as { code: string }).code, 'TIMEOUT');
  assert.ok(Date.now() - t0 < 3000);
  await stillServes();
});

test('requests: unknown machine refused; several requests on one connection', async () => {
  const att = encodeMessage({ t: 'attest-begin', machine: 'm-0000000000000000', akName: Buffer.alloc(34), ekName: Buffer.alloc(34), releasedPcr: 15 });
  const r = await exchange(Buffer.concat([frame(att), frame(att)]), 1500);
  assert.ok(r.replies.length >= 2);
  assert.is((r.replies[0] as { code: string }).code, 'UNKNOWN_MACHINE');
  assert.is((r.replies[1] as { code: string }).code, 'UNKNOWN_MACHINE');
  if (r.replies[2]) assert.is((r.replies[2] as { code: string }).code, 'TIMEOUT', 'an idle connection is closed after the message timeout');
  assert.ok(lines.some((l) => /event=attest-begin result=refused code=UNKNOWN_MACHINE machine=m-0000000000000000 peer=\S+/.test(l)), lines.join('\n'));
});

test('the CA private key is kept out of the state directory; the server starts and serves without it', async () => {
  assert.not.ok(existsSync(join(dir, 'ca.key')), 'no ca.key in the state directory replicas copy');
  assert.is(statSync(`${dir}-ca`).mode & 0o777, 0o700);
  assert.is(statSync(join(`${dir}-ca`, 'ca.key')).mode & 0o777, 0o600);
  // srv (started in before()) runs on this state directory: it serves admin requests...
  await stillServes();
  assert.not.ok(lines.some((l) => /event=warning/.test(l)), 'no warning without ca.key');
  // ...and a replica started from a copy of the state directory alone serves too
  const copy = join(dir, '..', 'replica-copy');
  spawnSync('cp', ['-a', dir, copy]);
  assert.not.ok(existsSync(join(copy, 'ca.key')));
  const r = await startServer({ stateDir: copy, listen: '127.0.0.1:0' });
  try {
    const list = await adminRequest({ server: `https://127.0.0.1:${r.port}`, ca, adminToken: token }, 'list');
    assert.ok(Array.isArray(list));
  } finally {
    await r.close();
  }
  // init moves an older layout's STATE/ca.key out, and re-issuing server.pem needs the CA dir
  const old = join(dir, '..', 'old-layout');
  await initState(old);
  renameSync(join(`${old}-ca`, 'ca.key'), join(old, 'ca.key'));
  const moved = await initState(old);
  assert.equal(moved.moved, [`ca.key → ${join(`${old}-ca`, 'ca.key')}`]);
  assert.not.ok(existsSync(join(old, 'ca.key')));
  rmSync(join(old, 'server.pem'));
  try {
    await initState(old, { caDir: join(dir, '..', 'elsewhere') });
    assert.unreachable('re-issued server.pem without the CA key');
  } catch (e) {
    assert.is((e as ServerError).code, 'CONFIG');
    assert.match((e as Error).message, /needs the CA key/);
  }
  assert.ok((await initState(old)).created.includes('server.pem'));
  rmSync(`${old}-ca`, { recursive: true, force: true });
  rmSync(join(dir, '..', 'elsewhere'), { recursive: true, force: true });
  // a ca.key left in the state directory is warned about at start
  const warn: string[] = [];
  writeFileSync(join(copy, 'ca.key'), 'x', { mode: 0o600 });
  const w = await startServer({ stateDir: copy, listen: '127.0.0.1:0', log: (l) => warn.push(l) });
  await w.close();
  assert.ok(warn.some((l) => /event=warning .*ca\.key/.test(l)), warn.join('\n'));
});

test('a port already taken: startServer fails with LISTEN / EADDRINUSE (not a TLS error later)', async () => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as net.AddressInfo).port;
  try {
    await startServer({ stateDir: dir, listen: `127.0.0.1:${port}` });
    assert.unreachable('listened on a taken port');
  } catch (e) {
    assert.ok(e instanceof ServerError);
    assert.is((e as ServerError).code, 'LISTEN');
    assert.match((e as Error).message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
  } finally {
    taken.close();
  }
});

test('admin: wrong token refused (AUTH); the token is never logged', async () => {
  try {
    await adminRequest({ server: `https://127.0.0.1:${srv.port}`, ca, adminToken: 'wrong' }, 'list');
    assert.unreachable('accepted a wrong token');
  } catch (e) {
    assert.ok(e instanceof ServerError);
    assert.is((e as ServerError).code, 'AUTH');
  }
  await stillServes();
  assert.not.ok(lines.some((l) => l.includes(token)));
});

test('CLI: bootkey admin list/audit (plain and --json), usage errors', async () => {
  // async: the server runs in this process
  const run = (args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    c.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
  const base = ['admin', '--server', `https://127.0.0.1:${srv.port}`, '--ca', join(dir, 'ca.pem'), '--admin-token', join(dir, 'admin.token')];
  let r = await run([...base, 'list']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /no machines|ID/);
  r = await run([...base, 'audit', '--json']);
  assert.is(r.status, 0, r.stderr);
  assert.ok(Array.isArray(JSON.parse(r.stdout)));
  r = await run([...base, 'show']);
  assert.is(r.status, 2);
  r = await run([...base, 'show', 'm-0000000000000000']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /UNKNOWN_MACHINE/);

  // enrolment tokens
  r = await run([...base, 'token', 'create', '--uses', '3', '--expires', '2h', '--comment', 'rack 4', '--json']);
  assert.is(r.status, 0, r.stderr);
  const created = JSON.parse(r.stdout) as { id: string; token: string; uses: number; expiresAt: number };
  assert.match(created.token, /^bkenrol\.t-[0-9a-f]{16}\./);
  assert.is(created.uses, 3);
  assert.ok(Math.abs(created.expiresAt - Date.now() - 2 * 3600_000) < 120_000);
  r = await run([...base, 'token', 'create']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^bkenrol\.t-[0-9a-f]{16}\.\S+\n# enrolment token t-[0-9a-f]{16}: 1 use\(s\)/);
  r = await run([...base, 'token', 'list']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`${created.id} +valid +3/3 .*rack 4`));
  assert.not.ok(r.stdout.includes(created.token.split('.')[2]), 'list shows no secret');
  r = await run([...base, 'token', 'revoke', created.id]);
  assert.is(r.status, 0, r.stderr);
  r = await run([...base, 'token', 'list', '--json']);
  assert.is((JSON.parse(r.stdout) as { id: string; state: string }[]).find((t) => t.id === created.id)!.state, 'revoked');
  for (const bad of [['token'], ['token', 'revoke'], ['token', 'create', '--expires', '10s'], ['token', 'create', '--expires', 'soon'], ['token', 'make']]) {
    r = await run([...base, ...bad]);
    assert.is(r.status, 2, `${bad.join(' ')}: ${r.stderr}`);
  }
  // an enrolment token is not an admin token
  const tokFile = join(dir, '..', 'enrol.tok');
  writeFileSync(tokFile, created.token);
  r = await run(['admin', '--server', `https://127.0.0.1:${srv.port}`, '--ca', join(dir, 'ca.pem'), '--admin-token', tokFile, 'list']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /TOKEN_SCOPE/);

  // a permissive policy is refused by the CLI before sending, with the reason
  const pol = join(dir, '..', 'empty-policy.json');
  writeFileSync(pol, JSON.stringify({ version: 1, bank: 'sha256', pcrs: [0, 2, 4, 7], options: { allowAnyCmdline: false, allowAnyKernel: false }, rules: {} }));
  r = await run([...base, 'put-policy', 'empty', '--policy', pol]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /no rules: it matches every boot.*--allow-permissive/);
  r = await run([...base, 'put-policy', 'empty', '--policy', pol, '--allow-permissive']);
  assert.is(r.status, 0, r.stderr);

  // enroll: --admin-token is refused, --enrol-token is required
  r = await run(['enroll', '--server', 'https://127.0.0.1:1', '--ca', join(dir, 'ca.pem'), '--admin-token', join(dir, 'admin.token'), '--device', '/nonexistent', '--key-file', '/nonexistent']);
  assert.is(r.status, 2);
  assert.match(r.stderr, /--admin-token is not accepted by enroll.*--enrol-token/);
});

test('CLI: bootkey server init + bootkey server run and stop on SIGTERM', async () => {
  const d2 = join(dir, '..', 'cli-state');
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'server', 'init', '--state', d2, '--san', '192.0.2.7'], { cwd: ROOT, encoding: 'utf8' });
  assert.is(run.status, 0, run.stderr);
  assert.is(statSync(d2).mode & 0o777, 0o700);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'server', '--state', d2, '--listen', '127.0.0.1:0'], { cwd: ROOT });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  const until = Date.now() + 15000;
  while (!/event=listening/.test(out) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, /event=listening host=127\.0\.0\.1 port=\d+ releasedPcr=15/);
  const port = /event=listening host=\S+ port=(\d+)/.exec(out)![1];
  // a second server on the same port fails loudly (exit 1, LISTEN, EADDRINUSE)
  const dup = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'server', '--state', d2, '--listen', `127.0.0.1:${port}`], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  assert.is(dup.status, 1, dup.stderr);
  assert.match(dup.stderr, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
  const code = await new Promise<number | null>((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  assert.is(code, 0);
  assert.match(out, /event=stopped/);
  // --released-pcr refuses resettable PCRs with the reason (usage error)
  for (const [pcr, re] of [['16', /debug PCR/], ['23', /application PCR/], ['18', /DRTM/], ['7', /policy's PCRs/]] as const) {
    const b = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'server', '--state', d2, '--listen', '127.0.0.1:0', '--released-pcr', pcr], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    assert.is(b.status, 2, b.stderr);
    assert.match(b.stderr, re);
  }
  rmSync(`${d2}-ca`, { recursive: true, force: true });
});

test.run();
