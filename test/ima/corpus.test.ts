/**
 * Every QEMU capture in test/data/ima (qemu-*: a Debian kernel, swtpm, the lists and the TPM's PCRs
 * read right after them): every list file, binary and ASCII, of every bank the kernel wrote,
 * replays to PCR 10 of EVERY bank the TPM had, its boot_aggregate matches, and it binds.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync } from 'node:fs';
import { parseImaList, bankFromFileName } from '../../src/ima/list.ts';
import { replayIma, checkBootAggregate, checkTemplateHash } from '../../src/ima/replay.ts';
import { bindImaToQuote } from '../../src/ima/trusted.ts';
import { DATA, pcrsOf, read } from './helpers.ts';
import type { BankName } from '../../src/pcrs.ts';

// Flat captures (lists + pcrs.json in the folder). qemu-debian12/ holds gzipped captures in one
// folder per variant and has its own test (qemu-debian12.test.ts).
const CAPTURES = readdirSync(DATA).filter((d) => d.startsWith('qemu-') && existsSync(DATA + d + '/pcrs.json')).map((d) => DATA + d + '/');

test('at least three captures, one with four PCR banks and hundreds of entries', () => {
  assert.ok(CAPTURES.length >= 3, CAPTURES.join(' '));
  const big = CAPTURES.find((c) => c.includes('4banks'));
  assert.ok(big);
  assert.equal([...pcrsOf(big!).keys()], ['sha1', 'sha256', 'sha384', 'sha512']);
  assert.ok(parseImaList(read(big! + 'binary_runtime_measurements')).entries.length > 400);
});

for (const dir of CAPTURES) {
  test(`${dir.split('/').slice(-2)[0]}: every list replays to PCR 10 of every TPM bank, boot_aggregate matches, binds`, () => {
    const pcrs = pcrsOf(dir);
    const banks = [...pcrs.keys()] as BankName[];
    const files = readdirSync(dir).filter((f) => f.includes('_runtime_measurements'));
    assert.ok(files.length >= 2);
    let count: number | undefined;
    for (const f of files) {
      const bank = bankFromFileName(f)!;
      const l = parseImaList(read(dir + f), { bank });
      count ??= l.entries.length;
      assert.is(l.entries.length, count, `${f}: same entries in every file`);
      assert.ok(l.entries.every((e) => ['ok', 'violation'].includes(checkTemplateHash(e, bank))), f);
      // The same list without the name: the bank is inferred.
      assert.is(parseImaList(read(dir + f)).bank, bank, `${f}: inferred bank`);
      const r = replayIma(l.entries, l.bank, banks);
      for (const b of banks) assert.is(r.pcr10.get(b)!.toString('hex'), pcrs.get(b)!.get(10)!.toString('hex'), `${f} ${b}`);
      const ba = checkBootAggregate(l.entries[0], pcrs);
      assert.ok(ba.ok, `${f}: ${ba.reason}`);
      const q = new Map(banks.map((b) => [b, pcrs.get(b)!.get(10)!]));
      const bound = bindImaToQuote(l.entries, l.bank, { count: 0, pcr10: {} }, q);
      assert.is(bound.state.count, l.entries.length);
      assert.is(bound.unbound, 0);
    }
  });
}

test.run();
