/** parseEventLog: formats, decoding, digest checks and refusal of malformed logs (hand-built logs). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseEventLog, EventLogError } from '../../src/measuredboot/index.ts';
import { ALG, EFI_GLOBAL, event1, event2, guidBytes, hash, header, u16, u32, u64, variableData } from './logbuilder.ts';

const EV_NO_ACTION = 3;
const EV_SEPARATOR = 4;
const EV_EVENT_TAG = 6;
const EV_IPL = 0xd;
const EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001;
const EV_EFI_VARIABLE_BOOT = 0x80000002;
const EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003;
const EV_EFI_ACTION = 0x80000007;

function refuses(buf: Buffer, code: string, msg?: RegExp): EventLogError {
  try {
    parseEventLog(buf);
  } catch (e) {
    assert.instance(e, EventLogError, `expected EventLogError, got ${String(e)}`);
    const err = e as EventLogError;
    assert.is(err.code, code, err.message);
    assert.is(err.layer, 'eventlog');
    assert.match(err.message, /at byte \d+/);
    assert.match(err.message, new RegExp(`at byte ${err.offset}\\b`));
    if (msg) assert.match(err.message, msg);
    return err;
  }
  assert.unreachable('parse should have failed');
  throw new Error('unreachable');
}

const sep0 = Buffer.alloc(4);

test('crypto-agile: header, banks, Spec ID fields, events and digest checks', () => {
  const log = parseEventLog(Buffer.concat([
    header(),
    event2(4, EV_EFI_ACTION, Buffer.from('Calling EFI Application from Boot Option')),
    event2(0, EV_SEPARATOR, sep0),
  ]));
  assert.is(log.format, 'crypto-agile');
  assert.equal(log.banks, ['sha1', 'sha256']);
  assert.is(log.specId?.specVersion, '2.0.0');
  assert.is(log.specId?.uintnSize, 2);
  assert.is(log.events.length, 3);
  assert.is(log.events[0].decoded.kind, 'spec-id');
  assert.is(log.events[1].typeName, 'EV_EFI_ACTION');
  assert.equal(log.events[1].decoded, { kind: 'string', text: 'Calling EFI Application from Boot Option' });
  assert.is(log.events[1].digestCheck, 'match');
  assert.equal(log.events[2].decoded, { kind: 'separator', value: 'zero' });
  assert.is(log.events[2].digestCheck, 'match');
  assert.is(log.events[2].offset, log.events[1].offset + 4 + 4 + 4 + 22 + 34 + 4 + 40);
  assert.is(log.events[2].digests.get('sha256')?.toString('hex'), hash('sha256', sep0).toString('hex'));
});

test('unknown algorithm in the Spec ID event: kept with its size, digests in otherDigests', () => {
  const algs: [number, number][] = [[ALG.sha256, 32], [0x0099, 7]];
  const log = parseEventLog(Buffer.concat([header(algs), event2(1, EV_SEPARATOR, sep0, [ALG.sha256, 0x0099], [hash('sha256', sep0), Buffer.from('ABCDEFG')])]));
  assert.equal(log.banks, ['sha256']);
  assert.equal(log.specId?.algorithms.map((a) => [a.algId, a.digestSize]), [[0x0b, 32], [0x99, 7]]);
  assert.is(log.events[1].otherDigests?.[0].digest.toString(), 'ABCDEFG');
  assert.is(log.events[1].digestCheck, 'match');
});

test('four banks and sm3_256', () => {
  const algs: [number, number][] = [[ALG.sha1, 20], [ALG.sha256, 32], [ALG.sha384, 48], [ALG.sha512, 64], [ALG.sm3_256, 32]];
  const log = parseEventLog(Buffer.concat([header(algs), event2(2, EV_SEPARATOR, sep0, algs.map((a) => a[0]))]));
  assert.equal(log.banks, ['sha1', 'sha256', 'sha384', 'sha512', 'sm3_256']);
  assert.is(log.events[1].digestCheck, 'match');
});

test('legacy SHA-1 log starting with StartupLocality (no Spec ID)', () => {
  const loc = Buffer.concat([Buffer.from('StartupLocality\0', 'latin1'), Buffer.from([3])]);
  const log = parseEventLog(Buffer.concat([event1(0, EV_NO_ACTION, loc, Buffer.alloc(20)), event1(0, EV_SEPARATOR, sep0)]));
  assert.is(log.format, 'sha1-legacy');
  assert.equal(log.banks, ['sha1']);
  assert.equal(log.events[0].decoded, { kind: 'startup-locality', locality: 3 });
  assert.is(log.events[1].digestCheck, 'match');
});

test('trailing 0xFF and 0x00 padding ends the log; length excludes it', () => {
  const body = Buffer.concat([header(), event2(0, EV_SEPARATOR, sep0)]);
  for (const fill of [0xff, 0x00]) {
    const log = parseEventLog(Buffer.concat([body, Buffer.alloc(4096, fill)]));
    assert.is(log.events.length, 2);
    assert.is(log.length, body.length);
  }
});

test('unknown event types are raw, not fatal; digest mismatch is reported', () => {
  const log = parseEventLog(Buffer.concat([
    header(),
    event2(5, 0x12345678, Buffer.from('whatever')),
    event2(0, EV_SEPARATOR, sep0, [ALG.sha1, ALG.sha256], [Buffer.alloc(20, 1), Buffer.alloc(32, 1)]),
  ]));
  assert.is(log.events[1].typeName, 'EV_UNKNOWN_0x12345678');
  assert.equal(log.events[1].decoded, { kind: 'raw' });
  assert.is(log.events[1].digestCheck, 'not-applicable');
  assert.is(log.events[2].digestCheck, 'mismatch');
});

test('a malformed event body falls back to raw with a warning; the parse goes on', () => {
  const bad = Buffer.concat([guidBytes(EFI_GLOBAL), u64(1n << 40n), u64(0)]);
  const log = parseEventLog(Buffer.concat([header(), event2(7, EV_EFI_VARIABLE_DRIVER_CONFIG, bad), event2(7, EV_SEPARATOR, sep0)]));
  assert.equal(log.events[1].decoded, { kind: 'raw' });
  assert.ok(log.events[1].decodeError);
  assert.is(log.warnings?.[0].code, 'DECODE');
  assert.is(log.events.length, 3);
});

test('UEFI variables: SecureBoot of length 0, SecureBoot=1, BOOT hashed over VariableData only', () => {
  const sb0 = variableData(EFI_GLOBAL, 'SecureBoot', Buffer.alloc(0));
  const sb1 = variableData(EFI_GLOBAL, 'SecureBoot', Buffer.from([1]));
  const order = Buffer.concat([u16(1), u16(0x10)]);
  const bootOrder = variableData(EFI_GLOBAL, 'BootOrder', order);
  const log = parseEventLog(Buffer.concat([
    header(),
    event2(7, EV_EFI_VARIABLE_DRIVER_CONFIG, sb0),
    event2(7, EV_EFI_VARIABLE_DRIVER_CONFIG, sb1),
    event2(1, EV_EFI_VARIABLE_BOOT, bootOrder, [ALG.sha1, ALG.sha256], [hash('sha1', order), hash('sha256', order)]),
  ]));
  const [, e0, e1, e2] = log.events;
  assert.is(e0.decoded.kind, 'efi-variable');
  if (e0.decoded.kind === 'efi-variable') {
    assert.is(e0.decoded.name, 'SecureBoot');
    assert.is(e0.decoded.guid, EFI_GLOBAL);
    assert.is(e0.decoded.bool, undefined);
  }
  if (e1.decoded.kind === 'efi-variable') assert.is(e1.decoded.bool, true);
  else assert.unreachable();
  if (e2.decoded.kind === 'efi-variable') assert.equal(e2.decoded.bootOrder, [1, 0x10]);
  else assert.unreachable();
  assert.is(e2.digestCheck, 'match');
  assert.is(e0.digestCheck, 'match');
});

test('EFI_SIGNATURE_LIST of SHA-256 hashes (dbx)', () => {
  const sha256Type = 'c1c41626-504c-4092-aca9-41f936934328';
  const owner = '77fa9abd-0359-4d32-bd60-28f4e78f784b';
  const sigs = [Buffer.alloc(32, 0xaa), Buffer.alloc(32, 0xbb)];
  const list = Buffer.concat([guidBytes(sha256Type), u32(28 + 2 * 48), u32(0), u32(48), ...sigs.flatMap((s) => [guidBytes(owner), s])]);
  const log = parseEventLog(Buffer.concat([header(), event2(7, EV_EFI_VARIABLE_DRIVER_CONFIG, variableData('d719b2cb-3d3a-4596-a3bc-dad00e67656f', 'dbx', list))]));
  const d = log.events[1].decoded;
  if (d.kind !== 'efi-variable') return assert.unreachable();
  assert.is(d.signatureLists?.length, 1);
  assert.is(d.signatureLists?.[0].typeName, 'sha256');
  assert.is(d.signatureLists?.[0].signatures[1].owner, owner);
  assert.is(d.signatureLists?.[0].signatures[1].data.toString('hex'), 'bb'.repeat(32));
});

test('UEFI_IMAGE_LOAD_EVENT: device path rendered as text', () => {
  const node = (t: number, s: number, body: Buffer) => Buffer.concat([Buffer.from([t, s]), u16(body.length + 4), body]);
  const dp = Buffer.concat([
    node(2, 1, Buffer.concat([u32(0x0a0341d0), u32(0)])),
    node(1, 1, Buffer.from([0x0, 0x1f])),
    node(4, 1, Buffer.concat([u32(1), u64(0x800), u64(0x100000), guidBytes('ef72374c-2630-46a1-88d6-082693781140'), Buffer.from([2, 2])])),
    node(4, 4, Buffer.from('\\EFI\\BOOT\\BOOTX64.EFI\0', 'utf16le')),
    node(0x7f, 0xff, Buffer.alloc(0)),
  ]);
  const data = Buffer.concat([u64(0x1000), u64(4096), u64(0), u64(dp.length), dp]);
  const log = parseEventLog(Buffer.concat([header(), event2(4, EV_EFI_BOOT_SERVICES_APPLICATION, data)]));
  const d = log.events[1].decoded;
  if (d.kind !== 'efi-image') return assert.unreachable();
  assert.is(d.devicePath, 'PciRoot(0x0)/Pci(0x1F,0x0)/HD(1,GPT,ef72374c-2630-46a1-88d6-082693781140,0x800,0x100000)/\\EFI\\BOOT\\BOOTX64.EFI');
  assert.is(d.filePath, '\\EFI\\BOOT\\BOOTX64.EFI');
  assert.is(d.imageLength, 4096n);
});

test('EV_IPL: grub command (hash without prefix) and systemd-stub UCS-2 command line', () => {
  const grub = Buffer.from('grub_cmd: linux /vmlinuz root=/dev/sda1\0', 'latin1');
  const cmd = Buffer.from('linux /vmlinuz root=/dev/sda1', 'latin1');
  const stub = Buffer.from('console=ttyS0 quiet\0', 'utf16le');
  const log = parseEventLog(Buffer.concat([
    header(),
    event2(8, EV_IPL, grub, [ALG.sha1, ALG.sha256], [hash('sha1', cmd), hash('sha256', cmd)]),
    event2(12, EV_IPL, stub),
  ]));
  assert.equal(log.events[1].decoded, { kind: 'ipl', text: 'grub_cmd: linux /vmlinuz root=/dev/sda1', encoding: 'ascii' });
  assert.is(log.events[1].digestCheck, 'match');
  assert.equal(log.events[2].decoded, { kind: 'ipl', text: 'console=ttyS0 quiet', encoding: 'utf16le' });
  assert.is(log.events[2].digestCheck, 'match');
});

test('EV_EVENT_TAG: Linux EFI stub initrd tag', () => {
  const tagged = Buffer.from('Linux initrd\0', 'latin1');
  const data = Buffer.concat([u32(0x8f3b22ec), u32(tagged.length), tagged]);
  const log = parseEventLog(Buffer.concat([header(), event2(9, EV_EVENT_TAG, data, [ALG.sha1, ALG.sha256], [Buffer.alloc(20, 7), Buffer.alloc(32, 7)])]));
  const d = log.events[1].decoded;
  if (d.kind !== 'event-tag') return assert.unreachable();
  assert.is(d.tagName, 'LINUX_EFISTUB_INITRD');
  assert.is(d.text, 'Linux initrd');
  assert.is(log.events[1].digestCheck, 'not-applicable');
});

test('negative: empty file', () => {
  refuses(Buffer.alloc(0), 'EMPTY', /empty/);
});

test('negative: a log of only padding', () => {
  refuses(Buffer.alloc(1024, 0xff), 'EMPTY', /padding/);
  refuses(Buffer.alloc(64, 0), 'EMPTY', /padding/);
});

test('negative: 1 GiB claimed event size, with event index and offset', () => {
  const good = Buffer.concat([header(), event2(0, EV_SEPARATOR, sep0)]);
  const bad = Buffer.concat([u32(0), u32(EV_SEPARATOR), u32(2), u16(ALG.sha1), Buffer.alloc(20), u16(ALG.sha256), Buffer.alloc(32), u32(1 << 30), sep0]);
  const err = refuses(Buffer.concat([good, bad]), 'TOO_LARGE', /event 2 at byte \d+: event size 1073741824 exceeds the 16 MiB limit/);
  assert.is(err.offset, good.length + 4 + 4 + 4 + 22 + 34);
  assert.is(err.eventIndex, 2);
  // Also in a legacy log's first event.
  refuses(Buffer.concat([u32(0), u32(EV_SEPARATOR), Buffer.alloc(20), u32(0x40000000)]), 'TOO_LARGE');
});

test('negative: event size beyond the end of the log', () => {
  const ev = event2(0, EV_SEPARATOR, Buffer.alloc(100));
  refuses(Buffer.concat([header(), ev.subarray(0, ev.length - 50)]), 'TRUNCATED', /event 1 at byte \d+: event size 100 runs past the end/);
});

test('negative: truncated header', () => {
  const h = header();
  refuses(h.subarray(0, 20), 'BAD_HEADER', /shorter than one event header/);
  refuses(h.subarray(0, 40), 'TRUNCATED');
  refuses(h.subarray(0, h.length - 3), 'TRUNCATED');
});

test('negative: truncated digest', () => {
  const ev = event2(0, EV_SEPARATOR, sep0);
  refuses(Buffer.concat([header(), ev.subarray(0, 12 + 2 + 10)]), 'TRUNCATED', /sha1 digest needs 20 bytes/);
});

test('negative: digest count of 1000, unknown digest algorithm, duplicate algorithm', () => {
  refuses(Buffer.concat([header(), u32(0), u32(EV_SEPARATOR), u32(1000), Buffer.alloc(64)]), 'BAD_DIGEST_COUNT', /digest count 1000 exceeds the 2 algorithm/);
  refuses(Buffer.concat([header(), u32(0), u32(EV_SEPARATOR), u32(1), u16(0x0c), Buffer.alloc(64)]), 'UNKNOWN_ALG', /0x000c/);
  refuses(Buffer.concat([header(), event2(0, EV_SEPARATOR, sep0, [ALG.sha1, ALG.sha1])]), 'BAD_DIGEST_COUNT', /two digests/);
});

test('negative: garbage, bad PCR index, bad Spec ID', () => {
  refuses(Buffer.from('bogus invalid event log file here'), 'BAD_PCR');
  refuses(Buffer.concat([header(), event2(99, EV_SEPARATOR, sep0)]), 'BAD_PCR', /PCR index 99/);
  const noAlgs = Buffer.concat([u32(0), u32(3), Buffer.alloc(20), u32(29), Buffer.from('Spec ID Event03\0'), u32(0), Buffer.from([0, 2, 0, 2]), u32(0), Buffer.from([0])]);
  refuses(noAlgs, 'BAD_HEADER', /0 algorithms/);
  refuses(header([[ALG.sha256, 20]]), 'BAD_HEADER', /digest size of 20, not 32/);
});

test('PCR index 0xFFFFFFFF is accepted and kept', () => {
  const log = parseEventLog(Buffer.concat([header(), event2(0xffffffff, EV_NO_ACTION, Buffer.from('AIK'))]));
  assert.is(log.events[1].pcr, 0xffffffff);
});

test.run();
