/** replay(): extend arithmetic, initial values, localities, skipped events, every bank. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseEventLog, replay } from '../../src/measuredboot/index.ts';
import { ALG, event1, event2, hash, header } from './logbuilder.ts';

const EV_NO_ACTION = 3;
const EV_SEPARATOR = 4;
const EV_S_CRTM_VERSION = 8;
const EV_EFI_HCRTM_EVENT = 0x80000010;
const sep0 = Buffer.alloc(4);
const hex = (b?: Buffer) => b?.toString('hex');
const locality = (n: number) => Buffer.concat([Buffer.from('StartupLocality\0', 'latin1'), Buffer.from([n])]);
const init = (size: number, last = 0, fill = 0) => {
  const b = Buffer.alloc(size, fill);
  b[size - 1] = last || fill;
  return b;
};

test('one extend per event, in order, per bank', () => {
  const a = Buffer.from('a');
  const b = Buffer.from('b');
  const pcrs = replay(parseEventLog(Buffer.concat([header(), event2(4, EV_SEPARATOR, a), event2(4, EV_SEPARATOR, b)])));
  for (const alg of ['sha1', 'sha256'] as const) {
    const size = alg === 'sha1' ? 20 : 32;
    const want = hash(alg, hash(alg, Buffer.alloc(size), hash(alg, a)), hash(alg, b));
    assert.is(hex(pcrs.get(alg)?.get(4)), hex(want), alg);
  }
  assert.equal([...pcrs.get('sha256')!.keys()], [4]);
});

test('EV_NO_ACTION never extends', () => {
  const pcrs = replay(parseEventLog(Buffer.concat([header(), event2(5, EV_NO_ACTION, Buffer.from('SP800-155 Event3xxxx')), event2(5, EV_SEPARATOR, sep0)])));
  assert.is(hex(pcrs.get('sha256')?.get(5)), hex(hash('sha256', Buffer.alloc(32), hash('sha256', sep0))));
});

test('StartupLocality 3 sets PCR0 initial value (and counts as initialising PCR0)', () => {
  const only = replay(parseEventLog(Buffer.concat([header(), event2(0, EV_NO_ACTION, locality(3), [ALG.sha1, ALG.sha256], [Buffer.alloc(20), Buffer.alloc(32)])])));
  assert.is(hex(only.get('sha256')?.get(0)), hex(init(32, 3)));
  assert.is(hex(only.get('sha1')?.get(0)), hex(init(20, 3)));
  const v = Buffer.from('v1');
  const ext = replay(parseEventLog(Buffer.concat([header(), event2(0, EV_NO_ACTION, locality(3), [ALG.sha1, ALG.sha256], [Buffer.alloc(20), Buffer.alloc(32)]), event2(0, EV_S_CRTM_VERSION, v)])));
  assert.is(hex(ext.get('sha256')?.get(0)), hex(hash('sha256', init(32, 3), hash('sha256', v))));
});

test('StartupLocality in a legacy SHA-1 log', () => {
  const pcrs = replay(parseEventLog(Buffer.concat([event1(0, EV_NO_ACTION, locality(3), Buffer.alloc(20)), event1(0, EV_SEPARATOR, sep0)])));
  assert.is(hex(pcrs.get('sha1')?.get(0)), hex(hash('sha1', init(20, 3), hash('sha1', sep0))));
});

test('a first PCR0 event of type EV_EFI_HCRTM_EVENT starts PCR0 at locality 4', () => {
  const d = Buffer.from('HCRTM');
  const pcrs = replay(parseEventLog(Buffer.concat([header(), event2(0, EV_EFI_HCRTM_EVENT, d), event2(0, EV_SEPARATOR, sep0)])));
  const want = hash('sha256', hash('sha256', init(32, 4), hash('sha256', d)), hash('sha256', sep0));
  assert.is(hex(pcrs.get('sha256')?.get(0)), hex(want));
  // Not first: no locality.
  const later = replay(parseEventLog(Buffer.concat([header(), event2(0, EV_SEPARATOR, sep0), event2(0, EV_EFI_HCRTM_EVENT, d)])));
  assert.is(hex(later.get('sha256')?.get(0)), hex(hash('sha256', hash('sha256', Buffer.alloc(32), hash('sha256', sep0)), hash('sha256', d))));
});

test('PCRs 17-22 start all-ones, 16 and 23 zero', () => {
  const evs = [16, 17, 22, 23].map((p) => event2(p, EV_SEPARATOR, sep0));
  const pcrs = replay(parseEventLog(Buffer.concat([header(), ...evs])));
  const d = hash('sha256', sep0);
  assert.is(hex(pcrs.get('sha256')?.get(17)), hex(hash('sha256', Buffer.alloc(32, 0xff), d)));
  assert.is(hex(pcrs.get('sha256')?.get(22)), hex(hash('sha256', Buffer.alloc(32, 0xff), d)));
  assert.is(hex(pcrs.get('sha256')?.get(16)), hex(hash('sha256', Buffer.alloc(32), d)));
  assert.is(hex(pcrs.get('sha256')?.get(23)), hex(hash('sha256', Buffer.alloc(32), d)));
});

test('PCR index 0xFFFFFFFF extends nothing', () => {
  const pcrs = replay(parseEventLog(Buffer.concat([header(), event2(0xffffffff, 0x800000e0, Buffer.from('aik')), event2(1, EV_SEPARATOR, sep0)])));
  assert.equal([...pcrs.get('sha256')!.keys()], [1]);
});

test('every bank of the log, sm3_256 and sha512 included', () => {
  const algs: [number, number][] = [[ALG.sha1, 20], [ALG.sha512, 64], [ALG.sm3_256, 32]];
  const pcrs = replay(parseEventLog(Buffer.concat([header(algs), event2(7, EV_SEPARATOR, sep0, algs.map((a) => a[0]))])));
  assert.equal([...pcrs.keys()], ['sha1', 'sha512', 'sm3_256']);
  assert.is(hex(pcrs.get('sm3_256')?.get(7)), hex(hash('sm3', Buffer.alloc(32), hash('sm3', sep0))));
  assert.is(hex(pcrs.get('sha512')?.get(7)), hex(hash('sha512', Buffer.alloc(64), hash('sha512', sep0))));
});

test.run();
