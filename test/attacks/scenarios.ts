/**
 * Concrete attacks on the boot verdict, each as three things:
 * - the attacker's HONEST log: what the firmware and boot loaders really measured in the
 *   attacker's boot (built from an OVMF boot of test/data/qemu, re-hashed where the attacker's
 *   boot differs), and so what the TPM quotes (its replay over the required selection);
 * - the DOCTORED log the attacker sends instead: same quoted PCR values, other story;
 * - the refusal a correct verifier must give, with the reason that names the real problem.
 *
 * Used by attacks.test.ts (pure verdict), fuzz.test.ts (as refused targets) and
 * test/e2e/attack-e2e.test.ts (real server, swtpm).
 * @module
 */
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import { generatePolicy, type Policy } from '../../src/measuredboot/policy.ts';
import { requiredSelection } from '../../src/server/attest.ts';
import type { Verdict } from '../../src/measuredboot/verdict.ts';
import type { PcrValues } from '../../src/pcrs.ts';
import { qemuLog } from './corpus.ts';
import {
  splitLog, joinLog, digestsOf, fakeEvent, quoteOf, quotedMismatch, variableData, imageLoadData, filePathDevicePath, taggedData,
  Rng, EVT, LINUX_EFI_LOADOPTIONS_TAG, EXIT_BOOT_SERVICES, type RawLog, type RawEvent,
} from './mutate.ts';

export const RELEASED_PCR = 15;

/** One alternative reason: a failure whose rule and message match. */
export interface Reason { rule: RegExp; message: RegExp }
export interface Expectation {
  code: 'POLICY' | 'EVENTLOG';
  /** For EVENTLOG: the refusal message. */
  message?: RegExp;
  /** For POLICY: every group must be matched by some failure (each group lists acceptable alternatives). */
  reasons?: Reason[][];
  /** The expectation in words, for the report. */
  text: string;
}

export interface Attack {
  id: string;
  /** Weakness class 1-4 (see test/attacks/README.md) or the A/B scenario it realises. */
  title: string;
  policy: Policy;
  honest: Buffer;
  doctored: Buffer;
  /** What the TPM quotes: the honest log's replay of requiredSelection(policy, 15). */
  quoted: PcrValues;
  expect: Expectation;
  /** How today's analysis (and the fixed one) refuses the honest log; default `expect`. */
  honestExpect?: Expectation;
  /** What today's analysis gets wrong, in words. */
  bug: string;
}

/** The policy the server would generate at enrolment from a known-good boot. */
export function policyFrom(logName: string): Policy {
  return generatePolicy(unverifiedLog(parseEventLog(qemuLog(logName))), { bank: 'sha256' });
}

export function quoteFor(policy: Policy, honest: Buffer): PcrValues {
  return quoteOf(honest, requiredSelection(policy, RELEASED_PCR));
}

function find(raw: RawLog, pred: (e: RawEvent) => boolean, what: string): number {
  const i = raw.events.findIndex(pred);
  if (i < 0) throw new Error(`scenario: no ${what}`);
  return i;
}

const isVar = (name: string) => (e: RawEvent) => e.pcr === 7 && e.type === EVT.EV_EFI_VARIABLE_DRIVER_CONFIG && e.data.includes(Buffer.from(name, 'utf16le'));
const isApp = (e: RawEvent) => e.pcr === 4 && e.type === EVT.EV_EFI_BOOT_SERVICES_APPLICATION;
const isEbs = (e: RawEvent) => e.pcr === 5 && e.type === EVT.EV_EFI_ACTION && e.data.toString('latin1') === EXIT_BOOT_SERVICES;

function copy(raw: RawLog): RawLog {
  return splitLog(joinLog(raw));
}

// ── A: systemd-boot, Secure Boot off; the attacker adds init=/bin/sh ───────────────────────

export const SDBOOT_CMDLINE = 'initrd=\\bootkey\\initrd.zst console=ttyS0 panic=-1 loglevel=4';
export const EVIL_CMDLINE = `${SDBOOT_CMDLINE} init=/bin/sh`;

