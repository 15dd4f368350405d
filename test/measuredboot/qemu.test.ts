/**
 * Event logs from real firmware: test/data/qemu/<name>.bin are TCG2 logs OVMF + the kernel's EFI
 * stub wrote in QEMU boots with swtpm, <name>.pcrs.json the PCRs the guest read from sysfs right
 * after, <name>.ima.txt IMA's log (boot_aggregate, PCR 10). Made by qemu-tests/make-eventlogs.sh
 * (see test/data/qemu/README.md); no QEMU runs here.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseEventLog } from '../../src/measuredboot/eventlog.ts';
import { replay } from '../../src/measuredboot/replay.ts';
import { pcrValuesFromJson, BANK_SIZE, type BankName, type PcrValues } from '../../src/pcrs.ts';
import type { EventLog, TcgEvent } from '../../src/measuredboot/types.ts';

const DIR = fileURLToPath(new URL('../data/qemu/', import.meta.url));
const NAMES = readdirSync(DIR).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4)).sort();
const BANKS: BankName[] = ['sha1', 'sha256'];

// Event types (TCG PC Client PFP), kept local so the raw checks don't depend on the decoder.
const EV_SEPARATOR = 0x4;
const EV_EVENT_TAG = 0x6;
const EV_IPL = 0xd;
const EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001;
const EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003;
const EV_EFI_GPT_EVENT = 0x80000006;
const EV_EFI_VARIABLE_AUTHORITY = 0x800000e0;
// Linux EFI stub's EV_EVENT_TAG ids (drivers/firmware/efi/libstub).
const TAG_INITRD = 0x8f3b22ec;
const TAG_LOAD_OPTIONS = 0x8f3b22ed;

// The command lines qemu-tests/make-eventlogs.sh puts in the UKIs / the systemd-boot entry.
const CMDLINE1 = 'console=ttyS0 panic=-1 loglevel=4';
const CMDLINE2 = 'console=ttyS0 panic=-1 loglevel=4 bootkey.test=cmdline2';
const UKI_CMDLINE: Record<string, string> = {
  'uki-sb-off': CMDLINE1,
  'uki-sb-on': CMDLINE1,
  'uki-sb-off-cmdline2': CMDLINE2,
  'uki-sb-off-4banks': CMDLINE1,
};
const SDBOOT_OPTIONS = `initrd=\\bootkey\\initrd.zst ${CMDLINE1}`;

const sha = (alg: string, ...parts: (Buffer | string)[]) => {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest();
};
const utf16z = (s: string) => Buffer.from(s + '\0', 'utf16le');
const hex = (b: Buffer | undefined) => b?.toString('hex');

const cache = new Map<string, { log: EventLog; tpm: PcrValues; replayed: PcrValues }>();
function load(name: string) {
  let c = cache.get(name);
  if (!c) {
    const log = parseEventLog(readFileSync(DIR + name + '.bin'));
    const tpm = pcrValuesFromJson(JSON.parse(readFileSync(DIR + name + '.pcrs.json', 'utf8')));
    c = { log, tpm, replayed: replay(log) };
    cache.set(name, c);
  }
  return c;
}
const events = (name: string, pcr: number, type?: number): TcgEvent[] =>
  load(name).log.events.filter((e) => e.pcr === pcr && (type === undefined || e.type === type));

/** UEFI_VARIABLE_DATA straight from the bytes: GUID, u64 name length (chars), u64 data length, name, data. */
function rawVariable(data: Buffer): { name: string; value: Buffer } {
  const nameLen = Number(data.readBigUInt64LE(16));
  const dataLen = Number(data.readBigUInt64LE(24));
  const name = data.subarray(32, 32 + 2 * nameLen).toString('utf16le');
  return { name, value: data.subarray(32 + 2 * nameLen, 32 + 2 * nameLen + dataLen) };
}

