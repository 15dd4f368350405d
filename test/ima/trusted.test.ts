/**
 * bindImaToQuote, the trust boundary: honest lists bind to the quoted PCR 10; doctored lists whose
 * quoted PCR 10 stays the same are refused with their reason (attacker's tests).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { parseImaList } from '../../src/ima/list.ts';
import * as trustedModule from '../../src/ima/trusted.ts';
import { bindImaToQuote, ImaBindError, TrustedImaEntries, unverifiedImaEntries } from '../../src/ima/trusted.ts';
import type { ImaEntry } from '../../src/ima/types.ts';
import { K61, K612, pcr10, read } from './helpers.ts';

const ZERO = { count: 0, pcr10: {} };
const bin61 = () => Buffer.from(read(K61 + 'binary_runtime_measurements'));
const entries61 = () => parseImaList(bin61()).entries;

function refused(fn: () => unknown, code: string, re: RegExp): ImaBindError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ImaBindError);
    assert.is((e as ImaBindError).code, code, (e as Error).message);
    assert.match((e as Error).message, re);
    return e as ImaBindError;
  }
  throw new Error('expected an ImaBindError');
}

test('honest: the whole list binds to the quoted PCR 10 of both banks (binary and ASCII, both kernels, both list banks)', () => {
  for (const [path, bank, dir] of [[K61 + 'binary_runtime_measurements', 'sha1', K61], [K61 + 'ascii_runtime_measurements', 'sha1', K61], [K612 + 'binary_runtime_measurements_sha256', 'sha256', K612], [K612 + 'ascii_runtime_measurements_sha256', 'sha256', K612]] as const) {
    const l = parseImaList(read(path), { bank });
    const b = bindImaToQuote(l.entries, l.bank, ZERO, pcr10(dir));
    assert.ok(b.trusted.verified);
    assert.is(b.trusted.entries.length, 11);
    assert.is(b.unbound, 0);
    assert.is(b.state.count, 11);
    assert.is(b.state.pcr10.sha256, pcr10(dir).get('sha256')!.toString('hex'));
    assert.equal(b.quirks, []);
    // One quoted bank suffices, and it need not be the list's.
    assert.is(bindImaToQuote(l.entries, l.bank, ZERO, pcr10(dir, ['sha256'])).state.count, 11);
    assert.is(bindImaToQuote(l.entries, l.bank, ZERO, pcr10(dir, ['sha1'])).state.count, 11);
  }
});

test('attack: a path changed in the binary list, its template hash kept → REPLAY naming that entry', () => {
  const b = bin61();
  const at = b.indexOf('/bin/busybox');
  b.write('/bin/evilbox', at, 'latin1');
  const e = refused(() => bindImaToQuote(parseImaList(b).entries, 'sha1', ZERO, pcr10(K61)), 'REPLAY', /entry 2 "\/bin\/evilbox" \(byte 1543\).*not the hash of its template data.*altered/);
  assert.is(e.entryIndex, 2);
});

test('attack: a file digest changed in the ASCII list, its template hash kept → REPLAY naming the line; quoting only the other bank does not help', () => {
  const text = read(K61 + 'ascii_runtime_measurements').toString('latin1').replace('sha256:c63e3d4e', 'sha256:00000000');
  const l = parseImaList(Buffer.from(text, 'latin1'));
  refused(() => bindImaToQuote(l.entries, 'sha1', ZERO, pcr10(K61)), 'REPLAY', /entry 3 "\/data\/ng" \(line 4\)/);
  refused(() => bindImaToQuote(l.entries, 'sha1', ZERO, pcr10(K61, ['sha256'])), 'REPLAY', /entry 3/);
});

test('attack: template hash and data both changed (consistent entry) → REPLAY: PCR 10 is not reached', () => {
  const l = entries61().map((e) => e.index === 4 ? forge(e, '/data/sig', '/data/xyz') : e);
  refused(() => bindImaToQuote(l, 'sha1', ZERO, pcr10(K61)), 'REPLAY', /do not replay to the quoted PCR 10 at any point/);
});

/** A consistent forgery: the name changed AND the sha1 template hash recomputed. */
function forge(e: ImaEntry, from: string, to: string): ImaEntry {
  const i = e.templateData.indexOf(from);
  const templateData = Buffer.from(e.templateData);
  templateData.write(to, i, 'latin1');
  return { ...e, templateData, path: to, templateHash: createHash('sha1').update(templateData).digest() };
}

