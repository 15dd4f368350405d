/**
 * The cryptsetup edge on real LUKS2 image files (PBKDF2, 1000 iterations: fast): metadata,
 * luksAddKey with the new key on stdin, luksKillSlot, token import/export/remove,
 * open --test-passphrase, and the stable error codes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, rmSync, truncateSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LuksError, addKey, exportToken, formatImage, freeKeyslot, importToken, killSlot, openDevice, readMetadata, removeToken, testKey,
} from '../../src/luks/cryptsetup.ts';

const dir = mkdtempSync(join(tmpdir(), 'bootkey-luks-'));
const pass = join(dir, 'pass');
writeFileSync(pass, 'correct horse');

async function image(name: string): Promise<string> {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, 20 * 1024 * 1024);
  await formatImage(p, pass);
  return p;
}

async function rejects(p: Promise<unknown>, code: string): Promise<LuksError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, LuksError);
    assert.is((e as LuksError).code, code, (e as Error).message);
    return e as LuksError;
  }
  assert.unreachable(`expected LuksError ${code}`);
  throw new Error('unreachable');
}

test.after(() => rmSync(dir, { recursive: true, force: true }));

test('metadata of a fresh image: keyslot 0, no tokens', async () => {
  const img = await image('a.img');
  const m = await readMetadata(img);
  assert.equal(Object.keys(m.keyslots), ['0']);
  assert.equal(m.tokens, {});
  assert.is(freeKeyslot(m), 1);
});

test('addKey: new key from stdin opens its slot; the old passphrase still works; killSlot removes it', async () => {
  const img = await image('b.img');
  const key = Buffer.from('bmV3IGtleSBmcm9tIHN0ZGluIG5vdCBhIGZpbGU=');
  const slot = await addKey(img, { existingKeyFile: pass, newKey: key });
  assert.is(slot, 1);
  assert.ok(await testKey(img, key));
  assert.ok(await testKey(img, key, { slot }));
  assert.not.ok(await testKey(img, key, { slot: 0 }));
  assert.ok(await testKey(img, readFileSync(pass)));
  assert.not.ok(await testKey(img, Buffer.from('wrong')));
  const m = await readMetadata(img);
  assert.is((m.keyslots['1'].kdf as { type: string }).type, 'pbkdf2');
  await killSlot(img, slot);
  assert.not.ok(await testKey(img, key));
  assert.equal(Object.keys((await readMetadata(img)).keyslots), ['0']);
  await rejects(killSlot(img, slot), 'NO_SLOT');
});

test('addKey with a wrong existing key: BAD_KEY and no keyslot added', async () => {
  const img = await image('c.img');
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'not it');
  const before = await readMetadata(img);
  await rejects(addKey(img, { existingKeyFile: bad, newKey: Buffer.from('x'.repeat(44)) }), 'BAD_KEY');
  await rejects(addKey(img, { existingKeyFile: join(dir, 'missing'), newKey: Buffer.from('x') }), 'BAD_KEY');
  assert.equal(await readMetadata(img), before);
});

test('tokens: import (JSON on stdin), export, busy id, remove', async () => {
  const img = await image('d.img');
  const slot = await addKey(img, { existingKeyFile: pass, newKey: Buffer.from('k'.repeat(44)) });
  const tok = { type: 'bootkey', keyslots: [String(slot)], machine: 'm1', servers: ['https://127.0.0.1:1'] };
  const id = await importToken(img, tok);
  assert.is(id, 0);
  assert.equal(await exportToken(img, id), tok);
  assert.equal((await readMetadata(img)).tokens['0'], tok);
  await rejects(importToken(img, tok, id), 'BUSY');
  await rejects(importToken(img, { type: 'bootkey', keyslots: ['9'] }), 'BAD_TOKEN');
  await removeToken(img, id);
  await rejects(exportToken(img, id), 'NO_TOKEN');
  await rejects(removeToken(img, id), 'NO_TOKEN');
});

test('not LUKS2, missing device, no device-mapper: stable codes', async () => {
  await rejects(readMetadata(pass), 'NOT_LUKS2');
  await rejects(readMetadata(join(dir, 'nope.img')), 'NO_DEVICE');
  await rejects(readMetadata('--help'), 'NO_DEVICE');
  const img = await image('e.img');
  // this host has no device-mapper (docs: qemu-boot.md); elsewhere a wrong key is BAD_KEY first
  const e = await rejects(openDevice(img, 'bootkey-test-x', Buffer.from('wrong')), process.env.BOOTKEY_HAVE_DM ? 'BAD_KEY' : 'DM_UNAVAILABLE');
  assert.ok(e.exitCode !== undefined);
});

test.run();
