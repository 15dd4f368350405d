/**
 * The store contract: the same tests for every backend (SQLite, PostgreSQL). Two handles on
 * one database stand for two replicas. Backend-specific checks (the raw SQL that must be
 * refused, the schema table, where the bytes at rest live) come from the backend adapter.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { MAX_REFUSED_LOG, emptyRuntime, type MachineRecord, type Store } from '../../src/server/store.ts';
import { Vault, sha256 } from '../../src/server/secrets.ts';
import { newEnrolToken } from '../../src/server/enrol-tokens.ts';
import type { EnrolTokenRecord } from '../../src/server/store.ts';
import { ServerError } from '../../src/server/errors.ts';

export interface StoreBackend {
  name: string;
  /** Opens two handles (two "replicas") on one fresh, migrated database. */
  open(): Promise<{ a: Store; b: Store }>;
  /** Runs raw SQL on the database (throws what the database throws). */
  exec(sql: string): Promise<unknown>;
  /** Rows in schema_version. */
  schemaRows(): Promise<number>;
  /** Asserts that `share` is nowhere in clear at rest (files or raw rows). */
  assertNotAtRest(share: Buffer): Promise<void>;
  /** Every raw row of a table, as the database returns it. */
  rawRows(table: string): Promise<Record<string, unknown>[]>;
  /** Backend-specific extra check after migrate (e.g. SQLite's WAL mode). */
  afterMigrate?(): Promise<void>;
  close(): Promise<void>;
}

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match(String((e as Error).message), re);
    return;
  }
  assert.unreachable('expected a rejection');
}

