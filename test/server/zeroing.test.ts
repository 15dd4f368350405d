/**
 * Issue 10 §4, secret buffers: the LUKS key is built as bytes (never a JS string that cannot be
 * zeroed) and equals what it was before; the vault's and the session's intermediates are
 * zeroed without changing results; a flushed session's key is zero.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hkdfSync, randomBytes } from 'node:crypto';
import { base64Bytes, deriveLuksKey, KEY_INFO } from '../../src/client/key.ts';
import { Vault } from '../../src/server/secrets.ts';
import { startSwtpm, type Swtpm } from '../helpers/swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { getEK, flushKey } from '../../src/tpm/keys.ts';
import { startHMACSession } from '../../src/tpm/session.ts';
import { GetRandom } from '../../src/tpm/commands/startup.ts';

test('base64Bytes equals RFC 4648 base64 (Buffer) for every length 0..70', () => {
  for (let n = 0; n <= 70; n++) {
    const b = randomBytes(n);
    assert.is(base64Bytes(b).toString('ascii'), b.toString('base64'), `length ${n}`);
  }
});

test('deriveLuksKey: base64(HKDF-SHA256(server ‖ disk, machine id, info)) as before; inputs untouched', () => {
  const s = randomBytes(32);
  const d = randomBytes(32);
  const sCopy = Buffer.from(s);
  const want = Buffer.from(hkdfSync('sha256', Buffer.concat([s, d]), Buffer.from('m-1'), Buffer.from(KEY_INFO), 32)).toString('base64');
  assert.is(deriveLuksKey(s, d, 'm-1').toString('ascii'), want);
  assert.ok(s.equals(sCopy), 'the caller zeroes its shares, not deriveLuksKey');
  assert.throws(() => deriveLuksKey(s.subarray(0, 31), d, 'm-1'), /31 bytes/);
});

test('Vault: seal/open round trip with the zeroed intermediates; a wrong AAD is DECRYPT', () => {
  const v = new Vault(randomBytes(32));
  const secret = randomBytes(32);
  const sealed = v.seal(secret, 'm-1');
  assert.ok(v.open(sealed, 'm-1').equals(secret));
  assert.throws(() => v.open(sealed, 'm-2'), /does not decrypt/);
});

let sw: Swtpm | undefined;
test.after(async () => {
  await sw?.stop();
});

test('AuthSession: a salted, encrypting session works, and flush() zeroes its session key', async () => {
  sw = await startSwtpm();
  const tpm = await Tpm.open(sw.tcti);
  try {
    const ek = await getEK(tpm, 'rsa');
    const s = await startHMACSession(tpm, { salt: { handle: ek.handle, public: ek.public }, encrypt: true, decrypt: true });
    assert.ok(s.sessionKey.some((x) => x !== 0));
    const r = await GetRandom(tpm, { bytesRequested: 16 }); // no session: still works
    assert.is(r.randomBytes.length, 16);
    await s.flush(tpm);
    assert.ok(s.sessionKey.every((x) => x === 0));
    await flushKey(tpm, ek);
  } finally {
    await tpm.close();
  }
});

test.run();
