/**
 * Staging the next boot (issue 11 §2) against our real OVMF boots (test/data/qemu/):
 *  - the prediction from uki-sb-off's log + the UKI of the cmdline2 boot IS the log of
 *    uki-sb-off-cmdline2: every event (PCR, type, digests in both banks, data) and every PCR value
 *    the guest read (but PCR 10, IMA's);
 *  - stageBoot on the uki-sb-off policy + that prediction lets the real cmdline2 boot, bound to its
 *    quoted PCRs, pass evaluateBoot; without staging it is refused, naming PCR 4 and the command
 *    line; staging never replaces; staging Secure Boot off into an SB-on policy is refused;
 *  - signed-by: checkStagedSignature on the snakeoil-signed UKI's PKCS#7 (OVMF's snakeoil key, the
 *    one uki-sb-on booted with) and on other signatures, each refusal with its code and message.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { createHash, X509Certificate } from 'node:crypto';
import { parseEventLog, type EventLog } from '../../src/measuredboot/index.ts';
import { pcrValuesFromText, type PcrValues } from '../../src/pcrs.ts';
import { recognizeCmdline } from '../../src/measuredboot/cmdline.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { generatePolicy, rulesDigest, type Policy, type Stage } from '../../src/measuredboot/policy.ts';
import { parsePolicy } from '../../src/measuredboot/policy-load.ts';
import { evaluateBoot, requiredPcrs } from '../../src/measuredboot/verdict.ts';
import { stageBoot, newStagedImages, policyWidening, parsePredictedBoot, predictedLogBytes, StageError, type PredictedBoot } from '../../src/measuredboot/stage.ts';
import { PolicyError } from '../../src/measuredboot/policy-errors.ts';
import { predictBoot, checkStagedSignature, parsePe, parseCertificateTable, authenticodeDigest, pcr12CmdlineEvent } from '../../src/efi/index.ts';
import { ROOT, testUkisOrSkip, skipped, CMDLINE2 } from './helpers.ts';

const QEMU = ROOT + 'test/data/qemu/';
const SNAKEOIL = '/usr/share/ovmf/PkKek-1-snakeoil.pem';
const log = (name: string): EventLog => parseEventLog(readFileSync(QEMU + name + '.bin'));
const pcrsOf = (name: string) => JSON.parse(readFileSync(QEMU + name + '.pcrs.json', 'utf8')) as Record<string, Record<string, string>>;

const ukis = testUkisOrSkip;

/** The quote of `policy`'s PCRs in every bank, from the guest's PCR dump. */
function quoted(name: string, policy: Policy): PcrValues {
  const all = pcrValuesFromText(readFileSync(QEMU + name + '.pcrs.json', 'utf8'));
  const need = new Set(requiredPcrs(policy));
  return new Map([...all].map(([b, m]) => [b, new Map([...m].filter(([p]) => need.has(p)))]));
}

function sameAsLog(p: PredictedBoot, real: EventLog): number {
  const evs = real.events.filter((e) => e.decoded.kind !== 'spec-id');
  assert.is(p.events.length, evs.length, 'event count');
  evs.forEach((e, i) => {
    const q = p.events[i];
    const at = `event ${e.index} (PCR ${e.pcr} ${e.typeName})`;
    assert.is(q.pcr, e.pcr, at);
    assert.is(q.type, e.type, at);
    for (const [bank, d] of e.digests) assert.is(q.digests[bank], d.toString('hex'), `${at} ${bank}`);
    assert.is(q.data, e.data.toString('hex'), `${at} data`);
  });
  return evs.length;
}