/** sdboot-sb-off with the entry's options ending in init=/bin/sh: systemd-boot's PCR 12 event and the EFI stub's PCR 9 load-options event re-hashed. */
export function honestA(): RawLog {
  const raw = splitLog(qemuLog('sdboot-sb-off'));
  const data = Buffer.from(EVIL_CMDLINE + '\0', 'utf16le');
  const p12 = find(raw, (e) => e.pcr === 12 && e.type === EVT.EV_IPL, 'PCR 12 command line');
  raw.events[p12].data = data;
  raw.events[p12].digests = digestsOf(raw, data);
  const p9 = find(raw, (e) => e.pcr === 9 && e.type === EVT.EV_EVENT_TAG && e.data.readUInt32LE(0) === LINUX_EFI_LOADOPTIONS_TAG, 'PCR 9 load options');
  raw.events[p9].digests = digestsOf(raw, data);
  return raw;
}

const CMDLINE_REASON: Reason = { rule: /^kernel-cmdline$/, message: /init=\/bin\/sh/ };

/** A via class 3: a fake ExitBootServices in unquoted PCR 6 ends the "boot path" before the real command lines; a fake good command line in unquoted PCR 8 stands in. */
export function attackA(): Attack {
  const policy = policyFrom('sdboot-sb-off');
  const h = honestA();
  const d = copy(h);
  const rng = new Rng(1);
  const at = find(d, (e) => e.pcr === 12 && e.type === EVT.EV_IPL, 'PCR 12 command line');
  d.events.splice(at, 0, fakeEvent(d, 'cmdline-utf16', 8, rng, SDBOOT_CMDLINE).event, fakeEvent(d, 'exit-boot-services', 6, rng).event);
  return {
    id: 'A', title: 'A (class 3): sdboot-sb-off policy, boot with init=/bin/sh; fake ExitBootServices in PCR 6 + fake command line in PCR 8',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'POLICY', reasons: [[CMDLINE_REASON]], text: 'POLICY, failure kernel-cmdline naming init=/bin/sh (the quoted PCR 12 / PCR 9 events)' },
    bug: 'ExitBootServices is taken from any PCR (here the unquoted PCR 6), so the real PCR 12/9 command lines are dropped as "after ExitBootServices"; the command line is read from unquoted PCR 8',
  };
}

/** A via classes 2+3: the real PCR 12 command line relabelled EV_POST_CODE, the PCR 9 tag id changed (not covered by the digest), a fake good one in unquoted PCR 8. */
export function attackA1(): Attack {
  const policy = policyFrom('sdboot-sb-off');
  const h = honestA();
  const d = copy(h);
  const p12 = find(d, (e) => e.pcr === 12 && e.type === EVT.EV_IPL, 'PCR 12 command line');
  d.events[p12].type = EVT.EV_POST_CODE;
  const p9 = find(d, (e) => e.pcr === 9 && e.type === EVT.EV_EVENT_TAG && e.data.readUInt32LE(0) === LINUX_EFI_LOADOPTIONS_TAG, 'PCR 9 load options');
  d.events[p9].data = taggedData(0x8f3b22ee, Buffer.from('LOADED_IMAGE::LoadOptions\0', 'latin1'));
  d.events.splice(p12, 0, fakeEvent(d, 'cmdline-utf16', 8, new Rng(2), SDBOOT_CMDLINE).event);
  return {
    id: 'A1', title: 'A (classes 2+3): PCR 12 command line relabelled EV_POST_CODE, PCR 9 tag id changed, fake command line in PCR 8',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: {
      code: 'POLICY',
      reasons: [[CMDLINE_REASON, { rule: /./, message: /PCR (12|9)\b.*(type|EV_POST_CODE|tag|unexpected)/i }]],
      text: 'POLICY, failure kernel-cmdline naming init=/bin/sh, or a failure naming the unexpected event type/tag in PCR 12 or 9',
    },
    bug: 'event types and tagged-event ids are not bound by the quote: the real command-line events are no longer recognised; the one read is from unquoted PCR 8',
  };
}

// ── B: UKI, Secure Boot on; the attacker turns Secure Boot off and runs an extra application ─

const EVIL_APP_PATH = '\\EFI\\evil\\evil.efi';