test('attack: an entry removed (a file hidden) → REPLAY', () => {
  const l = entries61().filter((e) => e.index !== 7).map((e, i) => ({ ...e, index: i }));
  refused(() => bindImaToQuote(l, 'sha1', ZERO, pcr10(K61)), 'REPLAY', /at any point/);
});

test('entries after the quote (the kernel appended after quoting) are not bound; they come in the next report', () => {
  const l = entries61();
  // A quote taken after entry 6: the running value after 7 entries.
  const q = new Map<'sha1' | 'sha256', Buffer>();
  // Bind the 7-entry prefix against itself to get its PCR 10 (what a quote then would show).
  const prefixState = replayPrefix(l, 7);
  q.set('sha1', Buffer.from(prefixState.sha1!, 'hex')); q.set('sha256', Buffer.from(prefixState.sha256!, 'hex'));
  const b = bindImaToQuote(l, 'sha1', ZERO, q);
  assert.is(b.trusted.entries.length, 7);
  assert.is(b.unbound, 4);
  assert.is(b.state.count, 7);
  assert.equal(b.trusted.entries.map((e) => e.index), [0, 1, 2, 3, 4, 5, 6]);
});

import { replayIma } from '../../src/ima/replay.ts';
function replayPrefix(l: readonly ImaEntry[], n: number) {
  const r = replayIma(l.slice(0, n), 'sha1', ['sha1', 'sha256']);
  return { sha1: r.pcr10.get('sha1')!.toString('hex'), sha256: r.pcr10.get('sha256')!.toString('hex') };
}

test('incremental: a stored state continues the chain with only the new entries (firstIndex), and a wrong state is refused', () => {
  const all = entries61();
  const first = bindImaToQuote(all, 'sha1', ZERO, new Map([['sha1', Buffer.from(replayPrefix(all, 5).sha1, 'hex')], ['sha256', Buffer.from(replayPrefix(all, 5).sha256, 'hex')]]));
  assert.is(first.state.count, 5);
  // The next report carries entries 5.. only, parsed from a cut binary list.
  const cut = bin61().subarray(all[5].offset);
  const rest = parseImaList(cut, { bank: 'sha1', firstIndex: 5 }).entries;
  assert.is(rest[0].index, 5);
  const next = bindImaToQuote(rest, 'sha1', first.state, pcr10(K61));
  assert.is(next.state.count, 11);
  assert.is(next.trusted.entries.length, 6);
  assert.equal(next.state.pcr10, { sha1: pcr10(K61).get('sha1')!.toString('hex'), sha256: pcr10(K61).get('sha256')!.toString('hex') });
  // The whole list with the stored state: entries below 5 are skipped, not re-read.
  assert.is(bindImaToQuote(all, 'sha1', first.state, pcr10(K61)).trusted.entries[0].index, 5);
  // Wrong start state (another machine's value): REPLAY.
  const wrong = { count: 5, pcr10: { sha1: '11'.repeat(20), sha256: first.state.pcr10.sha256! } };
  refused(() => bindImaToQuote(rest, 'sha1', wrong, pcr10(K61)), 'REPLAY', /at any point/);
  // A state without a quoted bank's value, or malformed: BAD_START.
  refused(() => bindImaToQuote(rest, 'sha1', { count: 5, pcr10: { sha1: first.state.pcr10.sha1! } }, pcr10(K61)), 'BAD_START', /no sha256 PCR 10/);
  refused(() => bindImaToQuote(rest, 'sha1', { count: 5, pcr10: { sha1: 'zz', sha256: 'zz' } }, pcr10(K61)), 'BAD_START', /not 20 bytes of hex/);
  // Entries missing between the state and the report: BAD_START.
  refused(() => bindImaToQuote(rest.slice(2), 'sha1', first.state, pcr10(K61)), 'BAD_START', /entries 5-6 are missing/);
  refused(() => bindImaToQuote(rest, 'sha1', { count: -1, pcr10: {} }, pcr10(K61)), 'BAD_START', /not a count/);
});