test('test/data/qemu holds the regenerated boots', () => {
  for (const n of ['uki-sb-off', 'uki-sb-on', 'uki-sb-off-cmdline2', 'sdboot-sb-off']) assert.ok(NAMES.includes(n), `${n}.bin missing`);
  for (const n of NAMES) assert.ok(existsSync(DIR + n + '.pcrs.json'), `${n}.pcrs.json missing`);
});

for (const name of NAMES) {
  test(`${name}: crypto-agile log with sha1 + sha256, every checkable digest matches its data`, () => {
    const { log } = load(name);
    assert.is(log.format, 'crypto-agile');
    for (const b of BANKS) assert.ok(log.banks.includes(b), `bank ${b}`);
    const bad = log.events.filter((e) => e.digestCheck === 'mismatch').map((e) => `#${e.index} ${e.typeName}`);
    assert.equal(bad, []);
  });

  test(`${name}: replay equals the TPM's PCRs for every PCR the log extends`, () => {
    const { tpm, replayed } = load(name);
    for (const bank of BANKS) {
      const r = replayed.get(bank)!;
      assert.ok(r.size >= 8, `${bank}: replay covers ${r.size} PCRs`);
      for (const [i, v] of r) assert.is(hex(v), hex(tpm.get(bank)!.get(i)), `${bank}:${i}`);
    }
  });

  test(`${name}: PCRs 0-15 the log does not touch are zero in the TPM (PCR 10: IMA's boot_aggregate)`, () => {
    const { tpm, replayed } = load(name);
    for (const bank of BANKS) {
      for (let i = 0; i <= 15; i++) {
        if (replayed.get(bank)!.has(i) || i === 10) continue;
        assert.is(hex(tpm.get(bank)!.get(i)), '00'.repeat(BANK_SIZE[bank]), `${bank}:${i}`);
      }
    }
  });

  if (existsSync(DIR + name + '.ima.txt')) {
    test(`${name}: PCR 10 = IMA's one boot_aggregate entry, and boot_aggregate = sha256(PCR 0..9)`, () => {
      const { tpm } = load(name);
      const lines = readFileSync(DIR + name + '.ima.txt', 'utf8').trim().split('\n');
      assert.is(lines.length, 1);
      const [pcr, templateHash, template, fileDigest, fileName] = lines[0]!.trim().split(' ');
      assert.equal([pcr, template, fileName], ['10', 'ima-sig', 'boot_aggregate']);
      // Kernel >= 5.8 on TPM 2.0: boot_aggregate hashes PCRs 0-9 of the sha256 bank.
      const agg = sha('sha256', ...Array.from({ length: 10 }, (_, i) => tpm.get('sha256')!.get(i)!));
      assert.is(fileDigest, 'sha256:' + agg.toString('hex'));
      // ima-sig template data: d-ng ("sha256:\0" + digest), n-ng (name + NUL), sig (empty), each u32-length-prefixed.
      const field = (b: Buffer) => Buffer.concat([Buffer.from(Uint32Array.of(b.length).buffer), b]);
      const td = Buffer.concat([field(Buffer.concat([Buffer.from('sha256:\0'), agg])), field(Buffer.from('boot_aggregate\0')), field(Buffer.alloc(0))]);
      assert.is(sha('sha1', td).toString('hex'), templateHash);
      for (const bank of BANKS) {
        const expect = sha(bank, Buffer.alloc(BANK_SIZE[bank]), sha(bank, td));
        assert.is(hex(tpm.get(bank)!.get(10)), hex(expect), `${bank}:10`);
      }
    });
  }

  test(`${name}: SecureBoot in PCR 7 is ${name.includes('sb-on') ? 1 : 0} (raw bytes and decoder agree)`, () => {
    const want = name.includes('sb-on') ? 1 : 0;
    const sb = events(name, 7, EV_EFI_VARIABLE_DRIVER_CONFIG).filter((e) => rawVariable(e.data).name === 'SecureBoot');
    assert.is(sb.length, 1);
    assert.equal([...rawVariable(sb[0]!.data).value], [want]);
    const d = sb[0]!.decoded;
    assert.ok(d.kind === 'efi-variable' && d.name === 'SecureBoot' && d.bool === (want === 1));
    // PCR 7 also carries PK, KEK, db, dbx before its separator.
    const names = events(name, 7, EV_EFI_VARIABLE_DRIVER_CONFIG).map((e) => rawVariable(e.data).name);
    assert.equal(names, ['SecureBoot', 'PK', 'KEK', 'db', 'dbx']);
    // With Secure Boot on, the db entry that verified the UKI follows (EV_EFI_VARIABLE_AUTHORITY).
    assert.is(events(name, 7, EV_EFI_VARIABLE_AUTHORITY).length, want);
  });

  test(`${name}: PCR 5 has the ESP image's GPT (fixed GUIDs) and ExitBootServices`, () => {
    const gpt = events(name, 5, EV_EFI_GPT_EVENT);
    assert.is(gpt.length, 1);
    const d = gpt[0]!.decoded;
    assert.ok(d.kind === 'gpt' && d.diskGuid === '0b0071e5-0000-4000-8000-000000000001' && d.partitions.length === 1);
    const texts = events(name, 5).flatMap((e) => (e.decoded.kind === 'string' ? [e.decoded.text] : []));
    assert.equal(texts, ['Exit Boot Services Invocation', 'Exit Boot Services Returned with Success']);
  });

  test(`${name}: PCR 9 has the Linux EFI stub's LoadOptions and initrd tags`, () => {
    const tags = events(name, 9, EV_EVENT_TAG);
    const ids = tags.map((e) => (e.decoded.kind === 'event-tag' ? e.decoded.tagId : -1));
    assert.equal(ids, [TAG_LOAD_OPTIONS, TAG_INITRD]);
    const cmdline = name.startsWith('uki-') ? UKI_CMDLINE[name]! : SDBOOT_OPTIONS;
    // The load options the kernel got, UTF-16LE with the terminating NUL.
    assert.is(hex(tags[0]!.digests.get('sha256')), hex(sha('sha256', utf16z(cmdline))));
  });
}

