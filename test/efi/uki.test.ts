/**
 * UKIs against what real firmware and systemd-stub 252 measured in our OVMF boots
 * (test/data/qemu/*.bin, made by qemu-tests/make-eventlogs.sh): the UKIs are rebuilt here the
 * same way (qemu-tests/lib.sh, test/efi/helpers.ts), then
 *  - their Authenticode digest = the PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION of \EFI\BOOT\BOOTX64.EFI
 *    (uki-sb-off, uki-sb-off-cmdline2, uki-sb-off-4banks in all four banks, and the sbsigned
 *    uki-sb-on: the signature is not byte-reproducible, its signing time changes, but the digest
 *    leaves the certificate table out, so it is);
 *  - the embedded kernel's Authenticode digest = the VenMedia PCR 4 event;
 *  - the PCR 11 events we predict = the stub's EV_IPL events, in order, every bank;
 *  - PCR 12 for a loader-given command line = systemd-boot 252's event in sdboot-sb-off.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { parseEventLog, type TcgEvent } from '../../src/measuredboot/index.ts';
import { parsePe, authenticodeDigests, parseUki, pcr11Events, pcr12CmdlineEvent, kernelAuthenticode, sectionText, verifyAuthenticode, efiReport, measuredSections, type DigestName } from '../../src/efi/index.ts';
import { ROOT, testUkisOrSkip, skipped, CMDLINE1, CMDLINE2 } from './helpers.ts';

const QEMU = ROOT + 'test/data/qemu/';
const EV_IPL = 0x0d;
const EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003;

function log(name: string) {
  return parseEventLog(readFileSync(QEMU + name + '.bin'));
}
function apps(events: TcgEvent[]): TcgEvent[] {
  return events.filter((e) => e.pcr === 4 && e.type === EV_EFI_BOOT_SERVICES_APPLICATION);
}
function devicePath(e: TcgEvent): string {
  return e.decoded.kind === 'efi-image' ? e.decoded.devicePath : '';
}

const ukis = testUkisOrSkip;

/** Every bank the log has, compared: the digests we compute vs one event. */
function sameDigests(ours: Partial<Record<DigestName, Buffer>>, e: TcgEvent, what: string): number {
  let n = 0;
  for (const [bank, d] of e.digests) {
    const mine = ours[bank as DigestName];
    assert.ok(mine, `${what}: no ${bank}`);
    assert.is(mine!.toString('hex'), d.toString('hex'), `${what} ${bank}`);
    n++;
  }
  return n;
}

