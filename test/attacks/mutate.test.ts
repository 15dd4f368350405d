/**
 * The mutation library checks itself: its framing round-trips every corpus log byte for byte,
 * its independent replay agrees with src/measuredboot/replay.ts, and every mutation it returns
 * leaves the quoted PCRs' replayed values unchanged (and is refused when it would not).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseEventLog, replay } from '../../src/measuredboot/index.ts';
import { applyMutation, splitLog, joinLog, rawReplay, quoteOf, quotedMismatch, Rng, MUTATION_KINDS, type MutationContext } from './mutate.ts';
import { qemuLogs, realLogs, qemuLog } from './corpus.ts';
import type { BankName } from '../../src/pcrs.ts';

const ALL = [...realLogs(), ...qemuLogs()];

test('corpus: real logs and qemu boots found', () => {
  assert.ok(ALL.length >= 40, `${ALL.length} logs`);
});

test('splitLog/joinLog round-trip every corpus log byte for byte', () => {
  for (const { name, bytes } of ALL) assert.ok(joinLog(splitLog(bytes)).equals(bytes), name);
});

test('rawReplay equals replay() for every bank and PCR of every corpus log', () => {
  for (const { name, bytes } of ALL) {
    const raw = splitLog(bytes);
    const mine = replay(parseEventLog(bytes, { allowMissingDigests: true }));
    for (const [bank, pcrs] of mine) {
      for (const [pcr, v] of pcrs) {
        if (pcr > 23) continue;
        assert.is(rawReplay(raw, bank, pcr).toString('hex'), v.toString('hex'), `${name} ${bank}:${pcr}`);
      }
    }
  }
});

test('every mutation kind applies to sdboot-sb-off and keeps the quoted PCRs', () => {
  const bytes = qemuLog('sdboot-sb-off');
  const quoted = quoteOf(bytes, [{ bank: 'sha256', pcrs: [0, 2, 4, 7, 9, 12, 15] }]);
  const seen = new Set<string>();
  const ctx: MutationContext = { rng: new Rng(1234), quoted, cmdlines: ['initrd=\\bootkey\\initrd.zst console=ttyS0 panic=-1 loglevel=4'], stats: { rejected: 0, notApplicable: 0 } };
  for (let i = 0; i < 600; i++) {
    const kind = MUTATION_KINDS[i % MUTATION_KINDS.length];
    const m = applyMutation(bytes, kind, ctx);
    if (!m) continue;
    seen.add(kind);
    assert.not.ok(m.bytes.equals(bytes), m.description);
    assert.is(quotedMismatch(splitLog(m.bytes), quoted), undefined, m.description);
    assert.is(m.expect, kind === 'digest-count-0' || kind === 'missing-bank' ? 'eventlog' : 'same', m.description);
  }
  assert.equal([...seen].sort(), [...MUTATION_KINDS].sort());
});

test('a mutation that would change a quoted PCR is rejected', () => {
  const bytes = qemuLog('uki-sb-on');
  // every PCR quoted, in both banks: only label changes of already not-extending events remain
  const sel = (['sha1', 'sha256'] as BankName[]).map((bank) => ({ bank, pcrs: Array.from({ length: 24 }, (_, i) => i) }));
  const quoted = quoteOf(bytes, sel);
  const ctx: MutationContext = { rng: new Rng(99), quoted, stats: { rejected: 0, notApplicable: 0 } };
  for (let i = 0; i < 200; i++) {
    const m = applyMutation(bytes, 'unquoted-alter', ctx);
    assert.is(m, undefined, 'no PCR is unquoted');
    const r = applyMutation(bytes, 'missing-bank', ctx);
    if (r) assert.is(quotedMismatch(splitLog(r.bytes), quoted), undefined);
  }
  // relabelling an extending event as EV_NO_ACTION drops it from the replay: always rejected
  let rejectedNoAction = 0;
  for (let i = 0; i < 300; i++) {
    const before = ctx.stats!.rejected;
    const m = applyMutation(bytes, 'relabel', ctx);
    if (!m && ctx.stats!.rejected > before) rejectedNoAction++;
    if (m) assert.not.match(m.description, /→ EV_NO_ACTION/);
  }
  assert.ok(rejectedNoAction > 0);
});

test('Rng is reproducible', () => {
  const a = new Rng(7), b = new Rng(7);
  for (let i = 0; i < 100; i++) assert.is(a.next(), b.next());
});

test.run();