function evilApp(raw: RawLog): RawEvent {
  return { pcr: 4, type: EVT.EV_EFI_BOOT_SERVICES_APPLICATION, data: imageLoadData(filePathDevicePath(EVIL_APP_PATH)), digests: digestsOf(raw, Buffer.from('an unknown EFI application')) };
}

/**
 * uki-sb-on as the same machine boots with Secure Boot turned off and an unknown EFI application
 * run before the UKI (`position: 'before'`) or chain-loaded after it (`'after'`, just before
 * ExitBootServices): SecureBoot = 00 re-hashed, no EV_EFI_VARIABLE_AUTHORITY (nothing verified).
 */
export function honestB(opts: { secureBootOff: boolean; position: 'before' | 'after' }): RawLog {
  const raw = splitLog(qemuLog('uki-sb-on'));
  if (opts.secureBootOff) {
    const sb = find(raw, isVar('SecureBoot'), 'SecureBoot variable');
    const data = variableData('SecureBoot', Buffer.from([0]));
    if (data.length !== raw.events[sb].data.length) throw new Error('scenario: SecureBoot variable has another layout');
    raw.events[sb].data = data;
    raw.events[sb].digests = digestsOf(raw, data);
    raw.events.splice(find(raw, (e) => e.type === EVT.EV_EFI_VARIABLE_AUTHORITY, 'authority'), 1);
  }
  const at = opts.position === 'before' ? find(raw, isApp, 'UKI') : find(raw, isEbs, 'ExitBootServices');
  raw.events.splice(at, 0, evilApp(raw));
  return raw;
}

const SB_REASON: Reason = { rule: /^secure-boot$/, message: /off/ };
const APP_REASONS: Reason[] = [
  { rule: /^boot-chain$/, message: /unexpected|evil|application/i },
  { rule: /./, message: /PCR 4\b.*(type|EV_EFI_BOOT_SERVICES_DRIVER|unexpected)/i },
];
const HONEST_B: Expectation = { code: 'POLICY', reasons: [[SB_REASON], [APP_REASONS[0]]], text: 'POLICY, failures secure-boot (off) and boot-chain' };

/** B (classes 1+2): the real SecureBoot = 00 relabelled EV_EFI_VARIABLE_BOOT, a fake SecureBoot = 01 with digest count 0, the application relabelled EV_EFI_BOOT_SERVICES_DRIVER. */
export function attackB(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = honestB({ secureBootOff: true, position: 'before' });
  const d = copy(h);
  const sb = find(d, isVar('SecureBoot'), 'SecureBoot variable');
  d.events[sb].type = EVT.EV_EFI_VARIABLE_BOOT;
  const fake = fakeEvent(d, 'secureboot-on', 7, new Rng(3)).event;
  fake.digests = [];
  d.events.splice(sb + 1, 0, fake);
  d.events[find(d, (e) => isApp(e) && e.data.includes(Buffer.from(EVIL_APP_PATH, 'utf16le')), 'evil app')].type = EVT.EV_EFI_BOOT_SERVICES_DRIVER;
  return {
    id: 'B', title: 'B (classes 1+2): uki-sb-on policy, boot with Secure Boot off + unknown application; SecureBoot relabelled, fake SecureBoot = 01 with digest count 0, application relabelled',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'EVENTLOG', message: /digest|count|bank/i, text: 'EVENTLOG (an event with digest count 0)' },
    honestExpect: HONEST_B,
    bug: 'the digest-count-0 event extends nothing, yet its SecureBoot = 01 is believed; the relabelled SecureBoot = 00 and application are skipped',
  };
}

/** B without the count-0 trick (what is left when EVENTLOG stops it): both problems must be named. */
export function attackB2(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = honestB({ secureBootOff: true, position: 'before' });
  const d = copy(h);
  d.events[find(d, (e) => isApp(e) && e.data.includes(Buffer.from(EVIL_APP_PATH, 'utf16le')), 'evil app')].type = EVT.EV_EFI_BOOT_SERVICES_DRIVER;
  return {
    id: 'B2', title: 'B without weakness 1: Secure Boot off shows, the unknown application relabelled EV_EFI_BOOT_SERVICES_DRIVER',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'POLICY', reasons: [[SB_REASON], APP_REASONS], text: 'POLICY, failures secure-boot (off) AND boot-chain unexpected application (or the unexpected type in PCR 4)' },
    bug: 'the relabelled application is not counted: the verdict names Secure Boot only, not the unknown code that ran',
  };
}