for (const name of Object.keys(UKI_CMDLINE)) {
  test(`${name}: systemd-stub measured .linux .osrel .cmdline .initrd into PCR 11 (name, then contents)`, () => {
    const ev = events(name, 11, EV_IPL);
    const sections = ['.linux', '.osrel', '.cmdline', '.initrd'];
    assert.equal(ev.map((e) => (e.decoded.kind === 'ipl' ? e.decoded.text : '?')), sections.flatMap((s) => [s, s]));
    sections.forEach((s, k) => assert.is(hex(ev[2 * k]!.digests.get('sha256')), hex(sha('sha256', s + '\0')), `${s} name`));
    assert.is(hex(ev[5]!.digests.get('sha256')), hex(sha('sha256', UKI_CMDLINE[name]!)), '.cmdline contents');
    // The kernel's initrd tag (PCR 9) measures the same bytes as the .initrd section.
    const initrdTag = events(name, 9, EV_EVENT_TAG)[1]!;
    assert.is(hex(initrdTag.digests.get('sha256')), hex(ev[7]!.digests.get('sha256')));
  });

  test(`${name}: PCR 4 has the UKI at \\EFI\\BOOT\\BOOTX64.EFI${name.includes('sb-on') ? ' only' : ', then the kernel the stub loaded'}`, () => {
    const apps = events(name, 4, EV_EFI_BOOT_SERVICES_APPLICATION);
    // Under Secure Boot systemd-stub 252 installs its own security override to start the
    // unsigned .linux section; that bypasses the firmware's measuring handler too.
    assert.is(apps.length, name.includes('sb-on') ? 1 : 2);
    const d = apps[0]!.decoded;
    assert.ok(d.kind === 'efi-image' && d.devicePath.toUpperCase().endsWith('\\EFI\\BOOT\\BOOTX64.EFI'), d.kind === 'efi-image' ? d.devicePath : d.kind);
    assert.is(events(name, 12).length, 0);
  });
}

