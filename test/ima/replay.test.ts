/** Replay into PCR 10 and boot_aggregate, against the PCR values the TPMs of the real lists held. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { parseImaList } from '../../src/ima/list.ts';
import { replayIma, checkBootAggregate, templateHashOf, extendValue } from '../../src/ima/replay.ts';
import { LISTS, K61, K612, dirOf, pcrsOf, read } from './helpers.ts';

test('replay of every real list equals the TPM\'s PCR 10 in sha1 AND sha256 (the other bank recomputed from template data)', () => {
  for (const [path, bank] of LISTS) {
    const l = parseImaList(read(path), { bank });
    const r = replayIma(l.entries, l.bank, ['sha1', 'sha256']);
    const p = pcrsOf(dirOf(path));
    assert.is(r.entries, 11);
    for (const b of ['sha1', 'sha256'] as const) assert.is(r.pcr10.get(b)!.toString('hex'), p.get(b)!.get(10)!.toString('hex'), `${path} ${b}`);
    assert.is(r.skipped.size, 0);
  }
});

test('the two kernels\' lists differ but each replays to its own TPM (no value copied between captures)', () => {
  assert.is.not(pcrsOf(K61).get('sha256')!.get(10)!.toString('hex'), pcrsOf(K612).get('sha256')!.get(10)!.toString('hex'));
});

test('a violation extends all 0xFF in every bank, and its own recorded hash is all zeros in both banks', () => {
  for (const bank of ['sha1', 'sha256'] as const) {
    const l = parseImaList(read(K612 + `binary_runtime_measurements_${bank}`), { bank });
    const v = l.entries[8];
    assert.ok(v.violation && v.templateHash.every((b) => b === 0));
    assert.ok(extendValue(v, 'sha1', bank).equals(Buffer.alloc(20, 0xff)));
    assert.ok(extendValue(v, 'sha256', bank).equals(Buffer.alloc(32, 0xff)));
  }
});

test('the ima template hashes digest || name zero-padded to 256 bytes, in every bank', () => {
  const e = parseImaList(read(K612 + 'binary_runtime_measurements_sha256'), { bank: 'sha256' }).entries[6];
  assert.is(e.templateName, 'ima');
  const padded = Buffer.alloc(256); Buffer.from('/data/ima').copy(padded);
  const want = createHash('sha256').update(e.digest!).update(padded).digest();
  assert.ok(templateHashOf(e, 'sha256')!.equals(want));
  assert.ok(want.equals(e.templateHash), 'what the 6.12 kernel recorded in its sha256 list');
});

test('boot_aggregate: sha256 over PCRs 0-9 of the boot; refused with another boot\'s PCRs, a missing PCR, or a zero aggregate', () => {
  for (const dir of [K61, K612]) {
    const e0 = parseImaList(read(dir + 'binary_runtime_measurements')).entries[0];
    const ok = checkBootAggregate(e0, pcrsOf(dir));
    assert.ok(ok.ok, ok.reason);
    assert.is(ok.bank, 'sha256');
    assert.equal(ok.pcrs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  }
  const e0 = parseImaList(read(K61 + 'binary_runtime_measurements')).entries[0];
  const other = pcrsOf(K61);
  other.get('sha256')!.set(4, Buffer.alloc(32, 4));
  const bad = checkBootAggregate(e0, other);
  assert.not.ok(bad.ok);
  assert.match(bad.reason, /is not sha256 PCRs 0-9 of this boot/);
  const missing = pcrsOf(K61); missing.get('sha256')!.delete(9);
  assert.match(checkBootAggregate(e0, missing).reason, /lack sha256 PCR 9/);
  const zero = parseImaList(Buffer.from(`10 ${'00'.repeat(20)} ima-ng sha256:${'00'.repeat(32)} boot_aggregate\n`)).entries[0];
  assert.match(checkBootAggregate(zero, pcrsOf(K61)).reason, /no TPM/);
  const notFirst = parseImaList(read(K61 + 'binary_runtime_measurements')).entries[3];
  assert.not.ok(checkBootAggregate(notFirst, pcrsOf(K61)).ok);
});

test('a sha1 boot_aggregate (pre-5.8 kernels, TPM 1.2, sha1-only TPMs) covers PCRs 0-7 only', () => {
  const p = pcrsOf(K61);
  const h = createHash('sha1');
  for (let i = 0; i < 8; i++) h.update(p.get('sha1')!.get(i)!);
  const line = `10 ${'11'.repeat(20)} ima-ng sha1:${h.digest('hex')} boot_aggregate\n`;
  const r = checkBootAggregate(parseImaList(Buffer.from(line)).entries[0], p);
  assert.ok(r.ok, r.reason);
  assert.equal(r.pcrs, [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('an ASCII line of an unknown template replays in its own bank only; the other bank is reported skipped', () => {
  const l = parseImaList(Buffer.from(`10 ${'11'.repeat(20)} my-tmpl a b\n`));
  const r = replayIma(l.entries, l.bank, ['sha1', 'sha256']);
  assert.ok(r.pcr10.has('sha1'));
  assert.match(r.skipped.get('sha256')!, /unknown template cannot be replayed in sha256/);
});

test.run();
