/**
 * Client pieces without a TPM: the LUKS key derivation (HKDF-SHA256, checked against a
 * hand-written RFC 5869 extract/expand), the token validator, and the TLS client against
 * local TLS servers (pinned CA, TLS 1.3 only, parallel failover, bounded retries, deadline,
 * refusals not retried).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import tls from 'node:tls';
import net from 'node:net';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deriveLuksKey, KEY_INFO, KeyError } from '../../src/client/key.ts';
import { validateToken, TokenError } from '../../src/client/token.ts';
import { ClientError, withServer, parseServerUrl, isTransient } from '../../src/client/connect.ts';
import { Connection } from '../../src/protocol/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'bootkey-client-'));
function ca(name: string): { caPem: string; key: string; cert: string } {
  const o = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '2', '-subj', `/CN=${name} CA`]);
  o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=127.0.0.1']);
  const ext = join(dir, `${name}.ext`);
  execFileSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ${ext}`]);
  o(['x509', '-req', '-in', `${name}.csr`, '-CA', `${name}-ca.pem`, '-CAkey', `${name}-ca.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext]);
  return { caPem: readFileSync(join(dir, `${name}-ca.pem`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8'), cert: readFileSync(join(dir, `${name}.pem`), 'utf8') };
}
const good = ca('good');
const other = ca('other');

/** A TLS server answering every message with `reply`; counts connections. */
async function server(opts: { reply?: 'ok' | 'error'; maxVersion?: tls.SecureVersion; pki?: typeof good } = {}) {
  const pki = opts.pki ?? good;
  let connections = 0;
  const s = tls.createServer({ key: pki.key, cert: pki.cert, minVersion: 'TLSv1.2', maxVersion: opts.maxVersion ?? 'TLSv1.3' }, (sock) => {
    connections++;
    const c = new Connection(sock);
    void (async () => {
      try {
        for (;;) {
          await c.receiveFrame(5000);
          await c.send(opts.reply === 'error' ? { t: 'error', code: 'POLICY', message: 'no', failures: ['pcr 7: SecureBoot off'] } : { t: 'ok' });
        }
      } catch {
        sock.destroy();
      }
    })();
  });
  s.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  return { url: `https://127.0.0.1:${port}`, get connections() { return connections; }, close: () => new Promise((r) => s.close(r)) };
}