test('the prediction from uki-sb-off + the cmdline2 UKI equals the real cmdline2 boot: events and PCR values', () => {
  const u = ukis();
  if (!u) return;
  const p = predictBoot(log('uki-sb-off'), { uki: readFileSync(u.uki2) });
  assert.equal(p.changedPcrs, [4, 9, 11]);
  assert.equal(p.notes, []);
  assert.is(sameAsLog(p, log('uki-sb-off-cmdline2')), 36);
  // The changed events are exactly the UKI's: PCR 4 ×2, PCR 11 ×8, PCR 9 LoadOptions + initrd.
  assert.equal(p.events.filter((e) => e.changed).map((e) => `${e.pcr}`).join(','), '4,11,11,11,11,11,11,11,11,4,9,9');
  const real = pcrsOf('uki-sb-off-cmdline2');
  let n = 0;
  for (const bank of ['sha1', 'sha256'] as const) {
    for (let pcr = 0; pcr <= 23; pcr++) {
      if (pcr === 10) continue; // IMA's boot_aggregate: not in the firmware log
      assert.is(p.pcrs[bank]![String(pcr)], real[bank][String(pcr)], `${bank} PCR ${pcr}`);
      n++;
    }
  }
  assert.is(n, 46);
  assert.equal(p.images.map((i) => i.role), ['uki', 'kernel']);
  // The predicted log is a log: the parser reads it back to the same events.
  assert.is(parseEventLog(predictedLogBytes(p)).events.length, 37);
  // And the other way round: uki-sb-off from cmdline2's log + the first UKI.
  sameAsLog(predictBoot(log('uki-sb-off-cmdline2'), { uki: readFileSync(u.uki1) }), log('uki-sb-off'));
  // Four banks: the prediction from the 4-bank boot with the same UKI is that boot again.
  const four = predictBoot(log('uki-sb-off-4banks'), { uki: readFileSync(u.uki1) });
  assert.equal(four.changedPcrs, []);
  assert.is(sameAsLog(four, log('uki-sb-off-4banks')), 36);
});

test('stageBoot: the real cmdline2 boot passes the staged policy, bound to its quote; unstaged, it is refused with the reason', () => {
  const u = ukis();
  if (!u) return;
  const policy = generatePolicy(unverifiedLog(log('uki-sb-off')));
  const cmdline2 = readFileSync(QEMU + 'uki-sb-off-cmdline2.bin');
  const before = evaluateBoot(policy, cmdline2, quoted('uki-sb-off-cmdline2', policy));
  assert.is(before.pass, false);
  assert.is(before.code, 'POLICY');
  assert.ok(before.failures.some((f) => f.rule === 'boot-chain' && f.pcr === 4 && /EFI application .*BOOTX64\.EFI.* has digest/.test(f.message)), JSON.stringify(before.failures));
  assert.ok(before.failures.some((f) => f.rule === 'kernel-cmdline' && f.pcr === 9), JSON.stringify(before.failures));

  const p = predictBoot(log('uki-sb-off'), { uki: readFileSync(u.uki2) });
  const staged = stageBoot(policy, p, { label: 'cmdline2', at: '2026-12-02T00:00:00Z' });
  const v = evaluateBoot(staged, cmdline2, quoted('uki-sb-off-cmdline2', staged));
  assert.ok(v.pass, JSON.stringify(v.failures));
  assert.ok(v.verified);
  // The predicted values are known-good ones: every PCR the policy reads matches them as a whole.
  assert.equal(v.knownGoodPcrs, [0, 2, 4, 5, 7, 9]);
  assert.is(staged.knownGoodRules, rulesDigest(staged));
  // Never replaces: the current boot still passes.
  assert.ok(evaluateBoot(staged, readFileSync(QEMU + 'uki-sb-off.bin'), quoted('uki-sb-off', staged)).pass);
  // The staged entry: label, time, PCR 4 digests, predicted values; the file round-trips.
  assert.is(staged.staged!.length, 1);
  assert.is(staged.staged![0].label, 'cmdline2');
  assert.equal(staged.staged![0].apps, p.images.map((i) => i.digests.sha256));
  assert.is(staged.staged![0].knownGood['4'], pcrsOf('uki-sb-off-cmdline2').sha256['4']);
  assert.equal(parsePolicy(JSON.stringify(staged)), staged);
  assert.equal(newStagedImages(staged, p), [], 'nothing left to stage');
  // What staging widened: the UKI's digest in stage 0 and the new LoadOptions digest, nothing else.
  assert.equal(policyWidening(policy, staged).map((w) => [w.rule, w.stage ?? null, w.value]), [
    ['boot-chain', 0, p.images[0].digests.sha256],
    ['kernel-cmdline', null, `linux-efi-stub digest ${p.events.find((e) => e.pcr === 9 && e.changed && e.description.includes('LoadOptions'))!.digests.sha256}`],
  ]);
  assert.equal(policyWidening(staged, policy), [], 'the reverse widens nothing');
  // The kernel is the same build in both UKIs: only the UKI is new.
  assert.equal(newStagedImages(policy, p).map((x) => [x.stage, x.role]), [[0, 'uki']]);

  // A UKI that was not staged (the sbsigned one: another digest) is still refused, with the reason.
  const other = stageBoot(policy, predictBoot(log('uki-sb-off'), { uki: readFileSync(u.signed) }), { label: 'signed' });
  const r = evaluateBoot(other, cmdline2, quoted('uki-sb-off-cmdline2', other));
  assert.is(r.pass, false);
  assert.is(r.code, 'POLICY');
  const f = r.failures.find((x) => x.rule === 'boot-chain' && x.pcr === 4);
  assert.ok(f, JSON.stringify(r.failures));
  assert.match(f!.message, /has digest [0-9a-f]{12}…, policy allows/);
  assert.is(f!.actual, log('uki-sb-off-cmdline2').events.find((e) => e.pcr === 4 && e.typeName === 'EV_EFI_BOOT_SERVICES_APPLICATION')!.digests.get('sha256')!.toString('hex'));
});

