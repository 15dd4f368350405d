/** parseImaList on real lists (every template, binary and ASCII, both banks) and on broken input. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseImaList, bankFromFileName } from '../../src/ima/list.ts';
import { ImaParseError } from '../../src/ima/errors.ts';
import { checkTemplateHash } from '../../src/ima/replay.ts';
import { DATA, K61, K612, LISTS, read } from './helpers.ts';
import { createHash } from 'node:crypto';

function code(fn: () => unknown): ImaParseError {
  try {
    fn();
  } catch (e) {
    assert.instance(e, ImaParseError);
    return e as ImaParseError;
  }
  throw new Error('expected an ImaParseError');
}

test('every real list parses, with the bank its file name implies, and every entry hashes to its recorded template hash', () => {
  for (const [path, bank] of LISTS) {
    const l = parseImaList(read(path), { bank });
    assert.is(l.bank, bank, path);
    assert.is(l.entries.length, 11, path);
    assert.is(l.unknownTemplates, 0);
    assert.equal(l.entries.map((e) => checkTemplateHash(e, bank)), ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'violation', 'ok', 'ok'], path);
    assert.equal(l.entries.map((e) => e.index), [...Array(11).keys()]);
  }
});

test('the bank of a binary list is inferred from the one digest size that parses the whole file', () => {
  assert.is(parseImaList(read(K612 + 'binary_runtime_measurements_sha256')).bank, 'sha256');
  assert.is(parseImaList(read(K61 + 'binary_runtime_measurements')).bank, 'sha1');
  assert.is(parseImaList(read(K612 + 'ascii_runtime_measurements_sha256')).bank, 'sha256');
  // The wrong bank for a binary list does not parse: the error names the offset.
  const e = code(() => parseImaList(read(K612 + 'binary_runtime_measurements_sha256'), { bank: 'sha1' }));
  assert.match(e.message, /at byte \d+/);
  assert.equal([bankFromFileName('/x/binary_runtime_measurements'), bankFromFileName('a/ascii_runtime_measurements_sha256'), bankFromFileName('binary_runtime_measurements_sha1'), bankFromFileName('list.bin')], ['sha1', 'sha256', 'sha1', undefined]);
});

test('every template decodes: ima-sig, ima-buf (a key of .builtin_trusted_keys), ima-ng, ima-modsig, ima, violation', () => {
  for (const path of [K61 + 'binary_runtime_measurements', K61 + 'ascii_runtime_measurements']) {
    const e = parseImaList(read(path)).entries;
    assert.equal(e.map((x) => x.templateName), ['ima-sig', 'ima-buf', 'ima-sig', 'ima-ng', 'ima-sig', 'ima-modsig', 'ima', 'ima-sig', 'ima-sig', 'ima-sig', 'ima-ng']);
    assert.equal(e.map((x) => x.path), ['boot_aggregate', '.builtin_trusted_keys', '/bin/busybox', '/data/ng', '/data/sig', '/data/modsig', '/data/ima', '/init', '/data/buf', '/data/buf', '/data/ng']);
    assert.is(e[0].digestAlgo, 'sha256');
    assert.is(e[0].digest!.toString('hex'), '86cff2f31001e7f6b09412b5219560286db9aaa34d6f02db3687fbdfe2a76222');
    assert.is(e[0].sig!.length, 0);
    assert.is(e[1].buf![0], 0x30, 'an X.509 certificate (DER SEQUENCE)');
    assert.is(e[1].buf!.length, 1324);
    assert.is(e[3].sig, undefined);
    assert.is(e[5].sig!.length, 0);
    assert.is(e[5].modsigDigest, undefined, 'no appended signature: empty d-modsig');
    assert.is(e[5].modsig!.length, 0);
    assert.is(e[6].digestAlgo, 'sha1');
    assert.is(e[6].digest!.length, 20);
    assert.ok(e[8].violation);
    assert.ok(e[8].digest!.every((b) => b === 0));
    assert.not.ok(e[9].violation);
  }
});

test('the ASCII list rebuilds exactly the binary list\'s template data', () => {
  for (const [bin, asc] of [[K61 + 'binary_runtime_measurements', K61 + 'ascii_runtime_measurements'], [K612 + 'binary_runtime_measurements_sha256', K612 + 'ascii_runtime_measurements_sha256']]) {
    const b = parseImaList(read(bin), { bank: bin.endsWith('sha256') ? 'sha256' : 'sha1' }).entries;
    const a = parseImaList(read(asc)).entries;
    assert.is(a.length, b.length);
    a.forEach((x, i) => {
      assert.ok(x.templateData.equals(b[i].templateData), `entry ${i}`);
      assert.ok(x.templateHash.equals(b[i].templateHash));
      assert.is(x.offset, i + 1, 'ASCII offset is the line');
    });
  }
  assert.is(parseImaList(read(K61 + 'binary_runtime_measurements')).entries[1].offset, 106, 'binary offset is the byte');
});

test('other real ASCII lists: Keylime\'s test lines (stripped trailing spaces, RSA and EC signatures, an .ima key) and openEuler\'s ima-ng list', () => {
  const k = parseImaList(read(DATA + 'keylime/test_ima_verification.ascii'));
  assert.is(k.entries.length, 6);
  assert.equal(k.entries.map((e) => checkTemplateHash(e, 'sha1')), Array(6).fill('ok'));
  assert.is(k.entries[0].sig!.length, 0, 'an ima-sig line without its trailing space: empty signature');
  assert.is(k.entries[3].sig![0], 3, 'signature v2 header');
  assert.is(k.entries[3].digestAlgo, 'sha1');
  assert.is(k.entries[5].path, '.ima');
  const o = parseImaList(read(DATA + 'kunpengsecl/ascii_runtime_measurements_ima-ng_sha256.excerpt'));
  assert.ok(o.entries.length >= 14);
  assert.ok(o.entries.every((e) => checkTemplateHash(e, 'sha1') === 'ok'));
});

test('paths with spaces, CRLF, empty lines and ima-sig with a trailing space', () => {
  const line = (name: string, sig = '') => {
    // Build the line from a real entry of the same template, then check its hash round-trips.
    return `10 ${'00'.repeat(19)}01 ima-sig sha256:${'ab'.repeat(32)} ${name} ${sig}`;
  };
  const l = parseImaList(Buffer.from(`${line('/a b/c d')}\r\n\n${line('/x y', '0302aa')}\n`));
  assert.is(l.entries.length, 2);
  assert.is(l.entries[0].path, '/a b/c d');
  assert.is(l.entries[1].path, '/x y');
  assert.is(l.entries[1].sig!.toString('hex'), '0302aa');
  assert.is(l.entries[1].offset, 3);
});

test('unknown templates are kept raw, counted, and never fatal (binary: replayable; ASCII: opaque)', () => {
  const bin = Buffer.from(read(K61 + 'binary_runtime_measurements'));
  // Rename entry 3's template "ima-ng" to "xyz-ng" (same length): its data is kept as is.
  const at = bin.indexOf('ima-ng');
  bin.write('xyz', at, 'latin1');
  const l = parseImaList(bin);
  assert.is(l.unknownTemplates, 1);
  const u = l.entries[3];
  assert.is(u.templateName, 'xyz-ng');
  assert.is(u.path, undefined);
  assert.ok(u.templateData.length > 0);
  const asc = parseImaList(Buffer.from('10 ' + '11'.repeat(20) + ' my-tmpl foo:bar baz qux\n'));
  assert.is(asc.unknownTemplates, 1);
  assert.ok(asc.entries[0].opaque);
  assert.is(asc.entries[0].fieldsText, 'foo:bar baz qux');
});

test('broken binary lists: stable codes and the byte offset of the entry', () => {
  const good = read(K61 + 'binary_runtime_measurements');
  assert.is(code(() => parseImaList(Buffer.alloc(0))).code, 'EMPTY');
  let e = code(() => parseImaList(good.subarray(0, good.length - 3), { bank: 'sha1' }));
  assert.is(e.code, 'TRUNCATED');
  assert.match(e.message, /entry 10 at byte 2321/);
  const badPcr = Buffer.from(good); badPcr.writeUInt32LE(99, 106);
  e = code(() => parseImaList(badPcr, { bank: 'sha1' }));
  assert.is(e.code, 'BAD_PCR'); assert.match(e.message, /entry 1 at byte 106/);
  const bigName = Buffer.from(good); bigName.writeUInt32LE(0xffffffff, 106 + 24);
  assert.is(code(() => parseImaList(bigName, { bank: 'sha1' })).code, 'BAD_TEMPLATE_NAME');
  const bigData = Buffer.from(good); bigData.writeUInt32LE(0x7fffffff, 106 + 24 + 4 + 7);
  e = code(() => parseImaList(bigData, { bank: 'sha1' }));
  assert.is(e.code, 'BAD_LENGTH'); assert.match(e.message, /runs past the end/);
  const badField = Buffer.from(good); badField.writeUInt32LE(0xffff, 106 + 24 + 4 + 7 + 4);
  assert.is(code(() => parseImaList(badField, { bank: 'sha1' })).code, 'BAD_FIELD');
  assert.is(code(() => parseImaList(good, { bank: 'sha1', maxEntries: 5 })).code, 'TOO_MANY');
  // A big-endian list (no ima_canonical_fmt on a big-endian host) is refused, never misread.
  const be = Buffer.from(good); be.writeUInt32BE(10, 0);
  assert.is(code(() => parseImaList(be, { bank: 'sha1' })).code, 'BAD_PCR');
  // No size parses the whole file: BAD_SIZE, naming the furthest attempt.
  assert.is(code(() => parseImaList(Buffer.concat([good, Buffer.from([10, 0, 0])]))).code, 'BAD_SIZE');
});

test('broken ASCII lists: stable codes and the line', () => {
  const l = (s: string) => code(() => parseImaList(Buffer.from(s)));
  let e = l('10 abc ima-ng sha256:00 /x\n');
  assert.is(e.code, 'BAD_LINE'); assert.match(e.message, /line 1/);
  e = l(`10 ${'00'.repeat(20)} ima-ng sha256:${'00'.repeat(32)} /x\n99 ${'00'.repeat(20)} ima-ng sha256:00 /y\n`);
  assert.is(e.code, 'BAD_PCR'); assert.match(e.message, /entry 1 line 2/);
  assert.is(l(`10 ${'00'.repeat(20)} ima-ng sha256:zz /x\n`).code, 'BAD_FIELD');
  assert.is(l(`10 ${'00'.repeat(20)} ima-ng sha256:${'00'.repeat(31)} /x\n`).code, 'BAD_FIELD');
  assert.is(l(`10 ${'00'.repeat(20)} ima-ng nocolon /x\n`).code, 'BAD_FIELD');
  assert.is(l(`10 ${'00'.repeat(20)} ima-ng\n`).code, 'BAD_LINE');
  assert.is(l(`10 ${'00'.repeat(20)} ima-ng sha256:00\n`).code, 'BAD_LINE');
  assert.is(l(`10 ${'00'.repeat(20)} ima ${'00'.repeat(20)} ${'x'.repeat(300)}\n`).code, 'BAD_LENGTH');
  assert.is(l(`10 ${'00'.repeat(21)} ima-ng sha256:${'00'.repeat(32)} /x\n`).code, 'BAD_SIZE');
  assert.is(l(`10 ${'00'.repeat(20)} ima-ng sha256:${'00'.repeat(32)} /x\n10 ${'00'.repeat(32)} ima-ng sha256:${'00'.repeat(32)} /x\n`).code, 'BAD_LINE');
  assert.is(l('\n\n').code, 'EMPTY');
});

function u32(n: number) { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }
function field(b: Buffer) { return Buffer.concat([u32(b.length), b]); }
function binEntry(template: string, data: Buffer): Buffer {
  const hash = createHash('sha1').update(data).digest();
  return Buffer.concat([u32(10), hash, u32(template.length), Buffer.from(template), u32(data.length), data]);
}

test('synthetic: an ima-modsig entry WITH an appended signature, and ima-ngv2 / ima-sigv2 (d-ngv2), binary and ASCII alike', () => {
  const d = Buffer.concat([Buffer.from('sha256:\0'), Buffer.alloc(32, 0xaa)]);
  const n = Buffer.from('/lib/modules/x.ko\0');
  const dm = Buffer.concat([Buffer.from('sha256:\0'), Buffer.alloc(32, 0xbb)]);
  const modsig = Buffer.from('3082010a0201', 'hex');
  const ms = Buffer.concat([field(d), field(n), field(Buffer.alloc(0)), field(dm), field(modsig)]);
  const v2 = Buffer.concat([field(Buffer.concat([Buffer.from('verity:sha256:\0'), Buffer.alloc(32, 0xcc)])), field(Buffer.from('/usr/bin/v\0')), field(Buffer.from([6, 1, 2]))]);
  const bin = Buffer.concat([binEntry('ima-modsig', ms), binEntry('ima-sigv2', v2)]);
  const b = parseImaList(bin);
  assert.is(b.entries[0].modsigDigestAlgo, 'sha256');
  assert.is(b.entries[0].modsigDigest!.toString('hex'), 'bb'.repeat(32));
  assert.is(b.entries[0].modsig!.toString('hex'), '3082010a0201');
  assert.is(b.entries[1].digestType, 'verity');
  assert.is(b.entries[1].digestAlgo, 'sha256');
  assert.is(b.entries[1].sig!.toString('hex'), '060102');
  const ascii = [
    `10 ${b.entries[0].templateHash.toString('hex')} ima-modsig sha256:${'aa'.repeat(32)} /lib/modules/x.ko  sha256:${'bb'.repeat(32)} 3082010a0201`,
    `10 ${b.entries[1].templateHash.toString('hex')} ima-sigv2 verity:sha256:${'cc'.repeat(32)} /usr/bin/v 060102`,
  ].join('\n');
  const a = parseImaList(Buffer.from(ascii));
  a.entries.forEach((e, i) => {
    assert.ok(e.templateData.equals(b.entries[i].templateData), `entry ${i}`);
    assert.is(checkTemplateHash(e, 'sha1'), 'ok');
  });
});

test.run();
