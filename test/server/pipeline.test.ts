/**
 * The verification pipeline and the enrolment handlers with REAL quotes from a swtpm whose
 * PCRs hold a real QEMU/OVMF boot log (test/data/qemu/uki-sb-off.bin, no StartupLocality):
 * the positive release whose blob the same TPM imports and unseals, then every refusal code
 * with its reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { TestMachine, makeEnv, qemuLog, rt, code, extendPcr, ADMIN, ENROL, CTX, EK_CA, type TestEnv } from './_helpers.ts';
import { unsealImported, createAK, flushKey } from '../../src/tpm/keys.ts';
import { marshalPublic2B, unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { TPMA_OBJECT } from '../../src/tpm/constants.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { generatePolicy } from '../../src/measuredboot/policy.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { serialiseEventLog } from '../measuredboot/helpers.ts';
import { toTpmSelection } from '../../src/server/attest.ts';
import type { Message, MessageOf } from '../../src/protocol/messages.ts';

const LOG = qemuLog('uki-sb-off');
let env: TestEnv;
let mach: TestMachine;

test.before(async () => {
  env = await makeEnv({ ekCa: EK_CA });
  mach = await TestMachine.start(LOG);
});
test.after(async () => {
  await mach?.stop();
  await env?.close();
});

function err(m: Message): MessageOf<'error'> {
  assert.is(m.t, 'error', `expected an error, got ${JSON.stringify(m).slice(0, 300)}`);
  return m as MessageOf<'error'>;
}

async function unseal(rel: MessageOf<'released'>): Promise<Buffer> {
  return unsealImported(mach.tpm, {
    ek: mach.ek, objectPublic: rel.blob.public.subarray(2), duplicate: rel.blob.duplicate.subarray(2), inSymSeed: rel.blob.inSymSeed.subarray(2),
    pcrs: toTpmSelection(rel.sealedTo),
  });
}

function tampered(change: (events: ReturnType<typeof parseEventLog>['events']) => ReturnType<typeof parseEventLog>['events']): Buffer {
  const l = parseEventLog(LOG);
  return serialiseEventLog({ ...l, events: change([...l.events]) });
}

test('enrolment: refusals before the machine exists (AUTH, AK_ATTRIBUTES, EK_CERT, CREDENTIAL)', async () => {
  let r = await mach.enroll(env.service, { begin: { enrolToken: 'wrong-token' } });
  assert.is(code(r.reply), 'AUTH');
  const ak = unmarshalPublic2B(marshalPublic2B(mach.ak.public));
  ak.objectAttributes &= ~TPMA_OBJECT.restricted;
  r = await mach.enroll(env.service, { begin: { akPublic: marshalPublic2B(ak) } });
  const e = err(r.reply);
  assert.is(e.code, 'AK_ATTRIBUTES');
  assert.match(e.message, /restricted/);
  r = await mach.enroll(env.service, { begin: { ekCert: undefined } });
  assert.is(code(r.reply), 'EK_CERT');
  r = await mach.enroll(env.service, { begin: { ekCert: EK_CA[0].raw } });
  assert.match(err(r.reply).message, /public key is not the EK/);
  r = await mach.enroll(env.service, { finish: (m) => { m.proof = randomBytes(32); } });
  assert.is(code(r.reply), 'CREDENTIAL');
});

test('enrolment: a pending machine gets no release (PENDING); abort deletes it', async () => {
  const r = await mach.enroll(env.service);
  assert.is(r.reply.t, 'enroll-accepted');
  const id = mach.id;
  assert.ok((await env.store.getMachine(id))?.state === 'pending');
  const a = await mach.attest(env.service);
  assert.is(code(a.reply), 'PENDING');
  const ab = await env.service.handle(rt({ t: 'enroll-abort', enrolToken: ENROL, enrollment: r.enrollment! }), CTX);
  assert.is(ab.t, 'ok');
  assert.is(await env.store.getMachine(id), undefined);
});

test('enrolment then release: the blob imports and unseals on the same TPM to the server share; never again after the released PCR is extended', async () => {
  await mach.enrollAndCommit(env.service);
  const share = mach.share!;
  assert.is(share.length, 32);
  const a = await mach.attest(env.service);
  assert.is(a.reply.t, 'released', JSON.stringify(a.reply));
  const rel = a.reply as MessageOf<'released'>;
  // every PCR the generated policy reads (0, 2, 4, 7; 5 for ExitBootServices; 9 for the command line) and 15
  assert.equal(rel.sealedTo, [{ bank: 'sha256', pcrs: [0, 2, 4, 5, 7, 9, 15] }]);
  assert.ok((await unseal(rel)).equals(share));
  const m = await env.store.getMachine(mach.id);
  assert.is(m?.lastResult, 'released');

  // replaying the same attest-finish
  const replay = await env.service.handle(rt(a.finish!), CTX);
  assert.is(code(replay), 'NONCE_USED');

  await extendPcr(mach.tpm, 15);
  let unsealErr: unknown;
  try {
    await unseal(rel);
  } catch (e) {
    unsealErr = e;
  }
  assert.ok(unsealErr, 'the blob must not unseal once PCR 15 is extended');
  const again = await mach.attest(env.service);
  const e = err(again.reply);
  assert.is(e.code, 'ALREADY_RELEASED');
  assert.match(e.message, /PCR sha256:15/);
  await mach.reboot();
});

test('UNKNOWN_MACHINE, AK_MISMATCH, REVOKED', async () => {
  let r = await env.service.handle(rt({ t: 'attest-begin', machine: 'm-0000000000000000', akName: mach.ak.name, ...mach.binding() }), CTX);
  assert.is(code(r), 'UNKNOWN_MACHINE');
  r = await env.service.handle(rt({ t: 'attest-begin', machine: mach.id, akName: Buffer.concat([mach.ak.name.subarray(0, 2), randomBytes(32)]), ...mach.binding() }), CTX);
  assert.is(code(r), 'AK_MISMATCH');
  // attest-finish alone with another AK name
  const a = await mach.attest(env.service, { mutate: (m) => { m.akName = Buffer.concat([m.akName.subarray(0, 2), randomBytes(32)]); } });
  assert.is(code(a.reply), 'AK_MISMATCH');
  const rv = await env.service.handle(rt({ t: 'admin', adminToken: ADMIN, op: 'revoke', machine: mach.id }), CTX);
  assert.is(rv.t, 'admin-result');
  assert.is(code((await mach.attest(env.service)).reply), 'REVOKED');
  const fin = await env.service.handle(rt({ ...a.finish!, akName: mach.ak.name }), CTX);
  assert.is(code(fin), 'REVOKED');
  await env.service.handle(rt({ t: 'admin', adminToken: ADMIN, op: 'unrevoke', machine: mach.id }), CTX);
});

test('SIGNATURE: a quote by another key of the same TPM', async () => {
  const other = await createAK(mach.tpm, 'rsa');
  try {
    const a = await mach.attest(env.service, { ak: other });
    const e = err(a.reply);
    assert.is(e.code, 'SIGNATURE');
    assert.match(e.message, /signature/);
  } finally {
    await flushKey(mach.tpm, other);
  }
});

test('NONCE: quote over a nonce the server did not issue; a quote over the right nonce but another nonce sent', async () => {
  const forged = randomBytes(32);
  let a = await mach.attest(env.service, { quoteNonce: forged, mutate: (m) => { m.nonce = forged; } });
  let e = err(a.reply);
  assert.is(e.code, 'NONCE');
  assert.match(e.message, /not issued/);
  a = await mach.attest(env.service, { quoteNonce: randomBytes(32) });
  e = err(a.reply);
  assert.is(e.code, 'NONCE');
  assert.match(e.message, /extraData/);
});

test('NONCE_EXPIRED: answered after 60 s (another replica with a later clock)', async () => {
  const late = env.make({ now: () => Date.now() + 61_000, ekCa: EK_CA });
  const a = await mach.attest(env.service, { finishWith: late });
  const e = err(a.reply);
  assert.is(e.code, 'NONCE_EXPIRED');
  // and it stays dead
  assert.is(code(await env.service.handle(rt(a.finish!), CTX)), 'NONCE_USED');
});

test('PCR_DIGEST: a PCR value sent differs from the quoted one', async () => {
  const a = await mach.attest(env.service, { mutate: (m) => { m.pcrs.get('sha256')!.set(4, randomBytes(32)); } });
  assert.is(code(a.reply), 'PCR_DIGEST');
});

test('COUNTERS: resetCount went backwards', async () => {
  const m = (await env.store.getMachine(mach.id))!;
  await env.store.recordResult(mach.id, { result: 'x', time: Date.now(), resetCount: 1000, restartCount: 0 });
  const a = await mach.attest(env.service);
  const e = err(a.reply);
  assert.is(e.code, 'COUNTERS');
  assert.match(e.message, /resetCount/);
  await env.store.recordResult(mach.id, { result: 'x', time: Date.now(), resetCount: m.lastResetCount!, restartCount: m.lastRestartCount! });
});

test('EVENTLOG: garbage log', async () => {
  const a = await mach.attest(env.service, { log: randomBytes(200) });
  assert.is(code(a.reply), 'EVENTLOG');
});

test('REPLAY: changed digest, removed event, reordered events; changed data the quote does not bind changes nothing', async () => {
  const l = parseEventLog(LOG);
  const sbVar = l.events.findIndex((e) => e.pcr === 7 && e.decoded.kind === 'efi-variable');
  // The SecureBoot variable's data flipped, its digest kept: the TPM measured the real data, the
  // quoted PCR 7 is the known-good one, so the verdict is the honest boot's (the data is not read).
  const data = tampered((ev) => { const d = Buffer.from(ev[sbVar].data); d[d.length - 1] ^= 1; ev[sbVar] = { ...ev[sbVar], data: d }; return ev; });
  assert.is((await mach.attest(env.service, { log: data })).reply.t, 'released');
  let e: MessageOf<'error'>;

  const img = l.events.findIndex((e2) => e2.pcr === 4 && e2.decoded.kind === 'efi-image');
  const dig = tampered((ev) => { const d = new Map(ev[img].digests); d.set('sha256', randomBytes(32)); ev[img] = { ...ev[img], digests: d }; return ev; });
  e = err((await mach.attest(env.service, { log: dig })).reply);
  assert.is(e.code, 'REPLAY');
  assert.match(e.message, /PCR sha256:4: the log replays to/);

  const removed = tampered((ev) => ev.filter((_, i) => i !== img));
  e = err((await mach.attest(env.service, { log: removed })).reply);
  assert.is(e.code, 'REPLAY');
  assert.match(e.message, /PCR sha256:4/);

  const imgs = l.events.map((x, i) => (x.pcr === 4 && x.decoded.kind === 'efi-image' ? i : -1)).filter((i) => i >= 0);
  assert.ok(imgs.length >= 2);
  const reordered = tampered((ev) => { const t = ev[imgs[0]]; ev[imgs[0]] = ev[imgs[1]]; ev[imgs[1]] = t; return ev; });
  e = err((await mach.attest(env.service, { log: reordered })).reply);
  assert.is(e.code, 'REPLAY');
  assert.match(e.message, /PCR sha256:4/);

  // another boot's log (different PCR 4/9)
  e = err((await mach.attest(env.service, { log: qemuLog('uki-sb-off-cmdline2') })).reply);
  assert.is(e.code, 'REPLAY');
  assert.match(e.message, /PCR sha256:4/);
});

test('POLICY: a policy requiring Secure Boot (from the uki-sb-on boot) names every failed rule', async () => {
  const on = generatePolicy(unverifiedLog(parseEventLog(qemuLog('uki-sb-on'))), { bank: 'sha256' });
  const r = await env.service.handle(rt({ t: 'admin', adminToken: ADMIN, op: 'set-policy', machine: mach.id, policy: JSON.stringify(on) }), CTX);
  assert.is(r.t, 'admin-result');
  const e = err((await mach.attest(env.service)).reply);
  assert.is(e.code, 'POLICY');
  assert.ok(e.failures && e.failures.length >= 2, JSON.stringify(e));
  assert.ok(e.failures!.some((f) => f.startsWith('secure-boot:')), e.failures!.join('\n'));
  const shown = JSON.parse(((await env.service.handle(rt({ t: 'admin', adminToken: ADMIN, op: 'show', machine: mach.id }), CTX)) as MessageOf<'admin-result'>).json);
  assert.is(shown.lastResult, 'refused:POLICY');
  assert.ok(shown.lastReasons.some((x: string) => x.startsWith('secure-boot:')));
  // back to this boot's policy: released again
  const off = generatePolicy(unverifiedLog(parseEventLog(LOG)), { bank: 'sha256' });
  await env.service.handle(rt({ t: 'admin', adminToken: ADMIN, op: 'set-policy', machine: mach.id, policy: JSON.stringify(off) }), CTX);
  const ok = await mach.attest(env.service);
  assert.is(ok.reply.t, 'released', JSON.stringify(ok.reply).slice(0, 300));
  assert.ok((await unseal(ok.reply as MessageOf<'released'>)).equals(mach.share!));
});

test('audit: every release and refusal recorded with code and peer', async () => {
  const rows = await env.store.queryAudit({ machine: mach.id, limit: 1000 });
  const codes = new Set(rows.map((r) => r.code ?? r.action));
  for (const c of ['release', 'NONCE_USED', 'ALREADY_RELEASED', 'AK_MISMATCH', 'REVOKED', 'SIGNATURE', 'NONCE_EXPIRED', 'PCR_DIGEST', 'COUNTERS', 'EVENTLOG', 'REPLAY', 'POLICY']) {
    assert.ok(codes.has(c), `audit lacks ${c}: ${[...codes].join(',')}`);
  }
  assert.ok(rows.every((r) => r.peer === CTX.peer || r.who === 'admin' || r.peer));
});

test.run();
