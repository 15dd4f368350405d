/**
 * Issue 10 §4: lookups keyed by untrusted input use own properties only. A message type,
 * a CBOR map key, a PCR bank name or a token field named "__proto__", "constructor",
 * "toString" or "hasOwnProperty" never resolves to an Object.prototype property, and a
 * "__proto__" map key never changes an object's prototype.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Encoder } from 'cbor-x';
import { encodeCbor, decodeCbor } from '../../src/protocol/codec.ts';
import { parseMessage } from '../../src/protocol/messages.ts';
import { ProtocolError } from '../../src/protocol/errors.ts';
import { pcrValuesFromJson } from '../../src/pcrs.ts';
import { parsePcrSelection } from '../../src/cli/tpm.ts';
import { eventTypeName } from '../../src/measuredboot/eventtypes.ts';
import { decodeRC } from '../../src/tpm/rc.ts';
import { validateToken } from '../../src/client/token.ts';

const PROTO_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];

test('parseMessage: a message type named after an Object.prototype property is an unknown type (BAD_MESSAGE)', () => {
  for (const t of PROTO_NAMES) {
    try {
      parseMessage(encodeCbor({ v: 1, t }));
      assert.unreachable(`type ${t} was accepted`);
    } catch (e) {
      assert.instance(e, ProtocolError);
      assert.is((e as ProtocolError).code, 'BAD_MESSAGE');
      assert.match((e as Error).message, /unknown message type/);
    }
  }
});

test('CBOR: a "__proto__" map key stays data, never the prototype (no pollution), and is ignored by parseMessage', () => {
  const raw = new Encoder({ mapsAsObjects: false, useRecords: false } as ConstructorParameters<typeof Encoder>[0]).encode(
    new Map<string, unknown>([['__proto__', new Map<string, unknown>([['polluted', 1], ['t', 'admin']])], ['v', 1], ['t', 'ok']]),
  );
  const o = decodeCbor(raw) as Record<string, unknown>;
  assert.is(Object.getPrototypeOf(o), Object.prototype);
  assert.is((o as { polluted?: unknown }).polluted, undefined);
  assert.is(({} as { polluted?: unknown }).polluted, undefined);
  assert.equal(parseMessage(raw), { t: 'ok' });
});

test('PCR bank names: "__proto__", "constructor", "toString" are unknown banks (JSON values and --pcrs)', () => {
  for (const b of PROTO_NAMES) {
    assert.throws(() => pcrValuesFromJson(JSON.parse(`{"${b}": {"0": "${'00'.repeat(32)}"}}`)), /bank|PCR values/);
    assert.throws(() => parsePcrSelection(`${b.replace(/[^a-z0-9_]/gi, '') || 'x'}:0`), /unknown bank|is not BANK/);
  }
  // the CBOR PCR values of attest-finish
  for (const bank of PROTO_NAMES) {
    try {
      parseMessage(encodeCbor({ v: 1, t: 'attest-begin', machine: 'm-1', akName: Buffer.alloc(34), ekName: Buffer.alloc(34), releasedPcr: 15, pcrs: [{ bank, pcrs: [] }] }), ['attest-begin']);
    } catch {
      assert.unreachable('attest-begin has no pcrs field: it must be ignored');
    }
    const m = { v: 1, t: 'enroll-challenge', enrollment: 'e-1', credentialBlob: Buffer.alloc(4), encryptedSecret: Buffer.alloc(4), nonce: Buffer.alloc(4), pcrSelection: [{ bank, pcrs: [0] }] };
    assert.throws(() => parseMessage(encodeCbor(m)), /is not a known bank/);
  }
});

test('name tables: event types, TPM response codes and token fields resolve only their own entries', () => {
  // numeric tables: every index that is not in the table gets the hex fallback
  assert.is(eventTypeName(0x7fffffff), 'EV_UNKNOWN_0x7fffffff');
  assert.is(decodeRC(0x93f).name, 'TPM_RC_WARN_0x93f');
  assert.is(decodeRC(0x921).name, 'TPM_RC_LOCKOUT');
  // a token whose JSON has "__proto__"/"constructor" fields is validated on its own fields only
  const tok = JSON.parse(`{"__proto__": {"type": "bootkey"}, "constructor": 1, "type": "x"}`);
  assert.throws(() => validateToken(tok), /type is "x"/);
  assert.throws(() => validateToken(JSON.parse(`{"__proto__": {"type": "bootkey"}}`)), /type is undefined/);
});

test.run();