export function storeContract(be: StoreBackend): void {
  const t = suite(`store contract: ${be.name}`);
  let a: Store;
  let b: Store;
  const vault = new Vault(randomBytes(32));

  t.before(async () => {
    ({ a, b } = await be.open());
  });
  t.after(async () => {
    await a?.close();
    await b?.close();
    await be.close();
  });

  const machine = (id: string, share: Buffer, over: Partial<MachineRecord> = {}): MachineRecord => {
    const now = Date.now();
    return {
      id, machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), ekName: Buffer.from('ekname-' + id), akPublic: Buffer.from('ak'), akName: Buffer.from('akname'),
      policy: '{}', shareSealed: vault.seal(share, id), state: 'active', releasedPcr: 15, created: now, updated: now, ...over,
    };
  };

  t('migrations are idempotent and recorded', async () => {
    assert.is(await a.schemaVersion(), 5);
    await a.migrate();
    await b.migrate();
    await Promise.all([a.migrate(), b.migrate()]);
    assert.is(await b.schemaVersion(), 5);
    assert.is(await be.schemaRows(), 5);
    await be.afterMigrate?.();
  });

  t('nonce: exactly one of many concurrent mark-used wins, across two handles', async () => {
    for (let round = 0; round < 5; round++) {
      const h = sha256(randomBytes(32));
      await a.putNonce({ hash: h, machine: 'm-1', purpose: 'attest', expiresAt: Date.now() + 60_000 });
      const now = Date.now();
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).consumeNonce(h, 'm-1', now)));
      assert.is(results.filter((r) => r === 'ok').length, 1);
      assert.is(results.filter((r) => r === 'used').length, 39);
    }
  });

  t('nonce: expired, unknown, other machine', async () => {
    const h = sha256(randomBytes(32));
    await a.putNonce({ hash: h, machine: 'm-1', purpose: 'attest', expiresAt: 1000 });
    assert.is(await a.consumeNonce(h, 'm-2', 2000), 'unknown');
    assert.is(await b.consumeNonce(h, 'm-1', 2000), 'expired');
    assert.is(await a.consumeNonce(h, 'm-1', 500), 'used', 'an expired nonce is burnt');
    assert.is(await a.consumeNonce(sha256('never'), 'm-1', 500), 'unknown');
  });

  t('nonce purpose: a stage nonce is not an attest nonce, nor the reverse', async () => {
    const h = sha256(randomBytes(32));
    await a.putNonce({ hash: h, machine: 'm-1', purpose: 'stage', expiresAt: Date.now() + 60_000 });
    assert.is(await b.consumeNonce(h, 'm-1', Date.now()), 'unknown');
    assert.is(await b.consumeNonce(h, 'm-1', Date.now(), 'attest'), 'unknown');
    assert.is(await a.consumeNonce(h, 'm-1', Date.now(), 'stage'), 'ok');
    assert.is(await b.consumeNonce(h, 'm-1', Date.now(), 'stage'), 'used');
  });

  t('staged boots: round trip, state changes only from the given states, use and retirement after keep releases, deleted with the machine', async () => {
    const now = Date.now();
    await a.createMachine(machine('m-st', randomBytes(32)));
    const rec = (id: string, created: number, state: 'pending' | 'active' = 'active') => ({
      id, machine: 'm-st', state, created, updated: created, label: 'kernel 6.1', mode: 'signed-by', prediction: '{"x":1}',
      knownGood: { '4': 'ab'.repeat(32) }, summary: ['boot-chain stage 0 (uki): ' + 'cd'.repeat(32)], used: false, unused: 0,
    });
    await a.putStaged(rec('s-0000000000000001', now));
    await a.putStaged(rec('s-0000000000000002', now + 1));
    await a.putStaged(rec('s-0000000000000003', now + 2, 'pending'));
    assert.equal(await b.getStaged('s-0000000000000001'), rec('s-0000000000000001', now));
    assert.equal((await b.listStaged('m-st')).map((x) => x.id), ['s-0000000000000001', 's-0000000000000002', 's-0000000000000003']);
    assert.ok((await b.listStaged()).length >= 3);
    assert.equal(await b.listStaged('m-none'), []);
    // Before any staged boot was used, releases count nothing.
    assert.equal(await a.recordStagedUse('m-st', [], 2, now), []);
    assert.is((await b.getStaged('s-0000000000000002'))!.unused, 0);
    // s-1 used: s-2 counts one unused release; the pending s-3 does not count.
    assert.equal(await a.recordStagedUse('m-st', ['s-0000000000000001'], 2, now), []);
    assert.equal([(await b.getStaged('s-0000000000000001'))!.used, (await b.getStaged('s-0000000000000002'))!.unused, (await b.getStaged('s-0000000000000003'))!.unused], [true, 1, 0]);
    // Two more releases of s-2: s-1 reaches keep and is retired.
    assert.equal(await b.recordStagedUse('m-st', ['s-0000000000000002'], 2, now), []);
    assert.equal(await a.recordStagedUse('m-st', ['s-0000000000000002'], 2, now), ['s-0000000000000001']);
    assert.is((await b.getStaged('s-0000000000000001'))!.state, 'retired');
    assert.is((await b.getStaged('s-0000000000000002'))!.unused, 0);
    // Approve once: from pending only, on either handle.
    const won = await Promise.all([a.setStagedState('s-0000000000000003', 'active', now, ['pending']), b.setStagedState('s-0000000000000003', 'active', now, ['pending'])]);
    assert.equal(won.filter(Boolean).length, 1);
    assert.not.ok(await a.setStagedState('s-0000000000000001', 'dropped', now, ['pending', 'active']));
    assert.ok(await a.setStagedState('s-0000000000000002', 'dropped', now, ['pending', 'active']));
    await a.setMachineState('m-st', 'revoked', now);
    assert.ok(await b.deleteMachine('m-st'));
    assert.equal(await a.listStaged('m-st'), []);
  });

  t('audit is append-only: UPDATE and DELETE refused', async () => {
    await a.audit({ time: 1, who: 'admin', action: 'x', result: 'ok', machine: 'm-1', reasons: ['r'], peer: '1.2.3.4' });
    await rejects(be.exec("UPDATE audit SET result = 'forged'"), /append-only/);
    await rejects(be.exec('DELETE FROM audit'), /append-only/);
    const rows = await b.queryAudit({ machine: 'm-1' });
    assert.is(rows.length, 1);
    assert.equal(rows[0].reasons, ['r']);
    assert.is(rows[0].peer, '1.2.3.4');
    assert.is(rows[0].result, 'ok');
    assert.type(rows[0].seq, 'number');
  });

  t('audit: concurrent appends from two handles are all kept, in order', async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).audit({ time: 2 + i, who: 'machine', action: 'release', result: 'ok', machine: 'm-audit' })));
    const rows = await a.queryAudit({ machine: 'm-audit', limit: 1000 });
    assert.is(rows.length, 50);
    assert.equal(rows.map((r) => r.seq), [...rows.map((r) => r.seq)].sort((x, y) => x - y));
  });

  t('encryption at rest: the share is never stored in clear; AAD binds the machine id', async () => {
    const share = randomBytes(32);
    await a.createMachine(machine('m-enc', share));
    const got = (await b.getMachine('m-enc'))!;
    assert.ok(vault.open(got.shareSealed, 'm-enc').equals(share));
    assert.throws(() => vault.open(got.shareSealed, 'm-other'), (e: unknown) => e instanceof ServerError && e.code === 'DECRYPT');
    await be.assertNotAtRest(share);
  });

  t('records round-trip (bytes, numbers, optional fields)', async () => {
    const m = machine('m-rt', randomBytes(32), { lastResult: 'enrolled', lastTime: 1_700_000_000_123, lastReasons: ['a', 'b'], lastResetCount: 7, lastRestartCount: 2 ** 32 - 1 });
    await a.createMachine(m);
    const got = (await b.getMachine('m-rt'))!;
    assert.equal({ ...got, shareSealed: got.shareSealed.toString('hex') }, { ...m, shareSealed: m.shareSealed.toString('hex') });
    assert.ok((await b.listMachines()).some((x) => x.id === 'm-rt'));
    await a.recordResult('m-rt', { result: 'refused:POLICY', time: 5, reasons: ['x'] });
    const r2 = (await b.getMachine('m-rt'))!;
    assert.is(r2.lastResult, 'refused:POLICY');
    assert.is(r2.lastResetCount, 7, 'counters only on success');
    await a.putNamedPolicy('fleet', '{"x":1}', 1);
    await b.putNamedPolicy('fleet', '{"x":2}', 2);
    assert.is(await a.getNamedPolicy('fleet'), '{"x":2}');
    assert.is(await a.getNamedPolicy('none'), undefined);
  });

  t('state and policy changes on one handle are seen by the other at once', async () => {
    await a.createMachine(machine('m-rev', randomBytes(32)));
    assert.is((await b.getMachine('m-rev'))!.state, 'active');
    assert.ok(await a.setMachineState('m-rev', 'revoked', Date.now(), ['active', 'pending']));
    assert.is((await b.getMachine('m-rev'))!.state, 'revoked');
    assert.not.ok(await b.setMachineState('m-rev', 'revoked', Date.now(), ['active', 'pending']), 'already revoked');
    assert.ok(await b.setPolicy('m-rev', '{"p":1}', Date.now()));
    assert.is((await a.getMachine('m-rev'))!.policy, '{"p":1}');
    const sealed = vault.seal(randomBytes(32), 'm-rev');
    assert.ok(await a.setShare('m-rev', sealed, Date.now()));
    assert.ok((await b.getMachine('m-rev'))!.shareSealed.equals(sealed));
    assert.ok(await b.deleteMachine('m-rev'));
    assert.is(await a.getMachine('m-rev'), undefined);
    assert.not.ok(await a.deleteMachine('m-rev'));
  });

  t('enrolment transactions: finish once; commit supersedes the old record of the same EK; abort removes the pending machine', async () => {
    const now = Date.now();
    const enr = (id: string) => ({ id, machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), akPublic: Buffer.from('ak'), secretHash: sha256('s'), nonce: randomBytes(32), expiresAt: now + 300_000, created: now });
    await a.createMachine(machine('m-old', randomBytes(32), { ekName: Buffer.from('same-ek') }));
    await a.putEnrollment(enr('e-1'));
    const e1 = (await b.getEnrollment('e-1'))!;
    assert.is(e1.expiresAt, now + 300_000);
    assert.is(e1.machine, undefined);
    assert.ok(await a.finishEnrollment('e-1', machine('m-new', randomBytes(32), { ekName: Buffer.from('same-ek'), state: 'pending' })));
    assert.not.ok(await b.finishEnrollment('e-1', machine('m-new2', randomBytes(32), { state: 'pending' })));
    assert.is(await a.getMachine('m-new2'), undefined, 'nothing half-written');
    assert.is(await a.commitEnrollment('e-1', now), 'm-new');
    assert.is((await a.getMachine('m-new'))!.state, 'active');
    assert.is(await a.getMachine('m-old'), undefined, 're-enrolment supersedes the old record');
    assert.is(await a.commitEnrollment('e-1', now), undefined);

    await a.putEnrollment(enr('e-2'));
    await a.finishEnrollment('e-2', machine('m-p', randomBytes(32), { state: 'pending' }));
    assert.ok(await a.abortEnrollment('e-2'));
    assert.is(await a.getMachine('m-p'), undefined);
    assert.not.ok(await b.abortEnrollment('e-2'));
  });

  t('enrolment: concurrent finish and commit from two handles: exactly one wins', async () => {
    const now = Date.now();
    await a.putEnrollment({ id: 'e-race', machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), akPublic: Buffer.from('ak'), secretHash: sha256('s'), nonce: randomBytes(32), expiresAt: now + 300_000, created: now });
    const fin = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).finishEnrollment('e-race', machine(`m-race${i}`, randomBytes(32), { state: 'pending' }))));
    assert.is(fin.filter(Boolean).length, 1);
    const com = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).commitEnrollment('e-race', now)));
    assert.is(com.filter((x) => x !== undefined).length, 1);
  });

  t('enrolment tokens: stored hashed (no row holds the secret); uses taken atomically across two handles; expired, revoked, used-up named', async () => {
    const now = Date.now();
    const tok = newEnrolToken();
    const rec: EnrolTokenRecord = { id: tok.id, hash: tok.hash, comment: 'rack 4', created: now, expiresAt: now + 3600_000, uses: 5, usesLeft: 5 };
    await a.putEnrolToken(rec);
    const raw = JSON.stringify((await be.rawRows('enrol_tokens')).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('hex') : v]))));
    const secret = tok.token.split('.')[2];
    assert.ok(raw.includes(tok.id), 'the id is stored');
    assert.not.ok(raw.includes(secret), 'the secret is not stored');
    assert.not.ok(raw.includes(Buffer.from(secret).toString('hex')), 'the secret is not stored as bytes');
    assert.not.ok(raw.includes(Buffer.from(secret, 'base64url').toString('hex')), 'the secret is not stored decoded');
    assert.ok(raw.includes(tok.hash.toString('hex')), 'its digest is');
    assert.equal(await b.getEnrolToken(tok.id), rec);
    // 12 concurrent uses of a 5-use token from two handles: exactly 5 win
    const uses = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).useEnrolToken(tok.id, now)));
    assert.is(uses.filter((u) => u === 'ok').length, 5);
    assert.is(uses.filter((u) => u === 'used-up').length, 7);
    assert.is((await a.getEnrolToken(tok.id))!.usesLeft, 0);
    assert.is((await a.getEnrolToken(tok.id))!.lastUsed, now);
    const exp = newEnrolToken();
    await b.putEnrolToken({ ...rec, id: exp.id, hash: exp.hash, expiresAt: now - 1 });
    assert.is(await a.useEnrolToken(exp.id, now), 'expired');
    const rv = newEnrolToken();
    await b.putEnrolToken({ ...rec, id: rv.id, hash: rv.hash });
    assert.ok(await a.revokeEnrolToken(rv.id, now));
    assert.not.ok(await b.revokeEnrolToken(rv.id, now), 'revoked once');
    assert.is(await b.useEnrolToken(rv.id, now), 'revoked');
    assert.is((await b.getEnrolToken(rv.id))!.usesLeft, 5, 'a refused use takes nothing');
    assert.is(await a.useEnrolToken('t-0000000000000000', now), 'unknown');
    assert.ok((await b.listEnrolTokens()).map((t) => t.id).includes(rv.id));
    // enrolments remember their token
    await a.putEnrollment({ id: 'e-tok', machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), akPublic: Buffer.from('ak'), secretHash: sha256('s'), nonce: randomBytes(32), expiresAt: now + 300_000, created: now, tokenId: tok.id });
    assert.is((await b.getEnrollment('e-tok'))!.tokenId, tok.id);
  });

  t('re-enrolment commit supersedes an active record of the same EK, never a revoked one; machinesByEkName', async () => {
    const now = Date.now();
    const ek = Buffer.from('ek-revoked-' + now);
    await a.createMachine(machine('m-rv-old', randomBytes(32), { ekName: ek, state: 'revoked' }));
    await a.putEnrollment({ id: 'e-rv', machineId: 'mid', hostname: 'h', ekPublic: Buffer.from('ek'), akPublic: Buffer.from('ak'), secretHash: sha256('s'), nonce: randomBytes(32), expiresAt: now + 300_000, created: now });
    await a.finishEnrollment('e-rv', machine('m-rv-new', randomBytes(32), { ekName: ek, state: 'pending' }));
    assert.equal((await b.machinesByEkName(ek)).map((m) => [m.id, m.state]).sort(), [['m-rv-new', 'pending'], ['m-rv-old', 'revoked']]);
    assert.is(await b.commitEnrollment('e-rv', now), 'm-rv-new');
    assert.is((await a.getMachine('m-rv-old'))?.state, 'revoked', 'the revoked record is kept');
    await a.deleteMachine('m-rv-old');
    await a.deleteMachine('m-rv-new');
  });

  t('gc: pending machines older than the cut-off and expired enrolments go; active ones stay', async () => {
    const now = Date.now();
    await a.createMachine(machine('m-stale', randomBytes(32), { state: 'pending', created: now - 11 * 60_000 }));
    await a.createMachine(machine('m-fresh', randomBytes(32), { state: 'pending', created: now }));
    const n = await a.gc(now, now - 10 * 60_000);
    assert.is(n, 1);
    assert.is(await a.getMachine('m-stale'), undefined);
    assert.ok(await a.getMachine('m-fresh'));
    assert.ok(await a.getMachine('m-new'));
  });

  t('refused boot: latest only per machine, bounded, seen by the other replica, gone with the machine; machineStats counts', async () => {
    const now = Date.now();
    await a.createMachine(machine('m-rb', randomBytes(32)));
    await a.putRefusedBoot({ machine: 'm-rb', time: now, code: 'POLICY', eventLog: Buffer.from('first'), pcrs: '{}' });
    await b.putRefusedBoot({ machine: 'm-rb', time: now + 1, code: 'REPLAY', eventLog: Buffer.from('second'), pcrs: '{"sha256":{}}' });
    const rb = await a.getRefusedBoot('m-rb');
    assert.is(rb?.code, 'REPLAY');
    assert.ok(rb?.eventLog.equals(Buffer.from('second')));
    assert.is(rb?.time, now + 1);
    assert.is((await be.rawRows('refused_boots')).filter((r) => r.machine === 'm-rb').length, 1, 'latest only');
    await rejects(a.putRefusedBoot({ machine: 'm-rb', time: now, code: 'POLICY', eventLog: Buffer.alloc(MAX_REFUSED_LOG + 1), pcrs: '{}' }), /exceeds/);
    await a.recordResult('m-rb', { result: 'refused:POLICY', time: now });
    const s = await b.machineStats();
    const all = await b.listMachines();
    assert.is(s.active + s.pending + s.revoked, all.length);
    assert.is(s.failed, all.filter((m) => (m.lastResult ?? '').startsWith('refused:')).length);
    assert.ok(s.failed >= 1);
    await a.setMachineState('m-rb', 'revoked', now);
    await a.deleteMachine('m-rb');
    assert.is(await b.getRefusedBoot('m-rb'), undefined);
  });

  t('runtime: a row per machine, compare-and-set on version across replicas, every field round-trips, gone with the machine', async () => {
    const now = Date.now();
    await a.createMachine(machine('m-ima', randomBytes(32)));
    assert.is(await a.getRuntime('m-ima'), undefined);
    await a.putRuntimePolicy('ab'.repeat(32), '{"p":1}', now);
    await b.putRuntimePolicy('ab'.repeat(32), '{"p":2}', now + 1); // content-addressed: the first stays
    assert.is(await b.getRuntimePolicy('ab'.repeat(32)), '{"p":1}');
    assert.is(await a.getRuntimePolicy('cd'.repeat(32)), undefined);
    const r0 = { ...emptyRuntime('m-ima', now), policyHash: 'ab'.repeat(32), staleLimit: 3600, lastReport: now };
    assert.ok(await a.saveRuntime(r0), 'insert at version 0');
    assert.not.ok(await b.saveRuntime(r0), 'a second insert loses');
    const r1 = (await b.getRuntime('m-ima'))!;
    assert.is(r1.version, 1);
    assert.is(r1.policyHash, 'ab'.repeat(32));
    assert.is(r1.staleLimit, 3600);
    const next = {
      ...r1, state: 'failed' as const, resetCount: 7, restartCount: 2, bootDigest: randomBytes(32), count: 20000, pcr10: '{"sha256":"00"}',
      learnedKeys: '[{"keyring":".ima","data":"AA=="}]', reason: 'POLICY: 1 entry', failedAt: now + 5, failures: ['entry 3 /tmp/x: not allowed'], approvedUntil: now + 9, updated: now + 10,
    };
    assert.ok(await b.saveRuntime(next), 'replica b updates version 1');
    assert.not.ok(await a.saveRuntime({ ...r1, count: 1 }), 'replica a, still at version 1, loses');
    const got = (await a.getRuntime('m-ima'))!;
    assert.is(got.version, 2);
    assert.equal({ ...got, bootDigest: got.bootDigest?.toString('hex') }, { ...next, version: 2, bootDigest: next.bootDigest.toString('hex') });
    assert.ok((await b.listRuntime()).some((x) => x.machine === 'm-ima'));
    // Optional fields back to absent.
    assert.ok(await a.saveRuntime({ ...got, policyHash: undefined, staleLimit: undefined, bootDigest: undefined, approvedUntil: undefined }));
    const cleared = (await b.getRuntime('m-ima'))!;
    assert.is(cleared.policyHash, undefined);
    assert.is(cleared.bootDigest, undefined);
    assert.is(cleared.approvedUntil, undefined);
    await a.setMachineState('m-ima', 'revoked', now);
    await a.deleteMachine('m-ima');
    assert.is(await b.getRuntime('m-ima'), undefined);
  });

  t.run();
}