/** Class 1, missing bank: the fake SecureBoot = 01 carries only a SHA-1 digest (the policy's bank is SHA-256). */
export function attackB3(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = honestB({ secureBootOff: true, position: 'before' });
  const d = copy(h);
  const sb = find(d, isVar('SecureBoot'), 'SecureBoot variable');
  d.events[sb].type = EVT.EV_EFI_VARIABLE_BOOT;
  const fake = fakeEvent(d, 'secureboot-on', 7, new Rng(4)).event;
  fake.digests = fake.digests.filter((x) => x.algId === 0x0004);
  d.events.splice(sb + 1, 0, fake);
  d.events[find(d, (e) => isApp(e) && e.data.includes(Buffer.from(EVIL_APP_PATH, 'utf16le')), 'evil app')].type = EVT.EV_EFI_BOOT_SERVICES_DRIVER;
  return {
    id: 'B3', title: 'class 1: as B, the fake SecureBoot = 01 has a SHA-1 digest only (SHA-256 bank missing)',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'EVENTLOG', message: /digest|count|bank|sha256/i, text: 'EVENTLOG (an event without its sha256 digest)' },
    honestExpect: HONEST_B,
    bug: 'an event missing a declared bank leaves the quoted sha256 PCR 7 alone, yet is read',
  };
}

// ── class 2: types are not bound ──────────────────────────────────────────────────────────

/** Secure Boot on, an unknown application run before the UKI and relabelled EV_EFI_BOOT_SERVICES_DRIVER. */
export function attackRelabelApp(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = honestB({ secureBootOff: false, position: 'before' });
  const d = copy(h);
  d.events[find(d, (e) => isApp(e) && e.data.includes(Buffer.from(EVIL_APP_PATH, 'utf16le')), 'evil app')].type = EVT.EV_EFI_BOOT_SERVICES_DRIVER;
  return {
    id: 'C2a', title: 'class 2: unknown EFI application in PCR 4 relabelled EV_EFI_BOOT_SERVICES_DRIVER',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'POLICY', reasons: [APP_REASONS], text: 'POLICY, failure boot-chain unexpected application (or the unexpected type in PCR 4)' },
    bug: 'only EV_EFI_BOOT_SERVICES_APPLICATION events count as applications',
  };
}

/** Secure Boot on, the boot verified by another db key (a changed certificate), the authority event relabelled EV_EFI_VARIABLE_BOOT. */
export function attackRelabelAuthority(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = splitLog(qemuLog('uki-sb-on'));
  const a = find(h, (e) => e.type === EVT.EV_EFI_VARIABLE_AUTHORITY, 'authority');
  const data = Buffer.from(h.events[a].data);
  data[data.length - 3] ^= 0x55; // inside the certificate's signature: another certificate
  h.events[a].data = data;
  h.events[a].digests = digestsOf(h, data);
  const d = copy(h);
  d.events[a].type = EVT.EV_EFI_VARIABLE_BOOT;
  return {
    id: 'C2b', title: 'class 2: the EV_EFI_VARIABLE_AUTHORITY of an unknown key in PCR 7 relabelled EV_EFI_VARIABLE_BOOT',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: {
      code: 'POLICY',
      reasons: [[{ rule: /^authority$/, message: /verified by|authority|key/i }, { rule: /./, message: /PCR 7\b.*(type|EV_EFI_VARIABLE_BOOT|unexpected)/i }]],
      text: 'POLICY, failure authority (unknown key), or the unexpected type in PCR 7',
    },
    bug: 'PCR 7 events of an unexpected type are only warnings',
  };
}

/**
 * go-attestation's disclosure (docs/event-log-disclosure.md), PCR 4 example: an unknown UKI ran;
 * after boot, root extended PCR 4 with the known-good UKI's digests and logged that event. The
 * doctored log relabels the unknown UKI EV_EFI_PLATFORM_FIRMWARE_BLOB (its data is not covered
 * by the digest either) and moves the appended event ahead of ExitBootServices (class 4).
 */
