import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { analyseBoot, crtmVersionText } from '../../src/measuredboot/bootstate.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
const extractBootState = (l: Parameters<typeof unverifiedLog>[0]) => analyseBoot(unverifiedLog(l));
import type { EventLog, TcgEvent, DecodedEvent } from '../../src/measuredboot/types.ts';
import { readLog, QEMU } from './helpers.ts';

const COREOS = 'google__go-attestation__attest__testdata__coreos_36_shielded_vm_no_secure_boot_eventlog';
const DEBIAN_QEMU = 'grawity__tpm_futurepcr__tests__fixtures__QEMU__tpm_binary_measurements';
const SDBOOT_F37 = 'tpm2-software__tpm2-tools__test__integration__fixtures__event-sd-boot-fedora37.bin';
const ELITEBOOK = 'grawity__tpm_futurepcr__tests__fixtures__ACTUAL_SYSTEMS__HP_EliteBook_TPM2.0_UEFI_SB_Linux.log';
const GDC = 'google__go-tpm-tools__internal__test__eventlogs__gdc-host.bin';
const DUPSEP = 'google__go-eventlog__testdata__eventlogs__ccel__cos-113-intel-tdx-dupe-separator-unpadded.bin';

// ---- real logs ----

test('coreos 36 (GCE, SB off): Secure Boot off, shim then grub from \\EFI\\fedora, MOK measured', () => {
  const st = extractBootState(readLog(COREOS));
  assert.is(st.secureBoot.enabled, false);
  assert.is(st.secureBoot.value, '00');
  assert.equal(st.apps.map((a) => [a.role, a.path]), [['shim', '\\EFI\\fedora\\shimx64.efi'], ['bootloader', '\\EFI\\fedora\\grubx64.efi']]);
  assert.ok(st.mok.MokList && st.mok.MokListX, 'MokList/MokListX in PCR 14');
  assert.match(st.mok.SbatLevel!.text, /^sbat,1,/);
  assert.is(st.firmware.crtmVersions[0].text, 'GCE Virtual Firmware v1');
  assert.is(st.dbx!.entries.length, 186);
  assert.equal(st.errors, []);
});

test('Debian QEMU (SB on, shim+grub): kernel command line from grub, Debian CA authority via shim', () => {
  const st = extractBootState(readLog(DEBIAN_QEMU));
  assert.is(st.secureBoot.enabled, true);
  // grub measures the line twice (the `linux` command and kernel_cmdline): both are read and checked.
  assert.equal(st.cmdlines.map((c) => [c.pcr, c.source, c.form, c.text]), [
    [8, 'grub', 'grub2-upstream-grub_cmd', '/boot/vmlinuz-5.18.0-0.deb11.4-amd64 root=UUID=cfa927ec-bf7d-45e2-80bd-be4bda00859c ro quiet'],
    [8, 'grub', 'grub2-upstream-kernel_cmdline', '/boot/vmlinuz-5.18.0-0.deb11.4-amd64 root=UUID=cfa927ec-bf7d-45e2-80bd-be4bda00859c ro quiet'],
  ]);
  assert.equal(st.apps.map((a) => a.role), ['shim', 'bootloader', 'kernel']);
  const shimAuth = st.authorities.find((a) => a.variable === 'Shim');
  assert.is(shimAuth?.subject, 'CN=Debian Secure Boot CA');
  assert.is(st.initrds.length, 1);
  assert.is(st.apps[0].digests.sha256?.length, 64);
});

test('Fedora 37 systemd-boot: UCS-2 command line in PCR 12, SecureBoot variable empty = off', () => {
  const st = extractBootState(readLog(SDBOOT_F37));
  assert.is(st.secureBoot.enabled, false);
  assert.ok(st.warnings.some((w) => w.code === 'SECUREBOOT_EMPTY'));
  assert.equal([...new Set(st.cmdlines.map((c) => `${c.pcr} ${c.source} ${c.text?.trim()}`))], ['12 systemd console=ttyS0 console=tty0 efi=debug']);
});

test('HP EliteBook (SB on): systemd-boot then a UKI, own db key', () => {
  const st = extractBootState(readLog(ELITEBOOK));
  assert.is(st.secureBoot.enabled, true);
  assert.equal(st.apps.map((a) => [a.role, a.path]), [['bootloader', '\\EFI\\systemd\\systemd-bootx64.efi'], ['uki', '\\EFI\\Linux\\vmlinuz-linux.efi']]);
  assert.equal(st.authorities.map((a) => a.subject), ['OU=Secure Boot (midnight), CN=DatabaseKey']);
});

