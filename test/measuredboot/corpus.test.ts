/**
 * The real-world corpus (test/data/eventlogs, see SOURCES.md): every log whose expected PCRs are
 * reliable replays to exactly them; every real log parses; every negative log is refused with an
 * EventLogError; synthetic and CCEL logs parse or are refused cleanly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseEventLog, replay, EventLogError } from '../../src/measuredboot/index.ts';
import { pcrValuesToJson } from '../../src/pcrs.ts';

const DIR = fileURLToPath(new URL('../data/eventlogs/', import.meta.url));
interface Entry {
  file: string;
  kind: 'real' | 'negative' | 'synthetic' | 'ccel';
  events: string;
  expected?: { file?: string; reliable?: boolean };
}
const MANIFEST: Entry[] = JSON.parse(readFileSync(DIR + 'MANIFEST.json', 'utf8'));
const base = (p: string) => p.split('/').pop()!;
const load = (e: Entry) => readFileSync(DIR + base(e.file));
const short = (e: Entry) => base(e.file).replace(/^[^_]+__[^_]+__/, '');

/** Events whose digest does not match their data, known from the sources (tpm2_eventlog warns too). */
const KNOWN_MISMATCH: Record<string, number[]> = {
  'google__go-tpm-tools__internal__test__eventlogs__arch-linux-workstation.bin': [24],
  'tpm2-software__tpm2-tools__test__integration__fixtures__event-arch-linux.bin': [24],
  'google__go-tpm-tools__internal__test__eventlogs__gdc-host.bin': [3],
  'grawity__tpm_futurepcr__tests__fixtures__ACTUAL_SYSTEMS__HP_EliteBook_TPM2.0_UEFI_SB_Linux.log': [40],
  'nsacyber__HIRS__tools__tcg_rim_tool__src__test__resources__TPMLog_Altered.bin': [25],
};

/** Logs with events that lack a declared bank's digest: refused by the strict parser (MISSING_DIGEST), shown with a warning by `eventlog show|replay`. */
const KNOWN_MISSING_DIGEST = new Set([
  'keylime__python3-uefi-eventlog__testing__good_logs__thinkpad__p511.bin', // Windows: EV_COMPACT_HASH in PCR 11 with sha256 only
  'tpm2-software__tpm2-tools__test__integration__fixtures__event-uefiaction.bin', // 4 banks declared, 2 given
  'tpm2-software__tpm2-tools__test__integration__fixtures__event-uefivar.bin',
]);
const lenient = (b: Buffer) => parseEventLog(b, { allowMissingDigests: true });

test('strict parse refuses events without a digest for a declared bank (MISSING_DIGEST), naming the event', () => {
  for (const f of KNOWN_MISSING_DIGEST) {
    try {
      parseEventLog(readFileSync(DIR + f));
      assert.unreachable(f);
    } catch (err) {
      assert.instance(err, EventLogError, f);
      assert.is((err as EventLogError).code, 'MISSING_DIGEST', f);
      assert.match((err as Error).message, /^event \d+ at byte \d+: EV_\w+ in PCR \d+ has no /);
    }
    assert.ok(lenient(readFileSync(DIR + f)).warnings!.some((w) => w.code === 'MISSING_DIGEST'), f);
  }
});

test('the manifest lists the corpus and every file is here', () => {
  assert.ok(MANIFEST.length >= 60);
  for (const e of MANIFEST) assert.ok(existsSync(DIR + base(e.file)), base(e.file));
});

let reliable = 0;
for (const e of MANIFEST) {
  if (e.kind === 'real') {
    test(`real log parses: ${short(e)}`, () => {
      const log = lenient(load(e));
      assert.is(KNOWN_MISSING_DIGEST.has(base(e.file)), (log.warnings ?? []).some((w) => w.code === 'MISSING_DIGEST'), 'MISSING_DIGEST exactly where known');
      assert.is(log.events.length, parseInt(e.events, 10), 'event count (header included) as in the manifest');
      const mism = log.events.filter((x) => x.digestCheck === 'mismatch').map((x) => x.index);
      assert.equal(mism, KNOWN_MISMATCH[base(e.file)] ?? [], 'digest mismatches');
      replay(log);
    });
  }
  if (e.kind === 'negative') {
    test(`negative log refused with EventLogError: ${short(e)}`, () => {
      try {
        parseEventLog(load(e));
        assert.unreachable('should be refused');
      } catch (err) {
        assert.instance(err, EventLogError);
        assert.match((err as Error).message, /at byte \d+/);
      }
    });
  }
  if (e.kind === 'synthetic' || e.kind === 'ccel') {
    test(`${e.kind} log parses or is refused cleanly: ${short(e)}`, () => {
      try {
        const log = parseEventLog(load(e));
        replay(log);
        assert.ok(log.events.length >= 1);
      } catch (err) {
        assert.instance(err, EventLogError, String(err));
      }
    });
  }
  if (e.expected?.reliable && e.expected.file) {
    reliable++;
    test(`replay equals the expected PCRs: ${short(e)}`, () => {
      const expected: Record<string, Record<string, string>> = JSON.parse(readFileSync(DIR + base(e.expected!.file!), 'utf8'));
      const got = pcrValuesToJson(replay(lenient(load(e))));
      let compared = 0;
      for (const [bank, pcrs] of Object.entries(expected)) {
        if (!got[bank]) continue;
        for (const [i, want] of Object.entries(pcrs)) {
          if (!(i in got[bank])) continue;
          assert.is(got[bank][i], want.toLowerCase(), `${bank}:${i}`);
          compared++;
        }
      }
      assert.ok(compared > 0, 'at least one PCR compared');
    });
  }
}