/** A port nobody listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

const ping = (o: Parameters<typeof withServer>[0]) => withServer(o, (s) => s.request({ t: 'attest-begin', machine: 'm', akName: Buffer.alloc(34), ekName: Buffer.alloc(34), releasedPcr: 15 }, ['ok']));

async function clientError(p: Promise<unknown>, code: string): Promise<ClientError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, ClientError, String(e));
    assert.is((e as ClientError).code, code, (e as Error).message);
    return e as ClientError;
  }
  assert.unreachable(`expected ClientError ${code}`);
  throw new Error();
}

test.after(() => rmSync(dir, { recursive: true, force: true }));

test('deriveLuksKey = base64(HKDF-SHA256(server‖disk, salt=machine id, info)) — RFC 5869 by hand', () => {
  const s = Buffer.alloc(32, 1);
  const d = Buffer.alloc(32, 2);
  const prk = createHmac('sha256', Buffer.from('machine-1')).update(Buffer.concat([s, d])).digest();
  const t1 = createHmac('sha256', prk).update(Buffer.concat([Buffer.from(KEY_INFO), Buffer.from([1])])).digest();
  const k = deriveLuksKey(s, d, 'machine-1');
  assert.is(k.toString(), t1.toString('base64'));
  assert.is(k.length, 44);
  // each input matters
  assert.is.not(deriveLuksKey(Buffer.alloc(32, 3), d, 'machine-1').toString(), k.toString());
  assert.is.not(deriveLuksKey(s, Buffer.alloc(32, 3), 'machine-1').toString(), k.toString());
  assert.is.not(deriveLuksKey(s, d, 'machine-2').toString(), k.toString());
  assert.is.not(deriveLuksKey(d, s, 'machine-1').toString(), k.toString());
  assert.throws(() => deriveLuksKey(Buffer.alloc(31), d, 'm'), (e: unknown) => e instanceof KeyError && e.code === 'BAD_SHARE');
  assert.throws(() => deriveLuksKey(s, Buffer.alloc(33), 'm'), (e: unknown) => e instanceof KeyError && e.code === 'BAD_SHARE');
  assert.throws(() => deriveLuksKey(s, d, ''), (e: unknown) => e instanceof KeyError && e.code === 'BAD_MACHINE');
});

test('token validator names the bad field', () => {
  const ek = Buffer.from('001a0001000b00030072000000060080004300100800000000000000', 'hex'); // a short RSA TPMT in a 2B
  const base = { type: 'bootkey', keyslots: ['1'], servers: ['https://127.0.0.1:8443'], ca: good.caPem, machine: 'm1', ek: ek.toString('base64'), share: Buffer.alloc(32).toString('base64'), ek_alg: 'rsa', ak_alg: 'ecc', released_pcr: 15, sig: Buffer.alloc(64, 1).toString('base64') };
  const bad = (patch: Record<string, unknown>, what: RegExp): void => {
    assert.throws(() => validateToken({ ...base, ...patch }), (e: unknown) => e instanceof TokenError && what.test((e as Error).message));
  };
  assert.is(validateToken(base).machine, 'm1');
  bad({ type: 'clevis' }, /type/);
  bad({ sig: undefined }, /sig must be a 64-byte signature/);
  bad({ sig: Buffer.alloc(63).toString('base64') }, /sig must be/);
  bad({ keyslots: [1] }, /keyslots/);
  bad({ servers: ['http://x:1'] }, /servers/);
  bad({ ca: 'nope' }, /ca/);
  bad({ machine: 'a b' }, /machine/);
  bad({ share: Buffer.alloc(16).toString('base64') }, /share/);
  bad({ ek_alg: 'dsa' }, /ek_alg/);
  bad({ released_pcr: 24 }, /released_pcr/);
  bad({ ek: 'AAAA' }, /ek/);
});

test('isTransient: transport trouble and the server codes BUSY/TIMEOUT retry; verdicts never do', () => {
  for (const c of ['BUSY', 'INTERNAL', 'UNAVAILABLE', 'TIMEOUT']) assert.ok(isTransient(new ClientError('REFUSED', c, { serverCode: c })), c);
  for (const c of ['POLICY', 'REPLAY', 'NONCE_USED', 'REVOKED', 'RUNTIME_FAILED', 'ALREADY_RELEASED']) assert.not.ok(isTransient(new ClientError('REFUSED', c, { serverCode: c })), c);
  assert.ok(isTransient(new ClientError('UNREACHABLE', 'x')));
});

test('parseServerUrl', () => {
  assert.equal(parseServerUrl('https://kr.example:9443'), { url: 'https://kr.example:9443', host: 'kr.example', port: 9443 });
  assert.is(parseServerUrl('https://[::1]:1').host, '::1');
  assert.throws(() => parseServerUrl('http://x:1'), (e: unknown) => e instanceof ClientError && e.code === 'BAD_URL');
  assert.throws(() => parseServerUrl('https://x:1/path;rm'), (e: unknown) => e instanceof ClientError && e.code === 'BAD_URL');
});

test('pinned CA: the right CA talks, a server with another CA is never trusted', async () => {
  const a = await server();
  const b = await server({ pki: other });
  try {
    const r = await ping({ servers: [a.url], ca: good.caPem });
    assert.is(r.t, 'ok');
    const e = await clientError(ping({ servers: [b.url], ca: good.caPem, maxAttempts: 2, backoffMs: 10 }), 'UNREACHABLE');
    assert.match(e.message, /certificate|self.signed|unable to verify/i);
    assert.is(b.connections, 0, 'no message reached the untrusted server');
  } finally {
    await a.close();
    await b.close();
  }
});

test('TLS 1.3 only: a TLS 1.2 server is refused', async () => {
  const a = await server({ maxVersion: 'TLSv1.2' });
  try {
    await clientError(ping({ servers: [a.url], ca: good.caPem, maxAttempts: 1 }), 'UNREACHABLE');
    assert.is(a.connections, 0);
  } finally {
    await a.close();
  }
});

test('failover: a dead first server does not matter; refusals are final (one connection)', async () => {
  const a = await server({ reply: 'error' });
  const dead = `https://127.0.0.1:${await deadPort()}`;
  try {
    const e = await clientError(ping({ servers: [dead, a.url], ca: good.caPem, maxAttempts: 5, backoffMs: 10 }), 'REFUSED');
    assert.is(e.serverCode, 'POLICY');
    assert.equal(e.failures, ['pcr 7: SecureBoot off']);
    assert.is(e.server, a.url);
    assert.is(a.connections, 1, 'a refusal is not retried');
  } finally {
    await a.close();
  }
});

test('bounded: nobody listening → UNREACHABLE within the deadline, after retries with backoff', async () => {
  const dead = `https://127.0.0.1:${await deadPort()}`;
  const t0 = Date.now();
  const lines: string[] = [];
  await clientError(ping({ servers: [dead], ca: good.caPem, deadlineMs: 1500, maxAttempts: 100, backoffMs: 100, log: (l) => lines.push(l) }), 'UNREACHABLE');
  const took = Date.now() - t0;
  assert.ok(took >= 1000 && took < 3000, `took ${took} ms`);
  assert.ok(lines.filter((l) => /attempt \d+ failed/.test(l)).length >= 3, lines.join('\n'));
  // a TCP server that never answers the handshake: the deadline still holds
  const mute = net.createServer(() => undefined);
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  try {
    const t1 = Date.now();
    await clientError(ping({ servers: [`https://127.0.0.1:${(mute.address() as net.AddressInfo).port}`], ca: good.caPem, deadlineMs: 800 }), 'UNREACHABLE');
    assert.ok(Date.now() - t1 < 2500);
  } finally {
    mute.close();
  }
});

test.run();
