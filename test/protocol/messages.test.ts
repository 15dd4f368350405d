import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PassThrough } from 'node:stream';
import { encodeMessage, parseMessage, encodeCbor, frame, Deframer, Connection, ProtocolError, MAX_FRAME } from '../../src/protocol/index.ts';
import type { Message } from '../../src/protocol/index.ts';

const pcrs = new Map([['sha256' as const, new Map([[0, Buffer.alloc(32, 1)], [7, Buffer.alloc(32, 7)]])]]);

const samples: Message[] = [
  { t: 'enroll-begin', enrolToken: 'tok', ekPublic: Buffer.from('ek'), akPublic: Buffer.from('ak'), machineId: 'abc', hostname: 'h' },
  { t: 'attest-begin', machine: 'm-1', akName: Buffer.alloc(34, 2), ekName: Buffer.alloc(34, 3), releasedPcr: 15 },
  { t: 'attest-challenge', nonce: Buffer.alloc(32, 9), pcrSelection: [{ bank: 'sha256', pcrs: [0, 4, 7] }], releasedPcr: 15, expiresIn: 60, tokenKey: Buffer.alloc(44, 4) },
  { t: 'attest-finish', machine: 'm-1', akName: Buffer.alloc(34), ekName: Buffer.alloc(34, 5), releasedPcr: 15, nonce: Buffer.alloc(32), quote: Buffer.from('q'), signature: Buffer.from('s'), pcrs, eventLog: Buffer.alloc(100) },
  { t: 'released', blob: { public: Buffer.from('p'), duplicate: Buffer.from('d'), inSymSeed: Buffer.from('s') }, sealedTo: [{ bank: 'sha256', pcrs: [0, 15] }] },
  { t: 'error', code: 'POLICY', message: 'refused', failures: ['PCR 4 event 3: ...'] },
  { t: 'ok' },
];

test('every message round-trips through CBOR with its fields intact', () => {
  for (const m of samples) {
    const back = parseMessage(encodeMessage(m));
    assert.equal(back, m, m.t);
  }
});

test('PCR values keep banks, indices and bytes', () => {
  const m = parseMessage(encodeMessage(samples[3]), ['attest-finish']);
  assert.is(m.t, 'attest-finish');
  if (m.t !== 'attest-finish') return;
  assert.equal(m.pcrs.get('sha256')?.get(7), Buffer.alloc(32, 7));
});

test('refused: wrong version, unknown type, unexpected type, missing or mistyped fields', () => {
  const code = (f: () => unknown): string => {
    try { f(); } catch (e) { assert.instance(e, ProtocolError); return (e as ProtocolError).code + ': ' + (e as Error).message; }
    throw new Error('not refused');
  };
  assert.match(code(() => parseMessage(encodeCbor({ v: 2, t: 'ok' }))), /^BAD_VERSION/);
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, t: 'hello' }))), /^BAD_MESSAGE: unknown message type/);
  assert.match(code(() => parseMessage(encodeMessage(samples[1]), ['attest-finish'])), /unexpected message "attest-begin"/);
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, t: 'attest-begin', machine: 'm' }))), /field "akName" must be a byte string/);
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, t: 'attest-begin', machine: 5, akName: Buffer.alloc(2) }))), /field "machine" must be a text string/);
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, t: 'attest-begin', machine: '../etc', akName: Buffer.alloc(2) }))), /field "machine" has an invalid format/);
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, t: 'attest-begin', machine: 'm', akName: Buffer.alloc(1000) }))), /^TOO_LARGE/);
  const badPcr = { ...samples[3], pcrs: [{ bank: 'sha256', pcrs: [[0, Buffer.alloc(20)]] }] };
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, ...badPcr }))), /PCR 0 must be 32 bytes/);
  const dupPcr = { ...samples[3], pcrs: [{ bank: 'sha256', pcrs: [[0, Buffer.alloc(32)], [0, Buffer.alloc(32)]] }] };
  assert.match(code(() => parseMessage(encodeCbor({ v: 1, ...dupPcr }))), /appears twice/);
  assert.match(code(() => parseMessage(Buffer.from('ff', 'hex'))), /not a valid CBOR/);
  assert.match(code(() => parseMessage(Buffer.from('a1616101a1616102', 'hex'))), /not a valid CBOR/);
  assert.match(code(() => parseMessage(encodeCbor([1, 2]))), /must be a map/);
});

test('random bytes never throw anything but ProtocolError', () => {
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  const base = encodeMessage(samples[3]);
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(base);
    for (let k = 0; k < 1 + (i % 5); k++) b[rnd() % b.length] = rnd();
    const cut = i % 7 === 0 ? b.subarray(0, rnd() % b.length) : b;
    try { parseMessage(cut); } catch (e) { if (!(e instanceof ProtocolError)) throw e; }
  }
});