test('stageBoot refuses what addBoot refuses: a Secure Boot-off boot into an SB-on policy', () => {
  const u = ukis();
  if (!u) return;
  const sbOn = generatePolicy(unverifiedLog(log('uki-sb-on')));
  assert.ok(sbOn.rules.secureBoot?.enabled);
  const p = predictBoot(log('uki-sb-off'), { uki: readFileSync(u.uki2) });
  try {
    stageBoot(sbOn, p, { label: 'sb-off' });
    assert.unreachable('staged');
  } catch (e) {
    assert.instance(e, PolicyError);
    assert.is((e as PolicyError).code, 'SECUREBOOT_DOWNGRADE');
    assert.match((e as Error).message, /Secure Boot off .*policy requires it on; refusing to relax the policy/);
  }
  // --allow-secureboot-off lifts only that refusal: this boot's empty dbx still lacks the snakeoil dbx entry.
  try {
    stageBoot(sbOn, p, { allowSecureBootOff: true });
    assert.unreachable('staged');
  } catch (e) {
    assert.is((e as PolicyError).code, 'DBX_ROLLBACK');
    assert.match((e as Error).message, /dbx lacks 1 revocation\(s\) the policy requires/);
  }
  // policyWidening names such relaxations, so a server can refuse them from a machine.
  const relaxed = structuredClone(sbOn);
  relaxed.rules.secureBoot!.enabled = false;
  relaxed.rules.keys!.db.push({ sha256: 'ab'.repeat(32), subjects: [] });
  relaxed.rules.keys!.dbxMustContain = [];
  assert.equal(policyWidening(sbOn, relaxed).map((w) => [w.rule, w.value]), [
    ['secure-boot', 'off'],
    ['db', 'ab'.repeat(32)],
    ['dbx', `${sbOn.rules.keys!.dbxMustContain[0]} no longer required`],
  ]);
});