test('uki-sb-off vs uki-sb-off-cmdline2: only PCRs 4, 9, 11 (and 10, IMA over 0-9) differ', () => {
  const a = load('uki-sb-off').tpm;
  const b = load('uki-sb-off-cmdline2').tpm;
  for (const bank of BANKS) {
    const differ = [...Array(24).keys()].filter((i) => hex(a.get(bank)!.get(i)) !== hex(b.get(bank)!.get(i)));
    assert.equal(differ, [4, 9, 10, 11], bank);
  }
});

test('uki-sb-off vs uki-sb-on: PCR 7 differs (SecureBoot, keys, authority), PCR 0 differs (secboot firmware)', () => {
  const a = load('uki-sb-off').tpm.get('sha256')!;
  const b = load('uki-sb-on').tpm.get('sha256')!;
  for (const i of [0, 7]) assert.is.not(hex(a.get(i)), hex(b.get(i)), `PCR ${i}`);
  // Same UKI contents: PCR 11 (sections) and PCR 9 (cmdline + initrd) are equal.
  for (const i of [9, 11]) assert.is(hex(a.get(i)), hex(b.get(i)), `PCR ${i}`);
});

test('uki-sb-off-4banks: the log carries sha1/sha256/sha384/sha512; its sha1 + sha256 PCRs equal uki-sb-off\'s', () => {
  const { log, tpm, replayed } = load('uki-sb-off-4banks');
  assert.equal(log.banks, ['sha1', 'sha256', 'sha384', 'sha512']);
  for (const ev of log.events.filter((e) => e.index > 0)) assert.is(ev.digests.size, 4, `#${ev.index}`);
  assert.is(replayed.get('sha512')!.get(11)!.length, 64);
  const other = load('uki-sb-off').tpm;
  for (const bank of BANKS) for (let i = 0; i < 24; i++) assert.is(hex(tpm.get(bank)!.get(i)), hex(other.get(bank)!.get(i)), `${bank}:${i}`);
});

test('sdboot-sb-off: systemd-boot measures the entry options into PCR 12; boot loader + kernel in PCR 4; no PCR 11', () => {
  const ipl = events('sdboot-sb-off', 12, EV_IPL);
  assert.is(ipl.length, 1);
  const d = ipl[0]!.decoded;
  assert.ok(d.kind === 'ipl' && d.text === SDBOOT_OPTIONS, d.kind === 'ipl' ? d.text : d.kind);
  assert.is(hex(ipl[0]!.digests.get('sha256')), hex(sha('sha256', utf16z(SDBOOT_OPTIONS))));
  const apps = events('sdboot-sb-off', 4, EV_EFI_BOOT_SERVICES_APPLICATION).map((e) => (e.decoded.kind === 'efi-image' ? e.decoded.devicePath.toUpperCase() : '?'));
  assert.is(apps.length, 2);
  assert.ok(apps[0]!.endsWith('\\EFI\\BOOT\\BOOTX64.EFI') && apps[1]!.endsWith('\\BOOTKEY\\VMLINUZ'), apps.join(' | '));
  assert.is(events('sdboot-sb-off', 11).length, 0);
  // The kernel's Authenticode digest is the same whether the firmware loaded it from the ESP
  // (systemd-boot) or systemd-stub loaded the UKI's .linux section from memory (VenMedia path).
  const kernel = (n: string) => hex(events(n, 4, EV_EFI_BOOT_SERVICES_APPLICATION)[1]!.digests.get('sha256'));
  assert.is(kernel('sdboot-sb-off'), kernel('uki-sb-off'));
  // Same initrd as the UKIs: same PCR 9 initrd tag digest.
  assert.is(hex(events('sdboot-sb-off', 9, EV_EVENT_TAG)[1]!.digests.get('sha256')), hex(events('uki-sb-off', 9, EV_EVENT_TAG)[1]!.digests.get('sha256')));
});

test.run();