test('the rebuilt UKIs are the booted ones: Authenticode = PCR 4 of BOOTX64.EFI, kernel = VenMedia', () => {
  const u = ukis();
  if (!u) return;
  const cases: Array<[string, string, number]> = [
    ['uki-sb-off', u.uki1, 2],
    ['uki-sb-off-cmdline2', u.uki2, 2],
    ['uki-sb-off-4banks', u.uki1, 4],
  ];
  for (const [name, file, banks] of cases) {
    const ev = apps(log(name).events);
    assert.is(ev.length, 2, `${name}: the UKI, then the kernel`);
    assert.match(devicePath(ev[0]), /\\EFI\\BOOT\\BOOTX64\.EFI$/);
    assert.match(devicePath(ev[1]), /^VenMedia\(55c5d1f8-/);
    const bytes = readFileSync(file);
    if (ev[0].decoded.kind === 'efi-image') assert.is(ev[0].decoded.imageLength, BigInt(bytes.length), `${name}: image length`);
    const pe = parsePe(bytes);
    assert.is(sameDigests(authenticodeDigests(pe), ev[0], `${name} UKI`), banks);
    assert.is(sameDigests(kernelAuthenticode(parseUki(pe)), ev[1], `${name} kernel`), banks);
  }
});

test('the sbsigned UKI: Authenticode = PCR 4 of uki-sb-on; signed by the snakeoil key in PCR 7 db; no kernel event', () => {
  const u = ukis();
  if (!u) return;
  const l = log('uki-sb-on');
  const ev = apps(l.events);
  assert.is(ev.length, 1, 'systemd-stub 252 under Secure Boot starts the kernel past the firmware measurement');
  const signed = readFileSync(u.signed);
  const pe = parsePe(signed);
  assert.is(sameDigests(authenticodeDigests(pe), ev[0], 'signed UKI'), 2);
  // Not the unsigned digest: sbsign pads to 8 bytes, and the padding is hashed.
  assert.is.not(authenticodeDigests(parsePe(readFileSync(u.uki1))).sha256!.toString('hex'), ev[0].digests.get('sha256')!.toString('hex'));
  // Its signer chains to the db certificate the firmware logged as EV_EFI_VARIABLE_AUTHORITY.
  const auth = l.events.find((e) => e.pcr === 7 && e.typeName === 'EV_EFI_VARIABLE_AUTHORITY');
  assert.ok(auth && auth.decoded.kind === 'efi-variable' && auth.decoded.name === 'db');
  // EFI_SIGNATURE_DATA: SignatureOwner GUID (16 bytes), then the DER certificate.
  const dbCert = new X509Certificate((auth!.decoded as { data: Buffer }).data.subarray(16));
  assert.match(dbCert.subject, /O=SnakeOil/);
  const res = verifyAuthenticode(pe, [dbCert]);
  assert.is(res.length, 1);
  assert.ok(res[0].valid && res[0].signers[0].chain === 'trusted', JSON.stringify(res[0].signers));
  assert.is(res[0].signers[0].anchor, dbCert.fingerprint256.replace(/:/g, '').toLowerCase());
  assert.is(efiReport(signed, [dbCert]).signature, 'valid');
  // The unsigned UKI: no signature at all.
  assert.is(efiReport(readFileSync(u.uki1)).signature, 'none');
});

test('PCR 11: the EV_IPL pairs systemd-stub 252 logged = pcr11Events, in order, in every bank', () => {
  const u = ukis();
  if (!u) return;
  for (const [name, file] of [['uki-sb-off', u.uki1], ['uki-sb-off-cmdline2', u.uki2], ['uki-sb-off-4banks', u.uki1], ['uki-sb-on', u.signed]] as const) {
    const logged = log(name).events.filter((e) => e.pcr === 11);
    const uki = parseUki(readFileSync(file));
    assert.is(uki.stubVersion, '252.39-1~deb12u2');
    const ours = pcr11Events(uki);
    assert.equal(ours.map((m) => `${m.section}:${m.kind}`), ['.linux:name', '.linux:data', '.osrel:name', '.osrel:data', '.cmdline:name', '.cmdline:data', '.initrd:name', '.initrd:data']);
    assert.is(logged.length, ours.length, name);
    ours.forEach((m, i) => {
      assert.is(logged[i].type, EV_IPL);
      assert.ok(logged[i].data.equals(m.eventData), `${name} #${i} event data (UTF-16 name)`);
      sameDigests(m.digests, logged[i], `${name} PCR 11 #${i} ${m.section} ${m.kind}`);
    });
  }
});

test('UKI texts and the stub-version table', () => {
  const u = ukis();
  if (!u) return;
  const uki = parseUki(readFileSync(u.uki2));
  assert.is(sectionText(uki, '.cmdline'), CMDLINE2);
  assert.match(sectionText(uki, '.osrel')!, /^NAME="bootkey test"$/m);
  assert.is(sectionText(uki, '.uname'), undefined);
  assert.is(efiReport(readFileSync(u.uki2)).uki!.uname, null, 'JSON: null when absent');
  assert.is(sectionText(parseUki(readFileSync(u.uki1)), '.cmdline'), CMDLINE1);
  // .sbat is in the stub itself: measured by 254+ stubs, not by 252.
  assert.ok(uki.sections.some((s) => s.name === '.sbat'));
  assert.not.ok(measuredSections(252).includes('.sbat'));
  assert.ok(measuredSections(254).includes('.sbat') && measuredSections(254).includes('.uname'));
  assert.not.ok(measuredSections(255).includes('.ucode'));
  assert.is(measuredSections(256).indexOf('.ucode'), measuredSections(256).indexOf('.initrd') + 1);
  for (const v of [252, 254, 256]) assert.not.ok(measuredSections(v).includes('.pcrsig'));
  assert.is(pcr11Events(uki, ['sha256'], 254).filter((m) => m.section === '.sbat').length, 2);
});

test('PCR 12: a loader-given command line = systemd-boot 252 in sdboot-sb-off (UTF-16LE with NUL)', () => {
  const l = log('sdboot-sb-off');
  const e = l.events.filter((x) => x.pcr === 12);
  assert.is(e.length, 1);
  const cmdline = `initrd=\\bootkey\\initrd.zst ${CMDLINE1}`;
  const m = pcr12CmdlineEvent(cmdline);
  assert.ok(e[0].data.equals(m.eventData));
  assert.is(sameDigests(m.digests, e[0], 'PCR 12'), 2);
  assert.is.not(pcr12CmdlineEvent(cmdline, ['sha256'], { nul: false }).digests.sha256!.toString('hex'), e[0].digests.get('sha256')!.toString('hex'));
  // The kernel systemd-boot loads is the same kernel as the UKIs': same digest as VenMedia there.
  const k = apps(l.events)[1];
  assert.is(k.digests.get('sha256')!.toString('hex'), apps(log('uki-sb-off').events)[1].digests.get('sha256')!.toString('hex'));
});

test.run();
