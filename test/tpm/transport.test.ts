/**
 * Transports: TCTI spelling, swtpm over TCP and over a UNIX socket (real swtpm processes),
 * serialised concurrent calls, bounded framing and timeouts (a TCP proxy in front of the real
 * swtpm rewrites or withholds its answers), and the device transport's errors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSwtpm, type Swtpm } from '../helpers/swtpm.ts';
import { parseTcti, openTransport, defaultTpmSpec } from '../../src/tpm/transport.ts';
import { openSwtpmTransport } from '../../src/tpm/transport-swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { TpmError } from '../../src/tpm/errors.ts';
import { GetRandom } from '../../src/tpm/commands/startup.ts';

let sw: Swtpm;
test.before(async () => {
  sw = await startSwtpm({ blank: true });
});
test.after(async () => {
  await sw.stop();
});

const GET_RANDOM_8 = Buffer.from('80010000000c0000017b0008', 'hex');

test('parseTcti: tpm2-tools spellings', () => {
  assert.equal(parseTcti('device:/dev/tpmrm0'), { kind: 'device', path: '/dev/tpmrm0' });
  assert.equal(parseTcti('device'), { kind: 'device', path: '/dev/tpmrm0' });
  assert.equal(parseTcti('device:/dev/tpm0'), { kind: 'device', path: '/dev/tpm0' });
  assert.equal(parseTcti('swtpm:host=127.0.0.1,port=2321'), { kind: 'swtpm', host: '127.0.0.1', port: 2321 });
  assert.equal(parseTcti('swtpm:port=4000'), { kind: 'swtpm', host: '127.0.0.1', port: 4000 });
  assert.equal(parseTcti('swtpm:'), { kind: 'swtpm', host: '127.0.0.1', port: 2321 });
  assert.equal(parseTcti('swtpm:path=/run/swtpm.sock'), { kind: 'swtpm-unix', path: '/run/swtpm.sock' });
  for (const bad of ['mssim:port=2321', 'swtpm:port=x', 'swtpm:port=70000', 'swtpm:bogus=1', 'device:dev/tpm0', 'swtpm:path=/a,port=1', 'swtpm:host']) {
    assert.throws(() => parseTcti(bad), (e: unknown) => e instanceof TpmError && e.code === 'TRANSPORT', bad);
  }
});

test('BOOTKEY_TPM sets the default spec', () => {
  const old = process.env.BOOTKEY_TPM;
  try {
    delete process.env.BOOTKEY_TPM;
    assert.is(defaultTpmSpec(), 'device:/dev/tpmrm0');
    process.env.BOOTKEY_TPM = 'swtpm:port=1234';
    assert.is(defaultTpmSpec(), 'swtpm:port=1234');
    assert.is(defaultTpmSpec('device:/dev/tpm0'), 'device:/dev/tpm0');
  } finally {
    if (old === undefined) delete process.env.BOOTKEY_TPM;
    else process.env.BOOTKEY_TPM = old;
  }
});

test('swtpm TCP: raw command bytes in, one framed response out; concurrent calls are serialised', async () => {
  const t = await openTransport(sw.tcti);
  try {
    const rsp = await t.send(GET_RANDOM_8);
    assert.is(rsp.readUInt32BE(2), rsp.length);
    assert.is(rsp.readUInt32BE(6), 0);
    const all = await Promise.all(Array.from({ length: 20 }, () => t.send(GET_RANDOM_8)));
    for (const r of all) assert.is(r.length, 10 + 2 + 8);
    assert.is(new Set(all.map((r) => r.toString('hex'))).size, 20);
    // commands whose size field lies are refused before sending
    const err = await t.send(Buffer.from('80010000000d0000017b0008', 'hex')).catch((e) => e);
    assert.is(err.code, 'TRANSPORT');
  } finally {
    await t.close();
  }
  const err = await t.send(GET_RANDOM_8).catch((e) => e);
  assert.is(err.code, 'TRANSPORT');
});

test('swtpm UNIX socket (--server type=unixio): Startup sent, TPM_RC_INITIALIZE accepted on the next open', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bootkey-unix-'));
  const sock = join(dir, 'swtpm.sock');
  const child: ChildProcess = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${dir}`, '--server', `type=unixio,path=${sock}`, '--ctrl', `type=unixio,path=${sock}.ctrl`, '--flags', 'not-need-init'], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    let tpm = await Tpm.open(`swtpm:path=${sock}`);
    assert.is((await GetRandom(tpm, { bytesRequested: 16 })).randomBytes.length, 16);
    await tpm.close();
    tpm = await Tpm.open(`swtpm:path=${sock}`);
    assert.is((await GetRandom(tpm, { bytesRequested: 4 })).randomBytes.length, 4);
    await tpm.close();
  } finally {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('connection refused is TpmError(TRANSPORT)', async () => {
  const err = await Tpm.open('swtpm:host=127.0.0.1,port=1').catch((e) => e);
  assert.instance(err, TpmError);
  assert.is(err.code, 'TRANSPORT');
  assert.match(err.message, /connect failed: ECONNREFUSED/);
});

test('device transport: a missing device is TpmError(TRANSPORT)', async () => {
  const err = await openTransport('device:/nonexistent/tpmrm0').catch((e) => e);
  assert.instance(err, TpmError);
  assert.is(err.code, 'TRANSPORT');
  assert.match(err.message, /^\/nonexistent\/tpmrm0: open failed: ENOENT/);
});

test('device transport on /dev/tpmrm0 (skipped when absent)', async () => {
  if (!existsSync('/dev/tpmrm0')) return;
  const t = await openTransport('device:/dev/tpmrm0').catch(() => undefined);
  if (!t) return; // no permission
  try {
    const rsp = await t.send(GET_RANDOM_8);
    assert.is(rsp.readUInt32BE(2), rsp.length);
  } finally {
    await t.close();
  }
});

/** A TCP proxy to the real swtpm that passes commands and rewrites (or drops) responses. */
async function proxy(rewrite: (rsp: Buffer) => Buffer | undefined): Promise<{ port: number; close(): Promise<void> }> {
  const socks: net.Socket[] = [];
  const server = net.createServer((c) => {
    const up = net.connect(sw.port, '127.0.0.1');
    socks.push(c, up);
    c.on('data', (d) => up.write(d));
    up.on('data', (d) => {
      const out = rewrite(d);
      if (out) c.write(out);
    });
    c.on('close', () => up.destroy());
    up.on('error', () => c.destroy());
    c.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }),
  };
}