test('GDC host: DMA Protection Disabled, option ROMs, EFI-stub load options known only by digest', () => {
  const st = extractBootState(readLog(GDC));
  assert.equal(st.dmaProtectionDisabled, [18]);
  assert.is(st.drivers.length, 35);
  const stub = st.cmdlines.find((c) => c.source === 'linux-efi-stub')!;
  assert.is(stub.event, 155);
  assert.is(stub.text, undefined);
  assert.is(st.cmdlines.find((c) => c.source === 'grub')!.text, '/vmlinuz-6.9.0-rc7+ root=/dev/mapper/ubuntu--vg-ubuntu--lv ro nohibernate kvm_intel.tdx=on intel_iommu=on');
  assert.is(st.firmware.crtmVersions[0].text, '2.3.5');
});

test('duplicate separator in PCR 0-7 is an error naming the event', () => {
  const st = extractBootState(readLog(DUPSEP));
  assert.equal(st.errors.map((e) => [e.code, e.pcr, e.event]), [['DUPLICATE_SEPARATOR', 1, 16]]);
});

test('QEMU UKI (SB on): the UKI is recognised from its PCR 11 sections', () => {
  const st = extractBootState(readLog('uki-sb-on.bin', QEMU));
  assert.is(st.secureBoot.enabled, true);
  assert.equal(st.apps.map((a) => [a.role, a.path]), [['uki', '\\EFI\\BOOT\\BOOTX64.EFI']]);
  assert.ok(st.stubSections.some((s) => s.description === '.cmdline'));
});

test('QEMU systemd-boot: the EFI stub load options get their text from the PCR 12 twin', () => {
  const st = extractBootState(readLog('sdboot-sb-off.bin', QEMU));
  const stub = st.cmdlines.find((c) => c.source === 'linux-efi-stub')!;
  assert.is(stub.text, 'initrd=\\bootkey\\initrd.zst console=ttyS0 panic=-1 loglevel=4');
});

// ---- hand-built logs: trust rules ----

let n = 0;
/** An event whose digest is the hash of its data (bound), unless `unbound`: then a digest of something else. */
function ev(pcr: number, type: number, decoded: DecodedEvent, data: Buffer = Buffer.alloc(0), unbound = false): TcgEvent {
  const i = ++n;
  const h = createHash('sha256').update(data);
  if (unbound) h.update(`other ${i}`);
  return { index: i, offset: i * 100, pcr, type, typeName: `T${type}`, digests: new Map([['sha256', h.digest()]]), data, decoded, digestCheck: unbound ? 'mismatch' : 'match' };
}
const sep = (pcr: number) => ev(pcr, 4, { kind: 'separator', value: 'zero' }, Buffer.alloc(4));
const action = (pcr: number, text: string) => ev(pcr, 0x80000007, { kind: 'string', text }, Buffer.from(text));
/** An application: its digest is an Authenticode hash, never the hash of its data. */
const app = (path: string) => ev(4, 0x80000003, { kind: 'efi-image', imageLocation: 0n, imageLength: 0n, linkTimeAddress: 0n, devicePath: path, filePath: path }, Buffer.from(path), true);
function varData(name: string, value: Buffer): Buffer {
  const guid = Buffer.from('61dfe48bca93d211aa0d00e098032b8c', 'hex');
  const nm = Buffer.from(name, 'utf16le');
  const l = Buffer.alloc(16);
  l.writeBigUInt64LE(BigInt(name.length), 0);
  l.writeBigUInt64LE(BigInt(value.length), 8);
  return Buffer.concat([guid, l, nm, value]);
}
const sbVar = (value: number, unbound = false) => ev(7, 0x80000001, { kind: 'efi-variable', guid: '8be4df61-93ca-11d2-aa0d-00e098032b8c', name: 'SecureBoot', data: Buffer.from([value]) }, varData('SecureBoot', Buffer.from([value])), unbound);
/** Events are numbered by their position (in place, so the tests' handles see the numbers). */
function mkLog(events: TcgEvent[]): EventLog {
  events.forEach((e, i) => (e.index = i + 1));
  return { format: 'crypto-agile', banks: ['sha256'], events, length: 0 };
}

test('hand-built: each PCR is its own sequence: nothing is cut by another PCR\'s ExitBootServices or by log position', () => {
  const crtm = ev(0, 8, { kind: 'string', text: 'v1' }, Buffer.from('v1\0', 'utf16le'));
  const lateFw = ev(0, 8, { kind: 'string', text: 'evil' }, Buffer.from('evil\0', 'utf16le'), true);
  const lateApp = app('\\evil.efi');
  const st = extractBootState(mkLog([crtm, sbVar(1), sep(0), sep(4), sep(7), lateFw, app('\\EFI\\BOOT\\BOOTX64.EFI'), action(5, 'Exit Boot Services Invocation'), lateApp]));
  assert.equal(st.firmware.crtmVersions.map((c) => [c.text, c.verified]), [['v1', true], ['evil', false]]);
  assert.is(st.firmware.events.length, 2, 'every PCR 0 event is in the firmware digest sequence');
  assert.equal(st.apps.map((a) => a.path), ['\\EFI\\BOOT\\BOOTX64.EFI', '\\evil.efi'], 'the app "after" ExitBootServices in log order still counts');
  assert.ok(st.warnings.some((w) => w.code === 'UNVERIFIED_TEXT' && w.event === lateFw.index));
  assert.is(st.secureBoot.enabled, true);
});