test('the corpus has reliable oracles', () => {
  assert.ok(reliable >= 35, `${reliable}`);
});

test('the altered HIRS log does not replay to the unaltered log\'s PCR0/PCR1', () => {
  const ref = JSON.parse(readFileSync(DIR + 'nsacyber__HIRS__tools__tcg_rim_tool__src__test__resources__TPMLog_Altered.bin.expected.UNALTERED-TpmLog-reference.json', 'utf8'));
  const got = pcrValuesToJson(replay(parseEventLog(readFileSync(DIR + 'nsacyber__HIRS__tools__tcg_rim_tool__src__test__resources__TPMLog_Altered.bin'))));
  assert.is.not(got.sha256['0'], ref.sha256['0']);
  assert.is.not(got.sha256['1'], ref.sha256['1']);
  assert.is(got.sha256['7'], ref.sha256['7']);
});

test('quirks: StartupLocality 3, H-CRTM, SecureBoot of length 0, 0xFFFFFFFF PCR, WBCL separators', () => {
  const gdc = parseEventLog(readFileSync(DIR + 'google__go-tpm-tools__internal__test__eventlogs__gdc-host.bin'));
  assert.ok(gdc.events.some((x) => x.decoded.kind === 'startup-locality' && x.decoded.locality === 3));
  const hcrtm = parseEventLog(readFileSync(DIR + 'tpm2-software__tpm2-tss__test__data__fapi__eventlog__binary_measurements_hcrtm.b64.bin'));
  assert.ok(hcrtm.events.some((x) => x.typeName === 'EV_EFI_HCRTM_EVENT'));
  assert.ok(hcrtm.banks.includes('sm3_256'));
  const arch = parseEventLog(readFileSync(DIR + 'google__go-tpm-tools__internal__test__eventlogs__arch-linux-workstation.bin'));
  const sb = arch.events.find((x) => x.decoded.kind === 'efi-variable' && x.decoded.name === 'SecureBoot');
  assert.ok(sb && sb.decoded.kind === 'efi-variable' && sb.decoded.data.length === 0 && sb.decoded.bool === undefined);
  const win = parseEventLog(readFileSync(DIR + 'grawity__tpm_futurepcr__tests__fixtures__ACTUAL_SYSTEMS__HP_Compaq_TPM1.2_UEFI_SB_Windows.log'));
  assert.is(win.events[win.events.length - 1].pcr, 0xffffffff);
  assert.ok(win.events.some((x) => x.decoded.kind === 'separator' && x.decoded.value === 'wbcl'));
  assert.ok(win.events.some((x) => x.decoded.kind === 'separator' && x.decoded.value === 'error'));
  assert.ok(win.events.every((x) => !x.decodeError), 'every event decodes (GPT with padded header)');
});

test('decoding: shim authority certificates, device paths, grub command lines', () => {
  const rhel = parseEventLog(readFileSync(DIR + 'google__go-tpm-tools__internal__test__eventlogs__rhel8-uefi.bin'));
  const subjects = rhel.events.flatMap((x) => (x.decoded.kind === 'efi-variable' && x.decoded.authority?.subject ? [x.decoded.authority.subject] : []));
  assert.ok(subjects.some((s) => s.includes('Microsoft Corporation UEFI CA 2011')), subjects.join(' | '));
  assert.ok(subjects.some((s) => s.includes('Red Hat Secure Boot CA')), subjects.join(' | '));
  const shim = rhel.events.find((x) => x.decoded.kind === 'efi-image' && x.decoded.filePath === '\\EFI\\redhat\\shimx64.efi');
  assert.ok(shim && shim.decoded.kind === 'efi-image' && shim.decoded.devicePath.startsWith('PciRoot(0x0)/Pci(0x3,0x0)/Scsi(0x1,0x0)/HD(1,GPT,'));
  assert.ok(rhel.events.some((x) => x.decoded.kind === 'ipl' && x.decoded.text.startsWith('grub_cmd ') && x.digestCheck === 'match'));
  const db = rhel.events.find((x) => x.decoded.kind === 'efi-variable' && x.decoded.name === 'dbx');
  assert.ok(db && db.decoded.kind === 'efi-variable' && (db.decoded.signatureLists?.length ?? 0) > 0);
  assert.is(rhel.warnings, undefined);
});

test.run();
