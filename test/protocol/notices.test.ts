/**
 * `released.notices` (issue 10: AK_NO_DA): optional, bounded (8 entries, code [A-Z][A-Z0-9_]*
 * of ≤ 64 characters, message ≤ LIMITS.message); a reply without it parses as before, and a
 * client that predates the field ignores it (parsers read only their fields).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeCbor } from '../../src/protocol/codec.ts';
import { encodeMessage, parseMessage, LIMITS, type MessageOf } from '../../src/protocol/messages.ts';
import { ProtocolError } from '../../src/protocol/errors.ts';
import { formatNotice } from '../../src/initrd/unlock.ts';

const blob = { public: Buffer.alloc(4), duplicate: Buffer.alloc(4), inSymSeed: Buffer.alloc(4) };
const base = { v: 1, t: 'released', blob, sealedTo: [{ bank: 'sha256', pcrs: [0, 7, 15] }] };

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.instance(e, ProtocolError);
    return (e as ProtocolError).code;
  }
  assert.unreachable('expected a ProtocolError');
  return '';
}

test('released: notices round-trip; absent stays absent', () => {
  const m: MessageOf<'released'> = { t: 'released', blob, sealedTo: [{ bank: 'sha256', pcrs: [7] }], notices: [{ code: 'AK_NO_DA', message: 're-enrol' }] };
  const p = parseMessage(encodeMessage(m), ['released']) as MessageOf<'released'>;
  assert.equal(p.notices, [{ code: 'AK_NO_DA', message: 're-enrol' }]);
  const q = parseMessage(encodeCbor(base), ['released']) as MessageOf<'released'>;
  assert.not.ok('notices' in q);
});

test('released: notices are bounded and checked', () => {
  const n = (code: unknown, message: unknown = 'x') => ({ code, message });
  assert.is(code(() => parseMessage(encodeCbor({ ...base, notices: Array.from({ length: LIMITS.notices + 1 }, () => n('A')) }))), 'TOO_LARGE');
  assert.is(code(() => parseMessage(encodeCbor({ ...base, notices: [n('ak_no_da')] }))), 'BAD_MESSAGE');
  assert.is(code(() => parseMessage(encodeCbor({ ...base, notices: [n('A'.repeat(65))] }))), 'TOO_LARGE');
  assert.is(code(() => parseMessage(encodeCbor({ ...base, notices: [n('A', 'm'.repeat(LIMITS.message + 1))] }))), 'TOO_LARGE');
  assert.is(code(() => parseMessage(encodeCbor({ ...base, notices: [n('A', 5)] }))), 'BAD_MESSAGE');
  assert.is(code(() => parseMessage(encodeCbor({ ...base, notices: 'AK_NO_DA' }))), 'BAD_MESSAGE');
});

test('formatNotice: one line, control characters removed, bounded', () => {
  const l = formatNotice('https://h:1', { code: 'AK_NO_DA', message: 'line one\nline two\r\u001b[31mred\u0085' });
  assert.is(l, 'notice from https://h:1: AK_NO_DA: line one line two [31mred');
  assert.ok(formatNotice('s', { code: 'A', message: 'x'.repeat(5000) }).length <= 300);
});

test.run();