test('deframer: split frames reassemble; a frame over the limit is refused before buffering', () => {
  const d = new Deframer(100);
  const f = frame(Buffer.from('hello'));
  d.push(f.subarray(0, 2));
  assert.is(d.next(), undefined);
  d.push(Buffer.concat([f.subarray(2), f]));
  assert.equal(d.next(), Buffer.from('hello'));
  assert.equal(d.next(), Buffer.from('hello'));
  assert.is(d.next(), undefined);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(0xffffffff);
  d.push(big);
  assert.throws(() => d.next(), (e: unknown) => e instanceof ProtocolError && e.code === 'TOO_LARGE');
  assert.throws(() => frame(Buffer.alloc(MAX_FRAME + 1)), (e: unknown) => e instanceof ProtocolError && e.code === 'TOO_LARGE');
});

test('connection: send/receive, timeout, peer close', async () => {
  const a = new PassThrough();
  const conn = new Connection(a);
  await conn.send({ t: 'ok' });
  const m = await conn.receive(['ok'], 1000);
  assert.is(m.t, 'ok');
  const t0 = Date.now();
  try { await conn.receive(['ok'], 100); assert.unreachable(); } catch (e) { assert.is((e as ProtocolError).code, 'TIMEOUT'); }
  assert.ok(Date.now() - t0 >= 90);
  a.end();
  try { await conn.receive(['ok'], 1000); assert.unreachable(); } catch (e) { assert.is((e as ProtocolError).code, 'CLOSED'); }
});

test.run();

test('staging messages: round trip; every new field bounded (LIMITS), hash and random exactly 32 bytes; nonce bound to the request', async () => {
  const { LIMITS } = await import('../../src/protocol/messages.ts');
  const { stageRequestHash, stageNonce } = await import('../../src/protocol/stage.ts');
  const begin: Message = { t: 'stage-begin', machine: 'm-1', akName: Buffer.alloc(34, 1), requestHash: Buffer.alloc(32, 2) };
  const ch: Message = { t: 'stage-challenge', random: Buffer.alloc(32, 3), pcrSelection: [{ bank: 'sha256', pcrs: [0, 4, 7, 9] }], expiresIn: 60 };
  const fin: Message = { t: 'stage-finish', machine: 'm-1', akName: Buffer.alloc(34), random: Buffer.alloc(32, 3), quote: Buffer.from('q'), signature: Buffer.from('s'), pcrs, eventLog: Buffer.alloc(10), prediction: '{}', label: 'kernel 6.1' };
  const staged: Message = { t: 'staged', id: 's-0123456789abcdef', state: 'active', widenings: ['boot-chain stage 0 (uki): ab'], signers: ['uki ab… signed by CN=x'] };
  for (const m of [begin, ch, fin, staged]) assert.equal(parseMessage(encodeMessage(m)), m, m.t);
  const code = (m: Record<string, unknown>): string => {
    try { parseMessage(encodeCbor({ v: 1, ...m })); } catch (e) { return `${(e as ProtocolError).code}: ${(e as Error).message}`; }
    return 'accepted';
  };
  const w = (m: Message) => ({ ...m, ...('pcrs' in m ? { pcrs: [{ bank: 'sha256', pcrs: [[0, Buffer.alloc(32, 1)], [7, Buffer.alloc(32, 7)]] }] } : {}) });
  assert.match(code({ ...w(begin), requestHash: Buffer.alloc(31) }), /^BAD_MESSAGE: stage-begin: field "requestHash" must be 32 bytes/);
  assert.match(code({ ...w(begin), requestHash: Buffer.alloc(33) }), /^TOO_LARGE/);
  assert.match(code({ ...w(ch), random: Buffer.alloc(16) }), /field "random" must be 32 bytes/);
  assert.match(code({ ...w(fin), prediction: 'x'.repeat(LIMITS.prediction + 1) }), /^TOO_LARGE: stage-finish: field "prediction" has \d+ characters, the limit is 524288/);
  assert.match(code({ ...w(fin), label: 'x'.repeat(LIMITS.label + 1) }), /^TOO_LARGE: stage-finish: field "label"/);
  assert.match(code({ ...w(fin), prediction: 7 }), /field "prediction" must be a text string/);
  assert.match(code({ ...w(staged), widenings: Array(LIMITS.stagedLines + 1).fill('x') }), /^TOO_LARGE: staged: field "widenings" has 65 entries/);
  assert.match(code({ ...w(staged), signers: [3] }), /field "signers\[0\]" must be a text string/);
  // The nonce is bound to the prediction and the label (length-prefixed: no ambiguity between them).
  const r = Buffer.alloc(32, 9);
  const n = stageNonce(r, stageRequestHash('{"a":1}', 'x'));
  assert.not.equal(n, stageNonce(r, stageRequestHash('{"a":1}', 'y')));
  assert.not.equal(n, stageNonce(r, stageRequestHash('{"a":1}x', '')));
  assert.not.equal(n, stageNonce(Buffer.alloc(32, 8), stageRequestHash('{"a":1}', 'x')));
  assert.equal(n, stageNonce(r, stageRequestHash('{"a":1}', 'x')));
});
