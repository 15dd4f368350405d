/**
 * Server-side credentials and records (issue 10 §4), on the Service with a real swtpm machine:
 * enrolment tokens (scope, uses, expiry, revocation, stored hashed, audited), the admin token
 * refused for enrolment, permissive policies refused, EK_REVOKED on re-enrolment, delete only
 * after revoke, the LUKS2 token's binding (TOKEN_EK, TOKEN_RELEASED_PCR server-side,
 * TOKEN_SIGNATURE client-side), the per-machine budget spent only after the cheap checks, and
 * the released-PCR rules.
 */
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateKeyPairSync } from 'node:crypto';
import { TestMachine, makeEnv, qemuLog, rt, code, ADMIN, CTX, type TestEnv } from './_helpers.ts';
import { Service } from '../../src/server/service.ts';
import { RateLimiter } from '../../src/server/ratelimit.ts';
import { ServerError } from '../../src/server/errors.ts';
import { releasedPcrProblem } from '../../src/server/released-pcr.ts';
import { generatePolicy, type Policy } from '../../src/measuredboot/policy.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { verifyTokenSignature, validateToken, TokenError, type BootkeyToken } from '../../src/client/token.ts';
import { marshalPublic2B, unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import type { Message, MessageOf } from '../../src/protocol/messages.ts';

const LOG = qemuLog('uki-sb-off');
let env: TestEnv;
let svc: Service;
let mach: TestMachine;
let clock = Date.now();
const lines: string[] = [];

test.before(async () => {
  env = await makeEnv({ now: () => clock, log: (l) => lines.push(l) });
  svc = env.service;
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

async function admin(op: string, f: Partial<MessageOf<'admin'>> = {}, token = ADMIN): Promise<Message> {
  return svc.handle(rt({ t: 'admin', adminToken: token, op, ...f }), CTX);
}
async function adminOk<T = unknown>(op: string, f: Partial<MessageOf<'admin'>> = {}): Promise<T> {
  const r = await admin(op, f);
  assert.is(r.t, 'admin-result', JSON.stringify(r));
  return JSON.parse((r as MessageOf<'admin-result'>).json) as T;
}
async function newToken(f: Partial<MessageOf<'admin'>> = {}): Promise<{ id: string; token: string; uses: number; expiresAt: number }> {
  return adminOk('token-create', f);
}
async function auditRows(): Promise<{ action: string; machine?: string; reasons?: string[]; code?: string }[]> {
  return adminOk('audit', { limit: 1000 });
}

test('an enrolment token cannot administer: every admin op is refused TOKEN_SCOPE; the admin token cannot enrol', async () => {
  const t = await newToken({ uses: 3 });
  for (const op of ['list', 'show', 'set-policy', 'put-policy', 'add-boot', 'revoke', 'unrevoke', 'rotate', 'delete', 'audit', 'gc', 'token-create', 'token-list', 'token-revoke']) {
    const e = err(await admin(op, { machine: 'm-0000000000000000' }, t.token));
    assert.is(e.code, 'TOKEN_SCOPE', op);
  }
  const r = await mach.enroll(svc, { token: ADMIN });
  const e = err(r.reply);
  assert.is(e.code, 'TOKEN_SCOPE');
  assert.match(e.message, /admin token does not enrol/);
  assert.is(err((await mach.enroll(svc, { token: 'something-else-entirely' })).reply).code, 'AUTH');
  // a well-formed token string with a wrong secret
  assert.is(err((await mach.enroll(svc, { token: t.token.slice(0, -4) + 'AAAA' })).reply).code, 'AUTH');
  assert.is((await env.store.getEnrolToken(t.id))!.usesLeft, 3, 'refused requests spend no use');
});

test('enrolment token: one use; used up, expired and revoked tokens refused with the reason; finish needs the same token', async () => {
  const one = await newToken({ uses: 1, comment: 'rack 4' });
  assert.match(one.token, /^bkenrol\.t-[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/);
  const acc = await mach.enrollAndCommit(svc, one.token);
  assert.is(acc.t, 'enroll-accepted');
  let e = err((await mach.enroll(svc, { token: one.token })).reply);
  assert.is(e.code, 'TOKEN_USED_UP');
  assert.match(e.message, new RegExp(one.id));

  const short = await newToken({ uses: 5, ttl: 60 });
  clock += 61_000;
  e = err((await mach.enroll(svc, { token: short.token })).reply);
  assert.is(e.code, 'TOKEN_EXPIRED');
  assert.match(e.message, /expired/);

  const rv = await newToken({ uses: 5 });
  const revoked = await adminOk<{ id: string; revoked: boolean }>('token-revoke', { machine: rv.id });
  assert.equal(revoked, { id: rv.id, revoked: true });
  assert.is(err(await admin('token-revoke', { machine: rv.id })).code, 'BAD_REQUEST');
  assert.is(err(await admin('token-revoke', { machine: 't-0000000000000000' })).code, 'UNKNOWN_TOKEN');
  e = err((await mach.enroll(svc, { token: rv.token })).reply);
  assert.is(e.code, 'TOKEN_REVOKED');

  // begun with token A, finished with token B → AUTH (both valid)
  const a = await newToken({ uses: 2 });
  const b = await newToken({ uses: 2 });
  e = err((await mach.enroll(svc, { token: a.token, finish: (m) => { m.enrolToken = b.token; } })).reply);
  assert.is(e.code, 'AUTH');
  assert.match(e.message, /started with another enrolment token/);

  const list = await adminOk<{ id: string; state: string; usesLeft: number; comment: string }[]>('token-list');
  const st = Object.fromEntries(list.map((x) => [x.id, x.state]));
  assert.is(st[one.id], 'used-up');
  assert.is(st[short.id], 'expired');
  assert.is(st[rv.id], 'revoked');
  assert.is(list.find((x) => x.id === one.id)!.comment, 'rack 4');

  // the secret is nowhere but in the create reply: not in the list, the rows, the audit, the logs
  const rows = JSON.stringify(env.store.db.prepare('SELECT * FROM enrol_tokens').all().map((r) => Object.fromEntries(Object.entries(r as object).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('hex') : v]))));
  const audit = await auditRows();
  for (const t of [one, short, rv, a, b]) {
    const secret = t.token.split('.')[2];
    for (const [where, text] of [['token-list', JSON.stringify(list)], ['rows', rows], ['audit', JSON.stringify(audit)], ['log', lines.join('\n')]] as const) {
      assert.not.ok(text.includes(secret), `${where} holds the secret of ${t.id}`);
    }
    assert.ok(rows.includes(t.id));
  }
  // every create, use and revoke is audited
  assert.ok(audit.some((x) => x.action === 'admin-token-create' && x.reasons?.includes(`token ${one.id}`) && x.reasons?.includes('comment rack 4')));
  assert.ok(audit.some((x) => x.action === 'token-use' && x.reasons?.includes(`token ${one.id}`)));
  assert.ok(audit.some((x) => x.action === 'admin-token-revoke' && x.reasons?.includes(`token ${rv.id}`)));
  assert.ok(audit.some((x) => x.action === 'enroll-begin' && x.code === 'TOKEN_USED_UP'));
  assert.ok(audit.some((x) => x.action === 'enroll-commit' && x.machine === acc.machine && x.reasons?.includes(`token ${one.id}`)));
});

test('set-policy / put-policy refuse a permissive policy (PERMISSIVE_POLICY, with the reason) unless allowPermissive; audited', async () => {
  const empty: Policy = { version: 1, bank: 'sha256', pcrs: [0, 2, 4, 7], options: { allowAnyCmdline: false, allowAnyKernel: false }, rules: {} };
  const m = (await adminOk<{ id: string; state: string }[]>('list')).find((x) => x.state === 'active')!;
  let e = err(await admin('set-policy', { machine: m.id, policy: JSON.stringify(empty) }));
  assert.is(e.code, 'PERMISSIVE_POLICY');
  assert.match(e.message, /no rules: it matches every boot.*--allow-permissive/);
  const anyBoot: Policy = { ...empty, rules: { bootChain: { pcr: 4, stages: [{ role: 'uki', allowed: [], allowAny: true }] }, secureBoot: { pcr: 7, enabled: false } } };
  e = err(await admin('put-policy', { machine: 'anything', policy: JSON.stringify(anyBoot) }));
  assert.is(e.code, 'PERMISSIVE_POLICY');
  assert.match(e.message, /no rule pins the code/);
  await adminOk('put-policy', { machine: 'anything', policy: JSON.stringify(anyBoot), allowPermissive: true });
  const audit = await auditRows();
  assert.ok(audit.some((x) => x.action === 'admin-put-policy' && x.reasons?.includes('--allow-permissive')));
  // a real policy passes
  await adminOk('set-policy', { machine: m.id, policy: JSON.stringify(generatePolicy(unverifiedLog(parseEventLog(LOG)), { bank: 'sha256' })) });
});

test('re-enrolling a revoked EK: EK_REVOKED; unrevoke is audited and re-enables it; delete only after revoke', async () => {
  const m = (await adminOk<{ id: string; state: string }[]>('list')).find((x) => x.state === 'active')!;
  await adminOk('revoke', { machine: m.id });
  const t = await newToken({ uses: 3 });
  const e = err((await mach.enroll(svc, { token: t.token })).reply);
  assert.is(e.code, 'EK_REVOKED');
  assert.match(e.message, new RegExp(`revoked machine ${m.id}.*unrevoke`));
  assert.is((await env.store.getEnrolToken(t.id))!.usesLeft, 3, 'an EK_REVOKED refusal spends no use');
  assert.is((await env.store.getMachine(m.id))?.state, 'revoked', 'the revoked record is kept');
  await adminOk('unrevoke', { machine: m.id });
  let audit = await auditRows();
  assert.ok(audit.some((x) => x.action === 'admin-unrevoke' && x.machine === m.id));
  // re-enrolment now works and supersedes (audited) the old, active record
  const acc = await mach.enrollAndCommit(svc, t.token);
  assert.is(await env.store.getMachine(m.id), undefined);
  audit = await auditRows();
  assert.ok(audit.some((x) => x.action === 'superseded' && x.machine === m.id && x.reasons?.[0].includes(acc.machine)));
  // delete: refused while active, allowed once revoked; both audited
  const d = err(await admin('delete', { machine: acc.machine }));
  assert.is(d.code, 'NOT_REVOKED');
  await adminOk('revoke', { machine: acc.machine });
  assert.equal(await adminOk('delete', { machine: acc.machine }), { machine: acc.machine, deleted: true, was: 'revoked' });
  audit = await auditRows();
  assert.ok(audit.some((x) => x.action === 'admin-delete' && x.machine === acc.machine));
});

test('a doctored LUKS2 token: the server refuses another EK (TOKEN_EK) or released PCR (TOKEN_RELEASED_PCR); the client refuses a bad signature (TOKEN_SIGNATURE)', async () => {
  const acc = await mach.enrollAndCommit(svc);
  const otherEk = Buffer.from(mach.ek.name);
  otherEk[otherEk.length - 1] ^= 1;
  let e = err((await mach.attest(svc, { begin: { ekName: otherEk } })).reply);
  assert.is(e.code, 'TOKEN_EK');
  e = err((await mach.attest(svc, { begin: { releasedPcr: 14 } })).reply);
  assert.is(e.code, 'TOKEN_RELEASED_PCR');
  assert.match(e.message, /released PCR 14.*enrolled with 15/);
  // attest-finish alone (begin genuine, finish doctored): same refusals, no release
  e = err((await mach.attest(svc, { mutate: (m) => { m.ekName = otherEk; } })).reply);
  assert.is(e.code, 'TOKEN_EK');
  e = err((await mach.attest(svc, { mutate: (m) => { m.releasedPcr = 14; } })).reply);
  assert.is(e.code, 'TOKEN_RELEASED_PCR');
  const ok = await mach.attest(svc);
  assert.is(ok.reply.t, 'released', JSON.stringify(ok.reply).slice(0, 200));
  await mach.reboot();

  // client side: the token as the server signed it verifies with the key from attest-challenge
  const ch = await svc.handle(rt({ t: 'attest-begin', machine: acc.machine, akName: mach.ak.name, ...mach.binding() }), CTX);
  assert.is(ch.t, 'attest-challenge');
  const key = (ch as MessageOf<'attest-challenge'>).tokenKey;
  const token: BootkeyToken = validateToken({
    type: 'bootkey', keyslots: ['1'], servers: ['https://127.0.0.1:7443'], ca: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----', machine: acc.machine,
    ek: marshalPublic2B(mach.ek.public).toString('base64'), share: Buffer.alloc(32).toString('base64'), ek_alg: 'rsa', ak_alg: 'ecc',
    released_pcr: acc.releasedPcr, sig: acc.tokenSig.toString('base64'),
  });
  verifyTokenSignature(token, key);
  // another EK: the same template with another modulus (an attacker's key)
  const otherPub = unmarshalPublic2B(marshalPublic2B(mach.ek.public));
  if (otherPub.type !== TPM_ALG.RSA) throw new Error('the test machine has an RSA EK');
  otherPub.unique.rsa = Buffer.from(otherPub.unique.rsa);
  otherPub.unique.rsa[7] ^= 0x5a;
  {
    const doctored: [string, BootkeyToken][] = [
      ['other EK', { ...token, ek: marshalPublic2B(otherPub).toString('base64') }],
      ['other released PCR', { ...token, released_pcr: 14 }],
      ['other machine', { ...token, machine: 'm-0000000000000000' }],
    ];
    for (const [what, t] of doctored) {
      assert.throws(() => verifyTokenSignature(t, key), (x: unknown) => x instanceof TokenError && x.code === 'TOKEN_SIGNATURE' && /header was altered/.test((x as Error).message), what);
    }
  }
  // another server's key (a rewritten CA + servers pointing at an attacker's server) does not verify it either
  const foreign = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' });
  assert.throws(() => verifyTokenSignature(token, foreign), (x: unknown) => x instanceof TokenError && x.code === 'TOKEN_SIGNATURE');
  assert.throws(() => verifyTokenSignature(token, Buffer.from('junk')), (x: unknown) => x instanceof TokenError && x.code === 'TOKEN_SIGNATURE');
  assert.throws(() => validateToken({ ...token, sig: undefined }), (x: unknown) => x instanceof TokenError && /sig must be/.test((x as Error).message));
});

test('rate limit: a flood with the victim\'s machine id (wrong AK, or doctored token) spends nothing; the victim still gets its challenge', async () => {
  const limited = env.make({ machineLimiter: new RateLimiter({ burst: 3, perSecond: 0.0001 }) });
  const wrongAk = Buffer.concat([mach.ak.name.subarray(0, 2), Buffer.alloc(32, 9)]);
  const otherEk = Buffer.from(mach.ek.name);
  otherEk[5] ^= 0xff;
  const codes = new Set<string>();
  for (let i = 0; i < 50; i++) {
    codes.add(code(await limited.handle(rt({ t: 'attest-begin', machine: mach.id, akName: wrongAk, ...mach.binding() }), { peer: '198.51.100.66' })));
    codes.add(code(await limited.handle(rt({ t: 'attest-begin', machine: mach.id, akName: mach.ak.name, ekName: otherEk, releasedPcr: 15 }), { peer: '198.51.100.66' })));
    codes.add(code(await limited.handle(rt({ t: 'attest-finish', machine: mach.id, akName: wrongAk, ...mach.binding(), nonce: Buffer.alloc(32), quote: Buffer.alloc(10), signature: Buffer.alloc(10), pcrs: new Map(), eventLog: Buffer.alloc(0) }), { peer: '198.51.100.66' })));
  }
  assert.equal([...codes].sort(), ['AK_MISMATCH', 'TOKEN_EK']);
  const r = await mach.attest(limited);
  assert.is(r.reply.t, 'released', JSON.stringify(r.reply).slice(0, 200));
  await mach.reboot();
  // the machine's own requests do spend it (the limiter works): begin+finish = 2, then 1 more, then refused
  assert.is(code(await limited.handle(rt({ t: 'attest-begin', machine: mach.id, akName: mach.ak.name, ...mach.binding() }), CTX)), 'attest-challenge');
  assert.is(code(await limited.handle(rt({ t: 'attest-begin', machine: mach.id, akName: mach.ak.name, ...mach.binding() }), CTX)), 'RATE_LIMITED');
});

test('released PCR: 16, 17-22, 23 and policy PCRs refused with the reason (server start, enrolment, set-policy)', async () => {
  for (const [pcr, re] of [[16, /debug PCR/], [17, /DRTM/], [22, /DRTM/], [23, /application PCR/], [7, /one of the policy's PCRs/], [24, /not 0-23/]] as const) {
    assert.match(releasedPcrProblem(pcr, [0, 2, 4, 7]) ?? '', re, String(pcr));
    assert.throws(() => env.make({ releasedPcr: pcr }), (x: unknown) => x instanceof ServerError && x.code === 'CONFIG' && re.test((x as Error).message), String(pcr));
  }
  for (const pcr of [8, 11, 13, 14, 15]) assert.is(releasedPcrProblem(pcr, [0, 2, 4, 7]), undefined, String(pcr));
  // a named policy that quotes the released PCR itself
  const pol = generatePolicy(unverifiedLog(parseEventLog(LOG)), { bank: 'sha256', pcrs: [0, 2, 4, 7, 15] });
  await adminOk('put-policy', { machine: 'with-15', policy: JSON.stringify(pol) });
  const e = err((await mach.enroll(svc, { finish: (m) => { m.policy = 'with-15'; } })).reply);
  assert.is(e.code, 'BAD_RELEASED_PCR');
  assert.match(e.message, /released PCR 15 is one of the policy's PCRs/);
  // and set-policy on an enrolled machine
  await mach.enrollAndCommit(svc);
  const s = err(await admin('set-policy', { machine: mach.id, policy: JSON.stringify(pol) }));
  assert.is(s.code, 'BAD_RELEASED_PCR');
  // a server on PCR 14 enrols machines with 14 and seals to it
  const on14 = env.make({ releasedPcr: 14 });
  const acc = await mach.enrollAndCommit(on14);
  assert.is(acc.releasedPcr, 14);
  const r = await mach.attest(on14);
  assert.is(r.reply.t, 'released');
  assert.ok((r.reply as MessageOf<'released'>).sealedTo[0].pcrs.includes(14));
  await mach.reboot();
});

test.run();
