/**
 * The runtime attestation messages (docs/PROTOCOL.md): round trips, every field bounded and typed,
 * and a fuzz of each decoder (fast-check: arbitrary field values, byte mutations) that only ever
 * throws ProtocolError.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { encodeMessage, parseMessage, encodeCbor, ProtocolError, LIMITS, pcrValuesToWire } from '../../src/protocol/index.ts';
import type { Message } from '../../src/protocol/index.ts';

const pcrs = new Map([['sha256' as const, new Map([[0, Buffer.alloc(32, 1)], [10, Buffer.alloc(32, 10)]])]]);
const samples: Message[] = [
  { t: 'runtime-begin', machine: 'm-0123456789abcdef', akName: Buffer.alloc(34, 2) },
  { t: 'runtime-challenge', nonce: Buffer.alloc(32, 9), pcrSelection: [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }], expiresIn: 60, from: 1432, resetCount: 7, bootDigest: Buffer.alloc(32, 3) },
  { t: 'runtime-challenge', nonce: Buffer.alloc(32, 9), pcrSelection: [{ bank: 'sha256', pcrs: [10] }], expiresIn: 60, from: 0 },
  { t: 'runtime-entries', machine: 'm-1', nonce: Buffer.alloc(32), bank: 'sha256', from: 0, entries: Buffer.alloc(1000, 1) },
  { t: 'runtime-more', received: 20000 },
  { t: 'runtime-report', machine: 'm-1', akName: Buffer.alloc(34), nonce: Buffer.alloc(32), quote: Buffer.from('q'), signature: Buffer.from('s'), pcrs, bank: 'sha1', from: 20000, entries: Buffer.alloc(0) },
  { t: 'runtime-result', state: 'failed', count: 20001, unbound: 2, message: 'POLICY: 1 IMA entry not allowed', failures: ['entry 20000 /tmp/evil.sh: sha256:ab… not in the policy'] },
  { t: 'runtime-result', state: 'restart', count: 0, unbound: 3, message: 'send the whole list', failures: [] },
  { t: 'admin', adminToken: 'tok', op: 'set-runtime-policy', machine: 'm-1', runtimePolicy: '{}' },
  { t: 'admin', adminToken: 'tok', op: 'approve', machine: 'm-1', seconds: 3600 },
];

const code = (f: () => unknown): string => {
  try { f(); } catch (e) { assert.instance(e, ProtocolError); return `${(e as ProtocolError).code}: ${(e as Error).message}`; }
  throw new Error('not refused');
};

test('runtime messages round-trip through CBOR with their fields intact', () => {
  for (const m of samples) assert.equal(parseMessage(encodeMessage(m)), m, m.t);
});

test('runtime fields are bounded and typed', () => {
  const enc = (o: Record<string, unknown>) => encodeCbor({ v: 1, ...o, ...(o.pcrs instanceof Map ? { pcrs: pcrValuesToWire(o.pcrs as typeof pcrs) } : {}) });
  assert.match(code(() => parseMessage(enc({ ...samples[3], entries: Buffer.alloc(LIMITS.imaChunk + 1) }))), /^TOO_LARGE: runtime-entries: field "entries"/);
  assert.match(code(() => parseMessage(enc({ ...samples[5], entries: Buffer.alloc(LIMITS.imaChunk + 1) }))), /^TOO_LARGE: runtime-report: field "entries"/);
  assert.match(code(() => parseMessage(enc({ ...samples[3], bank: 'md5' }))), /field "bank" "md5" is not a known bank/);
  assert.match(code(() => parseMessage(enc({ ...samples[3], bank: '__proto__' }))), /not a known bank/);
  assert.match(code(() => parseMessage(enc({ ...samples[3], from: -1 }))), /field "from" must be an integer/);
  assert.match(code(() => parseMessage(enc({ ...samples[3], from: 1.5 }))), /field "from" must be an integer/);
  assert.match(code(() => parseMessage(enc({ ...samples[5], from: 2 ** 31 }))), /field "from" must be an integer/);
  assert.match(code(() => parseMessage(enc({ ...samples[1], bootDigest: Buffer.alloc(31) }))), /field "bootDigest" must be 32 bytes/);
  assert.match(code(() => parseMessage(enc({ ...samples[6], state: 'ok' }))), /field "state" has an invalid format/);
  assert.match(code(() => parseMessage(enc({ ...samples[6], failures: Array(LIMITS.runtimeFailures + 1).fill('x') }))), /^TOO_LARGE/);
  assert.match(code(() => parseMessage(enc({ ...samples[6], failures: [5] }))), /failures\[0\]/);
  assert.match(code(() => parseMessage(enc({ t: 'admin', adminToken: 't', op: 'set-runtime-policy', runtimePolicy: 'x'.repeat(LIMITS.runtimePolicy + 1) }))), /^TOO_LARGE/);
  assert.match(code(() => parseMessage(enc({ t: 'admin', adminToken: 't', op: 'approve', seconds: -5 }))), /field "seconds"/);
  assert.match(code(() => parseMessage(enc({ t: 'runtime-begin', machine: 'm-1' }))), /field "akName" must be a byte string/);
});

test('fuzz: arbitrary field values and byte mutations of each runtime message only throw ProtocolError', () => {
  const anyValue = fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 80 }), fc.constant(null), fc.boolean(),
    fc.array(fc.integer({ min: -2, max: 30 }), { maxLength: 12 }), fc.dictionary(fc.string({ maxLength: 8 }), fc.integer(), { maxKeys: 3 }));
  for (const m of samples) {
    const keys = Object.keys(m).filter((k) => k !== 't');
    fc.assert(fc.property(fc.constantFrom(...keys), anyValue, (k, v) => {
      try { parseMessage(encodeCbor({ v: 1, ...m, [k]: v })); } catch (e) { if (!(e instanceof ProtocolError)) throw e; }
    }), { numRuns: 150 });
    const base = encodeMessage(m);
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat(base.length), (muts, cut) => {
      const b = Buffer.from(base);
      for (const [i, x] of muts) b[i] = x;
      try { parseMessage(b.subarray(0, cut)); } catch (e) { if (!(e instanceof ProtocolError)) throw e; }
    }), { numRuns: 300 });
  }
});

test.run();
