/**
 * Over TLS, with two replicas sharing one state directory: enrolment on one, attest-begin on
 * one and attest-finish on the other (a reconnect), the release unseals; admin operations
 * (put-policy + named-policy enrolment, add-boot, rotate, delete); per-machine rate limit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initState } from '../../src/server/pki.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import { connectTls, adminRequest } from '../../src/server/admin-client.ts';
import { ServerError } from '../../src/server/errors.ts';
import { activateCredential, unsealImported } from '../../src/tpm/keys.ts';
import { quotePCRs } from '../../src/tpm/commands/attest.ts';
import { marshalSignature } from '../../src/tpm/structures.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { generatePolicy } from '../../src/measuredboot/policy.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { toTpmSelection } from '../../src/server/attest.ts';
import type { Message, MessageOf } from '../../src/protocol/messages.ts';
import { TestMachine, qemuLog } from './_helpers.ts';

const LOG = qemuLog('uki-sb-off');
let root: string;
let dir: string;
let a: RunningServer;
let b: RunningServer;
let ca: Buffer;
let token: string;
let enrolToken: string;
let mach: TestMachine;

test.before(async () => {
  root = mkdtempSync(join(tmpdir(), 'bootkey-replicas-'));
  dir = join(root, 'state');
  await initState(dir);
  ca = readFileSync(join(dir, 'ca.pem'));
  token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  a = await startServer({ stateDir: dir, listen: '127.0.0.1:0', rateLimit: { perMachine: { burst: 6, perSecond: 0.01 } } });
  b = await startServer({ stateDir: dir, listen: '127.0.0.1:0' });
  mach = await TestMachine.start(LOG);
  enrolToken = ((await admin('token-create', { uses: 10 })) as { token: string }).token;
});
test.after(async () => {
  await mach?.stop();
  await a?.close();
  await b?.close();
  rmSync(root, { recursive: true, force: true });
});

async function request(s: RunningServer, m: Message): Promise<Message> {
  const c = await connectTls(`https://127.0.0.1:${s.port}`, ca);
  try {
    await c.send(m);
    return await c.receive(['enroll-challenge', 'enroll-accepted', 'ok', 'attest-challenge', 'released', 'admin-result'], 10_000);
  } finally {
    c.close();
  }
}
const admin = (op: string, f: Record<string, unknown> = {}) => adminRequest({ server: `https://127.0.0.1:${b.port}`, ca, adminToken: token }, op, f);

async function enroll(policy?: string): Promise<MessageOf<'enroll-accepted'>> {
  const ch = await request(a, { ...mach.beginMsg(), enrolToken });
  assert.is(ch.t, 'enroll-challenge', JSON.stringify(ch));
  const c = ch as MessageOf<'enroll-challenge'>;
  const proof = await activateCredential(mach.tpm, { ak: mach.ak, ek: mach.ek, credentialBlob: c.credentialBlob, secret: c.encryptedSecret });
  const q = await quotePCRs(mach.tpm, mach.ak, { selection: toTpmSelection(c.pcrSelection), nonce: c.nonce });
  const acc = await request(b, {
    t: 'enroll-finish', enrolToken, enrollment: c.enrollment, proof, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs, eventLog: LOG,
    ...(policy ? { policy } : {}),
  });
  assert.is(acc.t, 'enroll-accepted', JSON.stringify(acc));
  assert.is((await request(a, { t: 'enroll-commit', enrolToken, enrollment: c.enrollment })).t, 'ok');
  return acc as MessageOf<'enroll-accepted'>;
}

async function attest(id: string, begin = a, finish = b): Promise<Message> {
  const ch = await request(begin, { t: 'attest-begin', machine: id, akName: mach.ak.name, ...mach.binding() });
  if (ch.t !== 'attest-challenge') return ch;
  const q = await quotePCRs(mach.tpm, mach.ak, { selection: toTpmSelection(ch.pcrSelection), nonce: ch.nonce });
  return request(finish, { t: 'attest-finish', machine: id, akName: mach.ak.name, ...mach.binding(), nonce: ch.nonce, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs, eventLog: LOG });
}

async function unseal(rel: MessageOf<'released'>): Promise<Buffer> {
  return unsealImported(mach.tpm, { ek: mach.ek, objectPublic: rel.blob.public.subarray(2), duplicate: rel.blob.duplicate.subarray(2), inSymSeed: rel.blob.inSymSeed.subarray(2), pcrs: toTpmSelection(rel.sealedTo) });
}

test('enrol on A/B, attest-begin on A, reconnect, attest-finish on B: released and unsealed', async () => {
  const acc = await enroll();
  assert.match(acc.policySummary, /generated from this boot/);
  const r = await attest(acc.machine);
  assert.is(r.t, 'released', JSON.stringify(r).slice(0, 300));
  assert.ok((await unseal(r as MessageOf<'released'>)).equals(acc.serverShare));
  const list = (await admin('list')) as { id: string; state: string; lastResult: string }[];
  assert.equal(list.map((m) => [m.id, m.state, m.lastResult]), [[acc.machine, 'active', 'released']]);
});

test('named policy (put-policy) at enrolment; re-enrolment supersedes the old record; add-boot, rotate, delete', async () => {
  const before = (await admin('list')) as { id: string }[];
  const pol = generatePolicy(unverifiedLog(parseEventLog(LOG)), { bank: 'sha256', allowAnyCmdline: true });
  await admin('put-policy', { machine: 'fleet-a', policy: JSON.stringify(pol) });
  const acc = await enroll('fleet-a');
  assert.match(acc.policySummary, /named policy fleet-a/);
  const list = (await admin('list')) as { id: string }[];
  assert.equal(list.map((m) => m.id), [acc.machine], `old record ${before[0].id} superseded`);
  // the named policy has no command-line rule: PCR 9 is not quoted; PCR 5 is (ExitBootServices)
  const shown = (await admin('show', { machine: acc.machine })) as { quotedSelection: { pcrs: number[] }[] };
  assert.equal(shown.quotedSelection[0].pcrs, [0, 2, 4, 5, 7, 15]);

  const merged = (await admin('add-boot', { machine: acc.machine, eventLog: qemuLog('uki-sb-off-cmdline2') })) as { policy: string };
  assert.is(merged.policy, 'merged');
  await mach.reboot();
  let r = await attest(acc.machine);
  assert.is(r.t, 'released');
  await mach.reboot();

  await admin('rotate', { machine: acc.machine });
  r = await attest(acc.machine);
  assert.is(r.t, 'released');
  assert.not.ok((await unseal(r as MessageOf<'released'>)).equals(acc.serverShare), 'rotated share differs');
  await mach.reboot();

  try {
    await admin('delete', { machine: acc.machine });
    assert.unreachable('an active machine was deleted');
  } catch (e) {
    assert.is((e as ServerError).code, 'NOT_REVOKED');
  }
  await admin('revoke', { machine: acc.machine });
  await admin('delete', { machine: acc.machine });
  r = await attest(acc.machine);
  assert.is(r.t === 'error' && r.code, 'UNKNOWN_MACHINE');
  try {
    await admin('set-policy', { machine: 'm-0000000000000000', policy: '{}' });
    assert.unreachable();
  } catch (e) {
    assert.is((e as ServerError).code, 'UNKNOWN_MACHINE');
  }
  const audit = (await admin('audit', { limit: 500 })) as { action: string }[];
  for (const act of ['token-use', 'enroll-finish', 'enroll-commit', 'superseded', 'release', 'admin-rotate', 'admin-revoke', 'admin-delete', 'admin-add-boot', 'admin-put-policy', 'admin-token-create']) {
    assert.ok(audit.some((x) => x.action === act), `audit lacks ${act}`);
  }
});

test('per-machine rate limit (replica A: burst 6): a flood with the victim\'s id and a wrong AK spends nothing; the machine itself is limited', async () => {
  const acc = await enroll();
  const wrongAk = Buffer.concat([mach.ak.name.subarray(0, 2), Buffer.alloc(32, 7)]);
  const flood: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await request(a, { t: 'attest-begin', machine: acc.machine, akName: wrongAk, ...mach.binding() });
    flood.push(r.t === 'error' ? r.code : r.t);
  }
  assert.equal([...new Set(flood)], ['AK_MISMATCH'], 'no RATE_LIMITED from a flood that failed the AK check');
  const own: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await request(a, { t: 'attest-begin', machine: acc.machine, akName: mach.ak.name, ...mach.binding() });
    own.push(r.t === 'error' ? r.code : r.t);
  }
  assert.is(own[0], 'attest-challenge', own.join(','));
  assert.ok(own.includes('RATE_LIMITED'), own.join(','));
});

test.run();