export function attackRelabelFirmwareBlob(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = splitLog(qemuLog('uki-sb-on'));
  const uki = find(h, isApp, 'UKI');
  const genuine: RawEvent = { ...h.events[uki], digests: h.events[uki].digests.map((x) => ({ ...x })) };
  h.events[uki].digests = digestsOf(h, Buffer.from('an unknown UKI'));
  h.events.push(genuine);
  const d = copy(h);
  d.events[uki].type = EVT.EV_EFI_PLATFORM_FIRMWARE_BLOB;
  d.events[uki].data = Buffer.from('00008000000000000000100000000000', 'hex'); // UEFI_PLATFORM_FIRMWARE_BLOB: base, length
  const appended = d.events.pop()!;
  d.events.splice(find(d, isEbs, 'ExitBootServices'), 0, appended);
  return {
    id: 'C2c', title: 'class 2+4 (go-attestation disclosure): unknown UKI relabelled EV_EFI_PLATFORM_FIRMWARE_BLOB, the known-good digest extended after boot and moved ahead of ExitBootServices',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'POLICY', reasons: [APP_REASONS.concat([{ rule: /./, message: /PCR 4\b.*(EV_EFI_PLATFORM_FIRMWARE_BLOB|firmware blob)/i }])], text: 'POLICY, failure boot-chain (the unknown UKI\'s digest, or an unexpected application) or the unexpected type in PCR 4' },
    bug: 'a relabelled PCR 4 measurement is skipped; an event extended after boot counts once moved ahead of ExitBootServices',
  };
}

// ── class 4: order across PCRs is not bound ────────────────────────────────────────────────

/** Secure Boot on, an unknown application after the UKI; the genuine PCR 5 ExitBootServices moved ahead of it. */
export function attackReorder(): Attack {
  const policy = policyFrom('uki-sb-on');
  const h = honestB({ secureBootOff: false, position: 'after' });
  const d = copy(h);
  const app = find(d, (e) => isApp(e) && e.data.includes(Buffer.from(EVIL_APP_PATH, 'utf16le')), 'evil app');
  const ebs = find(d, isEbs, 'ExitBootServices');
  if (ebs !== app + 1) throw new Error('scenario: ExitBootServices does not follow the application');
  [d.events[app], d.events[ebs]] = [d.events[ebs], d.events[app]];
  return {
    id: 'C4', title: 'class 4: genuine PCR 5 ExitBootServices moved ahead of an unknown application in PCR 4',
    policy, honest: joinLog(h), doctored: joinLog(d), quoted: quoteFor(policy, joinLog(h)),
    expect: { code: 'POLICY', reasons: [[APP_REASONS[0]]], text: 'POLICY, failure boot-chain unexpected application' },
    bug: 'the "after ExitBootServices" cut uses the log order across PCRs, which no quote binds',
  };
}

export function allAttacks(): Attack[] {
  return [attackA(), attackA1(), attackB(), attackB2(), attackB3(), attackRelabelApp(), attackRelabelAuthority(), attackRelabelFirmwareBlob(), attackReorder()];
}

/** The doctored log replays to the quoted values (checked with the independent replay of mutate.ts). */
export function doctoredMatchesQuote(a: Attack): string | undefined {
  return quotedMismatch(splitLog(a.doctored), a.quoted);
}

function show(v: Verdict): string {
  return `${v.pass ? 'RELEASED' : `refused ${v.code}: ${v.message ?? ''}`}${v.failures.length ? ` [${v.failures.map((f) => `${f.rule}: ${f.message}`).join(' | ')}]` : ''}`;
}

/** undefined when the verdict is the expected refusal; else what is wrong with it. */
export function refusalProblem(v: Verdict, e: Expectation): string | undefined {
  if (v.pass) return `released; expected ${e.text}`;
  if (v.code !== e.code) return `${show(v)}; expected ${e.text}`;
  if (e.message && !e.message.test(v.message ?? '')) return `${show(v)}; expected a message matching ${e.message}`;
  for (const group of e.reasons ?? []) {
    if (!v.failures.some((f) => group.some((r) => r.rule.test(f.rule) && r.message.test(f.message)))) return `${show(v)}; expected ${e.text}`;
  }
  return undefined;
}

export { show as showVerdict };