test('a state that already equals the quote binds nothing new (no entries since)', () => {
  const all = entries61();
  const done = bindImaToQuote(all, 'sha1', ZERO, pcr10(K61));
  const again = bindImaToQuote([], 'sha1', done.state, pcr10(K61));
  assert.is(again.trusted.entries.length, 0);
  assert.is(again.state.count, 11);
});

test('a violation entry binds and is marked; changing its fields does not move PCR 10 (they are not bound)', () => {
  const all = entries61();
  const b = bindImaToQuote(all, 'sha1', ZERO, pcr10(K61));
  const v = b.trusted.entries.find((e) => e.violation)!;
  assert.is(v.index, 8);
  assert.is(v.path, '/data/buf');
  const moved = all.map((e) => e.index === 8 ? { ...e, path: '/elsewhere', templateData: Buffer.alloc(0) } : e);
  assert.is(bindImaToQuote(moved, 'sha1', ZERO, pcr10(K61)).state.count, 11, 'a violation extends 0xFF whatever its fields say: consumers must not trust them');
});

test('kernels before 5.8 (sha256 bank extended with the zero-padded sha1 template hash): bound with the quirk reported', () => {
  const all = entries61();
  let v = Buffer.alloc(32);
  for (const e of all) {
    const x = Buffer.alloc(32);
    (e.violation ? Buffer.alloc(20, 0xff) : e.templateHash).copy(x);
    if (e.violation) x.fill(0xff);
    v = createHash('sha256').update(v).update(x).digest();
  }
  const b = bindImaToQuote(all, 'sha1', ZERO, new Map([['sha1', pcr10(K61).get('sha1')!], ['sha256', v]]));
  assert.equal(b.quirks, ['pre-5.8-padded-sha1']);
  assert.is(b.state.count, 11);
});

test('no quoted bank / wrong digest size → NO_BANK; an ASCII unknown template cannot bind another bank', () => {
  refused(() => bindImaToQuote(entries61(), 'sha1', ZERO, new Map()), 'NO_BANK', /no quoted PCR 10/);
  refused(() => bindImaToQuote(entries61(), 'sha1', ZERO, new Map([['sha256', Buffer.alloc(20)]])), 'NO_BANK', /has 20 bytes/);
  const l = parseImaList(Buffer.from(`10 ${'11'.repeat(20)} my-tmpl a b\n`));
  refused(() => bindImaToQuote(l.entries, 'sha1', ZERO, new Map([['sha256', Buffer.alloc(32, 1)]])), 'NO_BANK', /unknown template/);
  // ... and the pre-5.8 quirk (padded sha1 into sha256) takes its recorded sha1 without failing.
  const v = createHash('sha256').update(Buffer.alloc(32)).update(Buffer.concat([l.entries[0].templateHash, Buffer.alloc(12)])).digest();
  assert.equal(bindImaToQuote(l.entries, 'sha1', ZERO, new Map([['sha256', v]])).quirks, ['pre-5.8-padded-sha1']);
});

test('TrustedImaEntries is made only here: the constructor refuses other callers; unverified lists say so', () => {
  assert.throws(() => new TrustedImaEntries(Symbol('x') as never, [], true), /use bindImaToQuote/);
  assert.is(unverifiedImaEntries(entries61()).verified, false);
  // The constructor's key does not leave the module.
  assert.not.ok(Object.values(trustedModule).some((v) => typeof v === 'symbol'));
});


test('an entry for another PCR (a pcr= rule) extends nothing in PCR 10: counted, not bound', () => {
  const b = bin61();
  const all = parseImaList(b).entries;
  b.writeUInt32LE(11, all[5].offset);
  const l = parseImaList(b).entries;
  assert.is(l[5].pcr, 11);
  const r = replayIma(l, 'sha1', ['sha1', 'sha256']);
  const q = new Map([['sha1', r.pcr10.get('sha1')!], ['sha256', r.pcr10.get('sha256')!]] as const);
  const bound = bindImaToQuote(l, 'sha1', ZERO, q as never);
  assert.is(bound.state.count, 11);
  assert.is(bound.trusted.entries.length, 10);
  assert.not.ok(bound.trusted.entries.some((e) => e.index === 5));
  // The real quote (the kernel extended it into PCR 10) does not match such a list.
  refused(() => bindImaToQuote(l, 'sha1', ZERO, pcr10(K61)), 'REPLAY', /at any point/);
});

test.run();
