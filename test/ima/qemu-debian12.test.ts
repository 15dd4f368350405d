/**
 * Real IMA lists captured from Debian 12's kernel under QEMU + swtpm (test/data/ima/qemu-debian12,
 * PROVENANCE.md there): bootkey's parser and replay reach the TPM's PCR 10 in both banks from the
 * binary and the ASCII list, boot_aggregate matches the boot's PCRs (sha256: 0-9, sha1: 0-7), and a
 * doctored list that keeps every recorded template hash (so a naive replay of the sha1 bank still
 * matches) is caught: the recomputed hash differs and the sha256 replay misses the quoted PCR 10.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join, resolve } from 'node:path';
import { parseImaList } from '../../src/ima/list.ts';
import { replayIma, checkBootAggregate, checkTemplateHash } from '../../src/ima/replay.ts';
import type { BankName, PcrValues } from '../../src/pcrs.ts';

const DIR = resolve(import.meta.dirname, '../data/ima/qemu-debian12');
const VARIANTS = [
  { name: 'sig-sha256', template: 'ima-sig', algo: 'sha256', aggBank: 'sha256', aggPcrs: 10 },
  { name: 'ng-sha1', template: 'ima-ng', algo: 'sha1', aggBank: 'sha1', aggPcrs: 8 },
] as const;

function pcrs(v: string): PcrValues {
  const j = JSON.parse(readFileSync(join(DIR, v, 'pcrs.json'), 'utf8')) as Record<string, Record<string, string>>;
  const out: PcrValues = new Map();
  for (const [bank, m] of Object.entries(j)) out.set(bank as BankName, new Map(Object.entries(m).map(([i, h]) => [Number(i), Buffer.from(h, 'hex')])));
  return out;
}
const file = (v: string, f: string) => gunzipSync(readFileSync(join(DIR, v, f)));

for (const v of VARIANTS) {
  test(`${v.name}: binary and ASCII lists replay to the TPM's PCR 10 (sha1 and sha256), boot_aggregate = ${v.aggBank} PCRs 0-${v.aggPcrs - 1}`, () => {
    const p = pcrs(v.name);
    const count = Number(file(v.name, 'runtime_measurements_count.gz').toString().trim());
    for (const f of ['binary_runtime_measurements.gz', 'ascii_runtime_measurements.gz']) {
      const list = parseImaList(file(v.name, f));
      assert.is(list.entries.length, count, f);
      assert.is(list.bank, 'sha1');
      assert.ok(list.entries.slice(1).every((e) => e.templateName === v.template && e.digestAlgo === v.algo), f);
      assert.ok(list.entries.some((e) => e.path === '/usr/local/bin/bk-hello'), 'the executed script is measured');
      const r = replayIma(list.entries, list.bank, ['sha1', 'sha256']);
      for (const bank of ['sha1', 'sha256'] as const) assert.is(r.pcr10.get(bank)!.toString('hex'), p.get(bank)!.get(10)!.toString('hex'), `${f} ${bank}`);
      const agg = checkBootAggregate(list.entries[0], p);
      assert.ok(agg.ok, agg.reason);
      assert.is(agg.bank, v.aggBank);
      assert.is(agg.pcrs.length, v.aggPcrs);
    }
  });

  test(`${v.name}: a doctored path with the recorded template hash kept is caught (template hash check, sha256 replay)`, () => {
    const bin = file(v.name, 'binary_runtime_measurements.gz');
    const i = bin.indexOf(Buffer.from('/usr/local/bin/bk-hello'));
    assert.ok(i > 0);
    const doctored = Buffer.from(bin);
    Buffer.from('/usr/local/bin/bk-jello').copy(doctored, i); // same length: the framing still parses
    const list = parseImaList(doctored);
    const e = list.entries.find((x) => x.path === '/usr/local/bin/bk-jello')!;
    assert.ok(e);
    assert.is(checkTemplateHash(e, 'sha1'), 'mismatch', 'the recorded sha1 template hash no longer matches the data');
    const r = replayIma(list.entries, list.bank, ['sha256']);
    assert.is.not(r.pcr10.get('sha256')!.toString('hex'), pcrs(v.name).get('sha256')!.get(10)!.toString('hex'));
    // boot_aggregate against another boot's PCRs: refused with the reason
    const other = pcrs(v.name);
    other.get(v.aggBank)!.set(4, Buffer.alloc(v.aggBank === 'sha1' ? 20 : 32, 0xaa));
    const agg = checkBootAggregate(list.entries[0], other);
    assert.not.ok(agg.ok);
    assert.match(agg.reason, /is not .* PCRs 0-/);
  });
}

test.run();