test('hand-built: second PCR 7 separator, a variable after the separator and an unbound variable', () => {
  const tampered = ev(7, 0x80000001, { kind: 'efi-variable', guid: 'd719b2cb-3d3a-4596-a3bc-dad00e67656f', name: 'db', data: Buffer.alloc(0) }, varData('db', Buffer.alloc(0)), true);
  const s1 = sep(7), s2 = sep(7);
  const lateVar = sbVar(0);
  const sb = sbVar(1);
  const st = extractBootState(mkLog([sb, tampered, s1, s2, lateVar]));
  assert.equal(st.errors.map((e) => [e.code, e.event]), [['DUPLICATE_SEPARATOR', s2.index], ['VARIABLE_AFTER_SEPARATOR', lateVar.index], ['SB_NO_DB', sb.index]]);
  assert.equal(st.issues.filter((e) => e.code === 'DIGEST_MISMATCH').map((e) => e.event), [tampered.index]);
  assert.is(st.db, undefined, 'an unbound variable is not read');
  assert.is(st.secureBoot.enabled, true, 'the late SecureBoot=0 is not taken');
});

test('hand-built: an authority relabelled as a configuration variable is an issue, not a silent unread variable', () => {
  const relabelled = ev(7, 0x80000001, { kind: 'efi-variable', guid: '605dab50-e046-4300-abb6-3dd810dd8b23', name: 'Shim', data: Buffer.from('cert') }, varData('Shim', Buffer.from('cert')));
  const st = extractBootState(mkLog([sbVar(0), relabelled, sep(7)]));
  assert.equal(st.issues.map((e) => [e.code, e.event]), [['UNEXPECTED_VARIABLE', relabelled.index]]);
  const ok = extractBootState(mkLog([sbVar(0), ev(7, 0x80000001, { kind: 'efi-variable', guid: '8be4df61-93ca-11d2-aa0d-00e098032b8c', name: 'AuditMode', data: Buffer.from([0]) }, varData('AuditMode', Buffer.from([0]))), sep(7)]));
  assert.equal(ok.issues, [], 'AuditMode is a Secure Boot configuration variable');
});

test('hand-built: a SecureBoot=01 event whose data does not hash to its digest is not read: Secure Boot unknown = off', () => {
  const forged = sbVar(1, true);
  const st = extractBootState(mkLog([forged, sep(7)]));
  assert.is(st.secureBoot.enabled, false);
  assert.equal(st.issues.map((e) => [e.code, e.event]), [['DIGEST_MISMATCH', forged.index]]);
});

test('hand-built: a grub command line whose text does not match its digest is an issue, not a command line', () => {
  const text = 'kernel_cmdline: /vmlinuz root=/dev/sda1 ro';
  const forged = ev(8, 0xd, { kind: 'ipl', text, encoding: 'ascii' }, Buffer.from(text), true);
  const st = extractBootState(mkLog([forged]));
  assert.equal(st.cmdlines, []);
  assert.equal(st.issues.map((e) => [e.code, e.pcr, e.event]), [['TEXT_MISMATCH', 8, forged.index]]);
});

test('hand-built: a command line relabelled with another type is still read as one (content decides)', () => {
  const text = 'kernel_cmdline: /vmlinuz root=/dev/sda1 init=/bin/sh';
  const e = ev(8, 0x6 /* EV_EVENT_TAG */, { kind: 'raw' }, Buffer.from(text));
  e.digests.set('sha256', createHash('sha256').update('/vmlinuz root=/dev/sda1 init=/bin/sh').digest());
  const st = extractBootState(mkLog([e]));
  assert.equal(st.cmdlines.map((c) => c.text), ['/vmlinuz root=/dev/sda1 init=/bin/sh']);
});

test('hand-built: UEFI Debug Mode is reported by content, whatever its label', () => {
  const dbg = action(7, 'UEFI Debug Mode');
  const relabelled = ev(7, 0x80000001, { kind: 'raw' }, Buffer.from('UEFI Debug Mode'));
  const st = extractBootState(mkLog([sep(7), dbg, relabelled]));
  assert.equal(st.debugMode, [dbg.index, relabelled.index]);
});

test('crtmVersionText: UCS-2, ASCII, GUID, empty', () => {
  assert.is(crtmVersionText(Buffer.from('edk2\0', 'utf16le')), 'edk2');
  assert.is(crtmVersionText(Buffer.from('N1FET43W\0', 'latin1')), 'N1FET43W');
  assert.is(crtmVersionText(Buffer.alloc(2)), '');
  assert.match(crtmVersionText(Buffer.from('1ef2a0f3bf6e54450a8bd0a3a9b56fcd', 'hex')), /^GUID [0-9a-f]{8}-[0-9a-f]{4}-/);
});

test.run();