test('predict: a part with no place in the current boot is refused (NO_STAGE), and the parts must fit together', () => {
  const cur = log('uki-sb-off');
  const k = Buffer.alloc(0);
  const cases: Array<[() => unknown, string, RegExp]> = [
    [() => predictBoot(cur, { shim: readFileSync(ROOT + 'test/data/efi/tiny-uki.efi') }), 'NO_STAGE', /the current boot loaded no shim .*add-boot/],
    [() => predictBoot(log('sdboot-sb-off'), { uki: readFileSync(ROOT + 'test/data/efi/tiny-uki.efi') }), 'NO_STAGE', /no unified kernel image/],
    [() => predictBoot(cur, { uki: k, kernel: k }), 'BAD_PARTS', /either a UKI or a kernel/],
    [() => predictBoot(cur, { uki: readFileSync(ROOT + 'test/data/efi/tiny-uki.efi'), initrd: k }), 'BAD_PARTS', /carries its initrd/],
  ];
  for (const [f, code, re] of cases) {
    try {
      f();
      assert.unreachable(code);
    } catch (e) {
      assert.instance(e, StageError);
      assert.is((e as StageError).code, code);
      assert.match((e as Error).message, re);
    }
  }
  // A kernel into a UKI boot: the kernel is the UKI's.
  try {
    const u = ukis();
    if (!u) return;
    predictBoot(cur, { kernel: readFileSync(ROOT + 'test/data/efi-cache/root/boot/vmlinuz-6.1.0-56-amd64') });
    assert.unreachable('kernel');
  } catch (e) {
    assert.is((e as StageError).code, 'NO_STAGE');
    assert.match((e as Error).message, /embedded in a UKI: stage the new UKI/);
  }
});

test('systemd-boot type #1: the same kernel and initrd predict the same boot; a new command line changes PCR 12 and 9 as systemd-boot 252 measures', () => {
  const u = ukis();
  if (!u) return;
  const cur = log('sdboot-sb-off');
  const kernel = readFileSync(ROOT + 'test/data/efi-cache/root/boot/vmlinuz-6.1.0-56-amd64');
  const same = predictBoot(cur, { kernel, initrd: readFileSync(u.initrd) });
  assert.equal(same.changedPcrs, []);
  sameAsLog(same, cur);
  const text = `initrd=\\bootkey\\initrd.zst ${CMDLINE2}`;
  const p = predictBoot(cur, { kernel, cmdline: text });
  assert.equal(p.changedPcrs, [9, 12]);
  const e12 = p.events.filter((e) => e.pcr === 12);
  assert.is(e12.length, 1);
  assert.is(e12[0].digests.sha256, pcr12CmdlineEvent(text).digests.sha256!.toString('hex'));
  assert.is(e12[0].data, Buffer.from(text + '\0', 'utf16le').toString('hex'));
  const lo = p.events.find((e) => e.pcr === 9 && e.description.includes('LoadOptions'))!;
  assert.is(lo.digests.sha1, createHash('sha1').update(Buffer.from(text + '\0', 'utf16le')).digest('hex'));
  assert.is(lo.changed, 'cmdline');
  // The policy of the current boot + this staged boot: the predicted log passes it.
  const policy = generatePolicy(unverifiedLog(cur));
  const staged = stageBoot(policy, p);
  assert.is(evaluateBoot(policy, predictedLogBytes(p), undefined).pass, false);
  assert.ok(evaluateBoot(staged, predictedLogBytes(p), undefined).pass);
  assert.ok(staged.rules.kernelCmdline!.allowed.some((a) => a.text === text));
});