test('a response header claiming 1 GB is refused by the transport (bounded), not waited for', async () => {
  const p = await proxy((d) => { const b = Buffer.from(d); b.writeUInt32BE(1 << 30, 2); return b; });
  const t = openSwtpmTransport({ host: '127.0.0.1', port: p.port }, { timeoutMs: 5000 });
  try {
    const err = await t.send(GET_RANDOM_8).catch((e) => e);
    assert.instance(err, TpmError);
    assert.is(err.code, 'TRANSPORT');
    assert.match(err.message, /response header claims 1073741824 bytes/);
  } finally {
    await t.close();
    await p.close();
  }
});

test('a response that never completes times out (TRANSPORT)', async () => {
  const p = await proxy((d) => d.subarray(0, d.length - 3));
  const t = openSwtpmTransport({ host: '127.0.0.1', port: p.port }, { timeoutMs: 300 });
  try {
    const t0 = Date.now();
    const err = await t.send(GET_RANDOM_8).catch((e) => e);
    assert.is(err.code, 'TRANSPORT');
    assert.match(err.message, /no complete response within 300 ms/);
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    await t.close();
    await p.close();
  }
});

test('bytes beyond the size field are refused (TRANSPORT)', async () => {
  const p = await proxy((d) => Buffer.concat([d, Buffer.alloc(4)]));
  const t = openSwtpmTransport({ host: '127.0.0.1', port: p.port }, { timeoutMs: 2000 });
  try {
    const err = await t.send(GET_RANDOM_8).catch((e) => e);
    assert.is(err.code, 'TRANSPORT');
  } finally {
    await t.close();
    await p.close();
  }
});

test.run();