test('GRUB (a real Ubuntu 21.04 shim + GRUB log, three banks): shim, boot loader, kernel file and path, command line', () => {
  const cur = parseEventLog(readFileSync(ROOT + 'test/data/eventlogs/google__go-tpm-tools__internal__test__eventlogs__ubuntu-2104-no-secure-boot.bin'));
  assert.equal(cur.banks, ['sha1', 'sha256', 'sha384']);
  const pe = readFileSync(ROOT + 'test/data/efi/tiny-uki.efi'); // any PE stands in for a new shim, GRUB, kernel
  const loaders = predictBoot(cur, { shim: pe, bootloader: pe });
  assert.equal(loaders.changedPcrs, [4]);
  const apps = loaders.events.filter((e) => e.pcr === 4 && e.changed);
  assert.equal(apps.map((e) => e.changed), ['shim', 'bootloader']);
  for (const e of apps) for (const b of ['sha1', 'sha256', 'sha384'] as const) assert.is(e.digests[b], authenticodeDigest(parsePe(pe), b).toString('hex'));
  assert.match(loaders.notes.join('\n'), /SbatLevel or its vendor certificate changes PCR 7 events that are not predicted/);

  const p = predictBoot(cur, { kernel: pe, kernelPath: '/boot/vmlinuz-new', cmdline: 'root=x ro' });
  assert.equal(p.changedPcrs, [8, 9]);
  const log = parseEventLog(predictedLogBytes(p));
  const cmds = log.events.filter((e) => e.pcr === 8).map((e) => recognizeCmdline(e)).filter((c) => c !== undefined);
  assert.equal(cmds.map((c) => [c!.form, c!.text, c!.verified]), [
    ['grub2-upstream-grub_cmd', '/boot/vmlinuz-new root=x ro', true],
    ['grub2-upstream-kernel_cmdline', '/boot/vmlinuz-new root=x ro', true],
  ]);
  const file = p.events.find((e) => e.pcr === 9 && e.changed === 'kernel')!;
  assert.is(Buffer.from(file.data, 'hex').toString('latin1'), '/boot/vmlinuz-new\0');
  assert.is(file.digests.sha384, createHash('sha384').update(pe).digest('hex'));
  assert.match(p.notes.join('\n'), /no PCR 4 event for the kernel \(GRUB loaded it itself/);
  assert.match(p.notes.join('\n'), /grub\.cfg and GRUB's other commands \(PCR 8\/9 values\) are not/);
  // The policy of the current boot refuses the prediction, naming the command line; staged, it passes.
  const policy = generatePolicy(unverifiedLog(cur));
  const before = evaluateBoot(policy, predictedLogBytes(p), undefined);
  assert.is(before.pass, false);
  assert.ok(before.failures.some((f) => f.rule === 'kernel-cmdline' && f.message.includes('"/boot/vmlinuz-new root=x ro"')), JSON.stringify(before.failures));
  assert.ok(evaluateBoot(stageBoot(policy, p), predictedLogBytes(p), undefined).pass);
});

test('every corpus log, every part: a prediction or a StageError, never a crash; parsePredictedBoot on mutated JSON: a boot or BAD_PREDICTION', () => {
  const pe = readFileSync(ROOT + 'test/data/efi/tiny-uki.efi');
  const counts: Record<string, number> = {};
  for (const dir of ['test/data/eventlogs/', 'test/data/qemu/']) {
    for (const f of readdirSync(ROOT + dir)) {
      if (/\.(json|md|txt)$/.test(f)) continue;
      let cur: EventLog;
      try {
        cur = parseEventLog(readFileSync(ROOT + dir + f));
      } catch {
        continue;
      }
      for (const parts of [{ cmdline: 'x=1' }, { uki: pe }, { kernel: pe }, { shim: pe }, { bootloader: pe }, { initrd: pe }]) {
        try {
          const p = predictBoot(cur, parts);
          assert.is(parsePredictedBoot(JSON.parse(JSON.stringify(p))).events.length, p.events.length);
          counts.ok = (counts.ok ?? 0) + 1;
        } catch (e) {
          assert.instance(e, StageError, `${f} ${Object.keys(parts)}: ${(e as Error).stack}`);
          counts[(e as StageError).code] = (counts[(e as StageError).code] ?? 0) + 1;
        }
      }
    }
  }
  assert.ok(counts.ok > 100 && counts.NO_STAGE > 50 && counts.UNSUPPORTED > 10, JSON.stringify(counts));
  // Random byte-level damage to a prediction's JSON values.
  const u = ukis();
  if (!u) return;
  const base = JSON.stringify(predictBoot(log('uki-sb-off'), { uki: readFileSync(u.uki2) }));
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  let refused = 0;
  for (let i = 0; i < 300; i++) {
    const j = JSON.parse(base);
    const ev = j.events[rnd(j.events.length)];
    const k = ['pcr', 'type', 'data', 'digests', 'changed'][rnd(5)];
    ev[k] = [-1, 2 ** 40, 'zz', '', null, {}, [], 'ab'.repeat(rnd(40)), 3.5][rnd(9)];
    try {
      parsePredictedBoot(j);
    } catch (e) {
      assert.instance(e, StageError);
      assert.is((e as StageError).code, 'BAD_PREDICTION');
      refused++;
    }
  }
  assert.ok(refused > 150, String(refused));
});

test('parsePredictedBoot: a round trip through JSON; PCR values are recomputed, never taken; bad fields named', () => {
  const u = ukis();
  if (!u) return;
  const p = predictBoot(log('uki-sb-off'), { uki: readFileSync(u.uki2) });
  const j = JSON.parse(JSON.stringify(p));
  assert.equal(parsePredictedBoot(j).pcrs, p.pcrs);
  j.pcrs.sha256['4'] = '00'.repeat(32);
  assert.is(parsePredictedBoot(j).pcrs.sha256!['4'], p.pcrs.sha256!['4']);
  const bad: Array<[(x: any) => void, RegExp]> = [
    [(x) => { x.format = 'other'; }, /format/],
    [(x) => { x.events[3].digests.sha1 = 'zz'; }, /events\[3\]\.digests\.sha1: expected a sha1 digest/],
    [(x) => { x.events[0].data = 'abc'; }, /events\[0\]\.data: expected hex/],
    [(x) => { x.banks = ['md5']; }, /banks\[0\]/],
    [(x) => { x.images[0].pkcs7 = [7]; }, /images\[0\]\.pkcs7/],
    [(x) => { x.events = new Array(5000).fill(x.events[0]); }, /at most 4096/],
  ];
  for (const [mutate, re] of bad) {
    const x = JSON.parse(JSON.stringify(p));
    mutate(x);
    try {
      parsePredictedBoot(x);
      assert.unreachable(String(re));
    } catch (e) {
      assert.instance(e, StageError);
      assert.is((e as StageError).code, 'BAD_PREDICTION');
      assert.match((e as Error).message, re);
    }
  }
});

test('checkStagedSignature: the snakeoil-signed UKI chains to the listed snakeoil certificate; refusals with their codes', () => {
  const u = ukis();
  if (!u) return;
  const snakeoil = new X509Certificate(readFileSync(SNAKEOIL));
  const snakeoilSha = createHash('sha256').update(snakeoil.raw).digest('hex');
  const stage: Stage = { role: 'uki', allowed: [], signedBy: [{ sha256: snakeoilSha, subject: 'SnakeOil' }] };
  const signed = parsePe(readFileSync(u.signed));
  const pkcs7 = parseCertificateTable(signed)[0].data;
  const digest = authenticodeDigest(signed, 'sha256');

  const ok = checkStagedSignature(stage, digest, 'sha256', pkcs7, [snakeoil]);
  assert.ok(ok.ok, JSON.stringify(ok));
  if (ok.ok) {
    assert.match(ok.signer, /SnakeOil/);
    assert.is(ok.anchor, snakeoilSha);
  }
  // sbsign puts the signer's certificate in the blob: the listed hash alone suffices.
  assert.ok(checkStagedSignature(stage, digest, 'sha256', pkcs7).ok);

  const no = (r: ReturnType<typeof checkStagedSignature>, code: string, re: RegExp) => {
    assert.is(r.ok, false, JSON.stringify(r));
    if (!r.ok) {
      assert.is(r.code, code);
      assert.match(r.message, re);
    }
  };
  // Another key: the tiny test signer's signature over its own (valid) digest.
  const tiny = parsePe(readFileSync(ROOT + 'test/data/efi/tiny-uki.signed.efi'));
  no(checkStagedSignature(stage, authenticodeDigest(tiny, 'sha256'), 'sha256', parseCertificateTable(tiny)[0].data, [snakeoil]), 'UNLISTED_SIGNER',
    /the uki is signed by CN=bootkey tiny test signer, which does not chain to a certificate the uki stage lists \(SnakeOil\)/);
  // The snakeoil signature offered for another UKI's digest.
  no(checkStagedSignature(stage, authenticodeDigest(parsePe(readFileSync(u.uki2)), 'sha256'), 'sha256', pkcs7, [snakeoil]), 'DIGEST_NOT_COVERED',
    /the signature signs sha256 [0-9a-f]{12}…, not the staged uki digest/);
  // In another bank than the one it signs.
  no(checkStagedSignature(stage, authenticodeDigest(signed, 'sha1'), 'sha1', pkcs7, [snakeoil]), 'DIGEST_NOT_COVERED', /signs a sha256 digest, the staged digest is sha1/);
  no(checkStagedSignature(stage, digest, 'sha256', undefined, [snakeoil]), 'UNSIGNED', /comes without an Authenticode signature; the uki stage requires one by SnakeOil/);
  no(checkStagedSignature(stage, digest, 'sha256', Buffer.alloc(0)), 'UNSIGNED', /without an Authenticode signature/);
  no(checkStagedSignature({ role: 'uki', allowed: [] }, digest, 'sha256', pkcs7, [snakeoil]), 'UNLISTED_SIGNER', /lists no signing certificate \(signedBy\)/);
  // A flipped byte in the RSA signature (the blob's last bytes): decodes, does not verify.
  const flipped = Buffer.from(pkcs7);
  let end = flipped.length - 1;
  while (flipped[end] === 0) end--; // sbsign's 8-byte padding
  flipped[end - 4] ^= 1;
  no(checkStagedSignature(stage, digest, 'sha256', flipped, [snakeoil]), 'BAD_SIGNATURE', /does not verify/);
  no(checkStagedSignature(stage, digest, 'sha256', Buffer.from('not a pkcs7'), [snakeoil]), 'BAD_SIGNATURE', /does not decode/);

  // signedBy in a policy file: loaded, kept by add-boot/stage merges, validated with the field's path.
  const policy = generatePolicy(unverifiedLog(log('uki-sb-off')));
  policy.rules.bootChain!.stages[0].signedBy = [{ sha256: snakeoilSha, subject: 'SnakeOil' }];
  assert.equal(parsePolicy(JSON.stringify(policy)), policy);
  const staged = stageBoot(policy, predictBoot(log('uki-sb-off'), { uki: readFileSync(u.uki2) }));
  assert.equal(staged.rules.bootChain!.stages[0].signedBy, [{ sha256: snakeoilSha, subject: 'SnakeOil' }]);
  const bad = JSON.parse(JSON.stringify(policy));
  bad.rules.bootChain.stages[0].signedBy[0].sha256 = 'XYZ';
  try {
    parsePolicy(bad);
    assert.unreachable('bad signedBy');
  } catch (e) {
    assert.is((e as PolicyError).code, 'BAD_POLICY');
    assert.match((e as Error).message, /rules\.bootChain\.stages\[0\]\.signedBy\[0\]\.sha256: expected the SHA-256 of a DER certificate/);
  }
  const v1 = { ...JSON.parse(JSON.stringify(staged)), version: 1 };
  delete v1.knownGood;
  delete v1.knownGoodRules;
  assert.throws(() => parsePolicy(v1), /staged: needs version 2/);
});

function run(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('CLI: policy predict (--json, --policy naming what would fail), policy stage (files, --predicted), refusals leave the policy unchanged', () => {
  const u = ukis();
  if (!u) return;
  const tmp = mkdtempSync(tmpdir() + '/bootkey-stage-');
  try {
    const pol = tmp + '/policy.json';
    assert.is(run(['policy', 'generate', QEMU + 'uki-sb-off.bin', '-o', pol]).status, 0);
    const pr = run(['policy', 'predict', QEMU + 'uki-sb-off.bin', '--uki', u.uki2, '--policy', pol]);
    assert.is(pr.status, 1, pr.stderr);
    assert.match(pr.stdout, /changed PCRs: 4, 9, 11/);
    assert.match(pr.stdout, /^\* #23 PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION [0-9a-f]{64}  \\EFI\\BOOT\\BOOTX64\.EFI  \(uki\)$/m);
    assert.match(pr.stdout, /would be refused: POLICY/);
    assert.match(pr.stdout, /boot-chain: PCR 4 event 23: EFI application .* has digest/);
    assert.match(pr.stdout, /kernel-cmdline: PCR 9 event 33/);
    const js = run(['policy', 'predict', QEMU + 'uki-sb-off.bin', '--uki', u.uki2, '--json', '--log-out', tmp + '/next.bin']);
    assert.is(js.status, 0, js.stderr);
    writeFileSync(tmp + '/next.json', js.stdout);
    assert.ok(readFileSync(tmp + '/next.bin').equals(readFileSync(QEMU + 'uki-sb-off-cmdline2.bin')), 'the predicted binary log is byte for byte the real one');
    const st = run(['policy', 'stage', pol, '--predicted', tmp + '/next.json', '--label', 'cmdline2']);
    assert.is(st.status, 0, st.stderr);
    assert.match(st.stdout, /^staged "cmdline2" into .*: PCR 4 uki [0-9a-f]{12}…, kernel [0-9a-f]{12}…; changed PCRs 4, 9, 11$/m);
    assert.is(JSON.parse(readFileSync(pol, 'utf8')).staged[0].label, 'cmdline2');
    const ck = run(['policy', 'check', pol, QEMU + 'uki-sb-off-cmdline2.bin', '--pcrs', QEMU + 'uki-sb-off-cmdline2.pcrs.json']);
    assert.is(ck.status, 0, ck.stdout);
    assert.is(run(['policy', 'predict', QEMU + 'uki-sb-off.bin', '--uki', u.uki2, '--policy', pol]).status, 0);
    // Secure Boot off into an SB-on policy: refused, the file untouched.
    const on = tmp + '/on.json';
    assert.is(run(['policy', 'generate', QEMU + 'uki-sb-on.bin', '-o', on]).status, 0);
    const before = readFileSync(on, 'utf8');
    const no = run(['policy', 'stage', on, '--log', QEMU + 'uki-sb-off.bin', '--uki', u.uki2]);
    assert.is(no.status, 1);
    assert.match(no.stderr, /^bootkey: .*Secure Boot off .*refusing to relax the policy/);
    assert.is(readFileSync(on, 'utf8'), before);
    const none = run(['policy', 'stage', on]);
    assert.is(none.status, 2);
    assert.match(none.stderr, /give at least one of --uki/);
    const mixed = run(['policy', 'stage', on, '--predicted', tmp + '/next.json', '--uki', u.uki2]);
    assert.is(mixed.status, 2);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('CLI: efi show --bank on a UKI of ≥ 8 MiB (hashed on two threads) = the PCR 4 event of its boot', () => {
  const u = ukis();
  if (!u) return;
  assert.ok(readFileSync(u.uki2).length >= 8 << 20, 'large enough for the parallel path');
  const ev = log('uki-sb-off-cmdline2').events.find((e) => e.pcr === 4 && e.typeName === 'EV_EFI_BOOT_SERVICES_APPLICATION')!;
  const one = run(['efi', 'show', u.uki2, '--json', '--bank', 'sha256']);
  assert.is(one.status, 0, one.stderr);
  const j = JSON.parse(one.stdout);
  assert.equal(Object.keys(j.authenticode), ['sha256']);
  assert.is(j.authenticode.sha256, ev.digests.get('sha256')!.toString('hex'));
  assert.equal(Object.keys(j.uki.kernel.authenticode), ['sha256']);
  const all = JSON.parse(run(['efi', 'show', u.uki2, '--json']).stdout);
  assert.equal(Object.keys(all.authenticode), ['sha1', 'sha256', 'sha384', 'sha512']);
  assert.is(all.authenticode.sha1, ev.digests.get('sha1')!.toString('hex'));
  assert.equal(all.uki.sections, j.uki.sections);
  // The signed UKI: its signature's sha256 digest is the one the worker computed.
  const signed = JSON.parse(run(['efi', 'show', u.signed, '--json', '--bank', 'sha1', '--ca', SNAKEOIL]).stdout);
  assert.is(signed.signature, 'valid');
  assert.is(signed.signatures[0].digestMatches, true);
  const bad = run(['efi', 'show', u.uki2, '--bank', 'md5']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /--bank: "md5" is not one of sha1, sha256, sha384, sha512/);
});

test.run();
