/**
 * Boot policies: what a machine may have booted, generated from known-good boots and checked
 * against a log. The JSON format is described by schema/policy.schema.json and validated on
 * load by {@link parsePolicy} (policy-load.ts).
 *
 * Rules, each tied to the PCR whose events it reads (TCG PC Client PFP 1.05 §3.3.4):
 * - `firmware` (PCR 0): the S-CRTM version strings and the digests of the firmware events
 *   before PCR 0's separator must equal one allowed firmware.
 * - `bootChain` (PCR 4): the EFI applications loaded up to ExitBootServices, stage by stage
 *   (shim, boot loader, UKI, kernel), each with one of the allowed Authenticode digests.
 * - `secureBoot`, `keys`, `authorities`, `debug` (PCR 7): Secure Boot on (and not in setup
 *   mode) if it was on; PK/KEK/db one of the allowed contents; dbx a superset of the known
 *   revocations; the keys that verified the boot among the allowed ones; no "UEFI Debug Mode"
 *   and no "DMA Protection Disabled" unless the known-good boot had them.
 * - `kernelCmdline` (PCR 8, 9 or 12, whoever measured it): every measured kernel command line
 *   is allowed.
 * - `pcrValues`: selected PCRs without a structured rule (1, 2, 3, 5, 6, 8...) are pinned to
 *   their values.
 *
 * Default PCRs are 0, 2, 4, 7 (see DEFAULT_PCRS) plus the kernel command line.
 *
 * - `knownGood` (version 2): the exact values of every PCR the policy reads, in each known-good
 *   boot. A quoted PCR equal to one of them passes the rules that read it without reading its
 *   events (its digest sequence IS a known-good one, whatever labels the log puts on it).
 *
 * Every function here takes a {@link TrustedLog} (trusted.ts): the events of quoted PCRs after
 * replay matched. There is no path from a raw EventLog to a decision. Which PCRs a policy
 * reads is derived from the policy itself ({@link policyPcrs}); a quote that lacks one of them
 * is refused, never read around.
 *
 * checkPolicy is pure and reports every failed rule.
 * @module
 */
import { analyseBoot, type AppRole, type BootState, type CmdlineSource, type SignatureEntry, type StateIssue } from './bootstate.ts';
import { createHash } from 'node:crypto';
import { PolicyError } from './policy-errors.ts';
import type { BankName } from '../pcrs.ts';
import type { TrustedLog } from './trusted.ts';
import { cmdlinePcrs } from './cmdline.ts';
import { align, stageAccepts } from './diff.ts';

/** The version `generatePolicy` writes; version 1 files are still read (without knownGood). */
export const POLICY_VERSION = 2;

/**
 * Default PCRs: 0 (firmware code), 2 (option ROMs and drivers), 4 (boot loader and kernel
 * images), 7 (Secure Boot state and keys). These are the PCRs that say *what code ran*. PCR 1
 * (boot order, hardware configuration) and 5 (GPT, boot variables) change for benign reasons
 * (a new boot entry, BootNext, a repartition) and add little once 4 pins what was loaded; 3
 * and 6 are normally empty. Add them with `--pcrs` when wanted.
 */
export const DEFAULT_PCRS: readonly number[] = [0, 2, 4, 7];

export interface PolicyOptions {
  /** PCRs to check; default DEFAULT_PCRS. */
  pcrs?: number[];
  /** The bank whose digests are pinned; default sha256 when the log has it, else its first bank. */
  bank?: BankName;
  /** Do not check the kernel command line (recorded in the policy as options.allowAnyCmdline). */
  allowAnyCmdline?: boolean;
  /** Accept any kernel/UKI image (Secure Boot or the authorities still vouch for it). */
  allowAnyKernel?: boolean;
}

export interface AllowedKey {
  /** SHA-256 of the variable data, or "absent" when it was not measured. */
  sha256: string;
  subjects: string[];
}
export interface AllowedApp {
  digest: string;
  path?: string;
}
export interface Stage {
  role: AppRole;
  allowed: AllowedApp[];
  /** Any image is accepted in this stage (`--allow-any-kernel`). */
  allowAny?: boolean;
  /** Not every known-good boot loaded this stage. */
  optional?: boolean;
  /**
   * Staging permission (not a boot-time check): a digest may be added to this stage by a staging
   * request whose Authenticode PKCS#7 signs exactly that digest and chains to one of these
   * certificates (src/efi/signed-by.ts checkStagedSignature). At boot, only `allowed` decides:
   * the quote carries digests, never signatures.
   */
  signedBy?: SignedBy[];
}
/** A certificate a stage's images may be signed by: the SHA-256 of its DER, and its subject for people. */
export interface SignedBy {
  sha256: string;
  subject?: string;
}
/** A boot staged before it happened (`policy stage`, machine-side staging): metadata, not a rule. */
export interface StagedBoot {
  label?: string;
  /** When it was staged (ISO 8601). */
  at?: string;
  /** Its PCR 4 image digests in boot order, in the policy's bank. */
  apps: string[];
  /** Its predicted values of the PCRs the policy reads (PCR → hex). */
  knownGood: Record<string, string>;
}
/**
 * Machine-side staging permission (`bootkey stage` on the machine, issue 11 §3): what the server
 * lets an enrolled machine, in a boot that passes this policy, add to its own policy. Not a
 * boot-time rule (not covered by knownGoodRules). Absent: mode "none".
 * - none: the machine may not stage (a kernel update waits for an operator, as before);
 * - signed-by: each new PCR 4 image digest must come with an Authenticode signature that signs it
 *   and chains to one of `signedBy` (or the stage's own signedBy); nothing else may widen;
 * - any: whatever `policy stage` would add for the prediction (addBoot's refusals still apply).
 */
export interface Staging {
  mode: 'none' | 'signed-by' | 'any';
  signedBy?: SignedBy[];
  /** A staged boot waits for `bootkey admin staged approve` before it counts. */
  requireApproval?: boolean;
  /** Retire a staged boot unused for this many successful releases (after the first release of a staged boot). Default 3. */
  keep?: number;
}
/** A command line by its text, or (Linux EFI stub load options, not logged as text) by its digest. */
export interface AllowedCmdline {
  source: CmdlineSource;
  /** The PCR the known-good boot measured it in (version 2). */
  pcr?: number;
  text?: string;
  digest?: string;
}
export interface FirmwareEvent {
  event: number;
  /** The type label in the known-good boot: for messages only (labels are not bound). */
  type: string;
  digest: string;
  description: string;
}
export interface Firmware {
  crtmVersions: string[];
  events: FirmwareEvent[];
}

export interface Policy {
  version: 1 | 2;
  /** Bank of every digest in the policy. */
  bank: BankName;
  pcrs: number[];
  options: { allowAnyCmdline: boolean; allowAnyKernel: boolean };
  /** PCR index (as a string) → its values in the known-good boots (version 2). */
  knownGood?: Record<string, string[]>;
  /**
   * SHA-256 of the bank, options and rules the known-good values were recorded with
   * ({@link rulesDigest}). A policy whose rules were edited since (by hand, `admin set-policy`)
   * no longer matches it, and its known-good values are then ignored: the edited rules decide.
   */
  knownGoodRules?: string;
  /** Boots staged from files before they happened, in staging order (metadata: not covered by knownGoodRules). */
  staged?: StagedBoot[];
  /** Machine-side staging permission (metadata: not covered by knownGoodRules). */
  staging?: Staging;
  rules: {
    firmware?: { pcr: 0; allowed: Firmware[] };
    bootChain?: {
      pcr: 4;
      stages: Stage[];
      /** Allowed digest sequences of images loaded before the boot option (firmware-internal). */
      preBoot?: string[][];
      /** The known-good boots logged ExitBootServices in PCR 5: PCR 5 must be quoted and have it. */
      requireExitBootServices?: boolean;
    };
    secureBoot?: { pcr: 7; enabled: boolean; setupMode?: boolean };
    keys?: { pcr: 7; PK: AllowedKey[]; KEK: AllowedKey[]; db: AllowedKey[]; dbxMustContain: string[] };
    authorities?: { pcr: 7; allowed: { sha256: string; variable: string; subject?: string }[] };
    debug?: { pcr: 7; allowUefiDebugMode: boolean; allowDmaProtectionDisabled: boolean };
    kernelCmdline?: { allowed: AllowedCmdline[] };
    /** PCR index (as a string) → allowed values in hex. */
    pcrValues?: Record<string, string[]>;
  };
}

export interface Failure {
  /** Rule name: firmware, boot-chain, secure-boot, setup-mode, PK, KEK, db, dbx, authority, debug, kernel-cmdline, pcr-value, bank, selection, log-structure. */
  rule: string;
  pcr: number | null;
  event: number | null;
  expected: string;
  actual: string;
  /** One readable line, e.g. `PCR 4 event 23: EFI application \EFI\BOOT\grubx64.efi has digest ab12…, policy allows 9f3c… or 77d0…`. */
  message: string;
}

export interface PolicyResult {
  pass: boolean;
  failures: Failure[];
  /** Boot-state warnings, for the operator's information; they do not fail the check. */
  warnings: string[];
  /** PCRs that passed as a whole because their quoted value is a known-good one. */
  knownGoodPcrs: number[];
}

const KEY_VARS = ['PK', 'KEK', 'db'] as const;
/** Where each command-line source is measured, for version 1 policies (no `pcr` per entry). */
const V1_CMDLINE_PCR: Record<CmdlineSource, number> = { grub: 8, 'linux-efi-stub': 9, systemd: 12 };

function short(h: string): string {
  return h.length > 12 ? h.slice(0, 12) + '…' : h;
}
function orList(xs: string[]): string {
  if (xs.length === 0) return 'none (the known-good boots had none)';
  return xs.length <= 3 ? xs.join(' or ') : `${xs.slice(0, 3).join(', ')} or ${xs.length - 3} other(s)`;
}
function uniq<T>(xs: T[], key: (x: T) => string = (x) => JSON.stringify(x)): T[] {
  const seen = new Set<string>();
  return xs.filter((x) => (seen.has(key(x)) ? false : (seen.add(key(x)), true)));
}

function chooseBank(tl: TrustedLog, bank?: BankName): BankName {
  if (bank) {
    if (!tl.banks.includes(bank)) throw new PolicyError('NO_BANK', `bank ${bank} is not covered (the log/quote has ${tl.banks.join(', ') || 'none'})`);
    return bank;
  }
  if (tl.banks.includes('sha256')) return 'sha256';
  if (!tl.banks.length) throw new PolicyError('NO_BANK', 'the log has no PCR bank');
  return tl.banks[0];
}

/**
 * Normalises a command line for comparison. With allowAnyKernel, the kernel image path (grub's
 * first word, `BOOT_IMAGE=`) is dropped, since it names the kernel version.
 */
function normCmdline(text: string, source: CmdlineSource, allowAnyKernel: boolean): string {
  let t = text.trim().replace(/\s+/g, ' ');
  if (!allowAnyKernel) return t;
  if (source === 'grub') t = t.replace(/^\S*(vmlinu[xz]|linux|kernel|bzImage)\S*\s*/i, '');
  return t.replace(/(^|\s)BOOT_IMAGE=\S+/g, '').trim();
}

/** The PCRs each command-line entry is read from. */
function cmdlineEntryPcrs(a: AllowedCmdline): number[] {
  return a.pcr !== undefined ? [a.pcr] : [V1_CMDLINE_PCR[a.source] ?? cmdlinePcrs[a.source]?.[0] ?? 8];
}

/**
 * Every PCR the policy reads, derived from the policy itself: its PCR list, the PCR of each
 * structured rule, pinned values, the command-line PCRs, and PCR 5 when the boot chain requires
 * ExitBootServices. A quote must cover all of them in the policy's bank.
 */
export function policyPcrs(policy: Policy): number[] {
  // a frozen policy (parsePolicyCached) cannot change: computed once, a copy handed out
  const hit = frozenPcrs.get(policy);
  if (hit) return [...hit];
  const out = computePolicyPcrs(policy);
  if (Object.isFrozen(policy) && Object.isFrozen(policy.rules)) frozenPcrs.set(policy, out);
  return [...out];
}
const frozenPcrs = new WeakMap<Policy, number[]>();

function computePolicyPcrs(policy: Policy): number[] {
  const s = new Set<number>(policy.pcrs);
  const r = policy.rules;
  if (r.firmware) s.add(0);
  if (r.bootChain) s.add(4);
  if (r.bootChain?.requireExitBootServices) s.add(5);
  if (r.secureBoot || r.keys || r.authorities || r.debug) s.add(7);
  for (const a of r.kernelCmdline?.allowed ?? []) for (const p of cmdlineEntryPcrs(a)) s.add(p);
  for (const k of Object.keys(r.pcrValues ?? {})) s.add(Number(k));
  return [...s].sort((a, b) => a - b);
}

/** The PCRs each rule reads (for the known-good shortcut and for scoping issues). */
function rulePcrs(policy: Policy): Record<string, number[]> {
  const r = policy.rules;
  const out: Record<string, number[]> = {};
  if (r.firmware) out.firmware = [0];
  if (r.bootChain) out.bootChain = r.bootChain.requireExitBootServices ? [4, 5] : [4];
  if (r.secureBoot || r.keys || r.authorities || r.debug) out.pcr7 = [7];
  if (r.kernelCmdline) out.kernelCmdline = [...new Set(r.kernelCmdline.allowed.flatMap(cmdlineEntryPcrs))];
  return out;
}

/** SHA-256 of what the known-good values vouch for: bank, PCR list, options and rules. */
export function rulesDigest(p: Policy): string {
  // A frozen policy (parsePolicyCached: shared by every boot of a machine) cannot change: its
  // digest is computed once. A mutable one is hashed at every call.
  const frozen = Object.isFrozen(p) && Object.isFrozen(p.rules) && Object.isFrozen(p.options) && Object.isFrozen(p.pcrs);
  const hit = frozen ? frozenDigests.get(p) : undefined;
  if (hit) return hit;
  const d = createHash('sha256').update(JSON.stringify({ bank: p.bank, pcrs: p.pcrs, options: p.options, rules: p.rules })).digest('hex');
  if (frozen) frozenDigests.set(p, d);
  return d;
}
const frozenDigests = new WeakMap<Policy, string>();

function issuesIn(st: BootState, pcrs: Iterable<number>): StateIssue[] {
  const set = new Set(pcrs);
  return st.issues.filter((i) => i.pcr !== undefined && set.has(i.pcr));
}

function stateOrThrow(tl: TrustedLog, readPcrs: number[]): BootState {
  const st = analyseBoot(tl);
  const uniqBad = uniq(issuesIn(st, readPcrs), (i) => i.message);
  if (uniqBad.length) {
    throw new PolicyError('BAD_LOG', `the log cannot serve as a known-good boot: ${uniqBad.map((e) => e.message).join('; ')}`);
  }
  return st;
}

function firmwareOf(st: BootState, bank: BankName): Firmware {
  return {
    crtmVersions: st.firmware.crtmVersions.map((c) => c.text),
    events: st.firmware.events.map((m) => ({ event: m.event, type: m.type, digest: m.digests[bank] ?? '', description: m.description })),
  };
}

function keyOf(st: BootState, name: (typeof KEY_VARS)[number]): AllowedKey {
  const v = st[name];
  if (!v) return { sha256: 'absent', subjects: [] };
  return { sha256: v.dataSha256, subjects: uniq(v.entries.map((e) => e.subject ?? `${e.type} ${short(e.hash)}`)) };
}

function dbxEntry(e: SignatureEntry): string {
  return `${e.type}:${e.hash}`;
}

function valueHex(tl: TrustedLog, bank: BankName, pcr: number): string | undefined {
  return tl.value(bank, pcr)?.toString('hex');
}

/**
 * Generates a policy from a known-good boot (bound to its enrolment quote, or an operator's
 * unverified log file).
 * @throws PolicyError BAD_LOG when a PCR the policy reads cannot be read by structure,
 *   NO_CMDLINE when no kernel command line was measured (unless allowAnyCmdline), NOT_QUOTED
 *   when the quote does not cover a PCR the policy would read, NO_BANK, BAD_OPTION.
 */
export function generatePolicy(tl: TrustedLog, opts: PolicyOptions = {}): Policy {
  const pcrs = [...new Set(opts.pcrs ?? DEFAULT_PCRS)].sort((a, b) => a - b);
  for (const p of pcrs) if (!Number.isInteger(p) || p < 0 || p > 23) throw new PolicyError('BAD_OPTION', `PCR index ${p} is not 0-23`);
  const bank = chooseBank(tl, opts.bank);
  const allowAnyKernel = opts.allowAnyKernel ?? false;
  const allowAnyCmdline = opts.allowAnyCmdline ?? false;
  const pre = analyseBoot(tl);
  const readPcrs = [...pcrs, ...(allowAnyCmdline ? [] : [8, 9, 12]), ...(pcrs.includes(4) && pre.exitBootServices !== undefined ? [5] : [])];
  const st = stateOrThrow(tl, readPcrs);
  const rules: Policy['rules'] = {};

  if (pcrs.includes(0)) rules.firmware = { pcr: 0, allowed: [firmwareOf(st, bank)] };
  if (pcrs.includes(4)) {
    rules.bootChain = {
      pcr: 4,
      stages: st.apps.map((a) => {
        const anyKernel = allowAnyKernel && (a.role === 'kernel' || a.role === 'uki');
        return { role: a.role, allowed: anyKernel ? [] : [{ digest: a.digests[bank] ?? '', ...(a.path ? { path: a.path } : {}) }], ...(anyKernel ? { allowAny: true } : {}) };
      }),
      ...(st.preBootApps.length ? { preBoot: [st.preBootApps.map((a) => a.digests[bank] ?? '')] } : {}),
      ...(st.exitBootServices !== undefined ? { requireExitBootServices: true } : {}),
    };
  }
  if (pcrs.includes(7)) {
    rules.secureBoot = { pcr: 7, enabled: st.secureBoot.enabled, ...(st.setupMode && !st.setupMode.enabled ? { setupMode: false } : {}) };
    rules.keys = {
      pcr: 7,
      PK: [keyOf(st, 'PK')],
      KEK: [keyOf(st, 'KEK')],
      db: [keyOf(st, 'db')],
      dbxMustContain: uniq((st.dbx?.entries ?? []).map(dbxEntry)),
    };
    rules.authorities = { pcr: 7, allowed: uniq(st.authorities.map((a) => ({ sha256: a.sha256, variable: a.variable, ...(a.subject ? { subject: a.subject } : {}) })), (a) => a.sha256) };
    rules.debug = { pcr: 7, allowUefiDebugMode: st.debugMode.length > 0, allowDmaProtectionDisabled: st.dmaProtectionDisabled.length > 0 };
  }
  if (!allowAnyCmdline) {
    const allowed = uniq(st.cmdlines.flatMap((c): AllowedCmdline[] => {
      if (c.text !== undefined && c.source !== 'linux-efi-stub') return [{ source: c.source, pcr: c.pcr, text: normCmdline(c.text, c.source, allowAnyKernel) }];
      return allowAnyKernel ? [] : [{ source: c.source, pcr: c.pcr, digest: c.digests[bank] ?? '' }];
    }));
    if (!allowed.length) {
      const covered = [8, 9, 12].filter((p) => tl.covers(p, bank));
      throw new PolicyError('NO_CMDLINE', `no kernel command line ${allowAnyKernel && st.cmdlines.length ? 'logged as text (with --allow-any-kernel the EFI stub\'s digest-only load options cannot be checked)' : 'was measured'} in ${covered.length ? `PCR ${covered.join(', ')}` : 'any covered PCR (8, 9 and 12 are not covered)'}: a policy without a command-line rule lets the machine boot with init=/bin/sh. Pass --allow-any-cmdline to accept that; the policy then says so (options.allowAnyCmdline: true)`);
    }
    rules.kernelCmdline = { allowed };
  }
  const pinned = pcrs.filter((p) => p !== 0 && p !== 4 && p !== 7);
  if (pinned.length) {
    rules.pcrValues = {};
    for (const p of pinned) {
      const v = valueHex(tl, bank, p);
      if (v === undefined) throw new PolicyError('NOT_QUOTED', `PCR ${bank}:${p} is not covered, so its value cannot be pinned`);
      rules.pcrValues[String(p)] = [v];
    }
  }
  const policy: Policy = { version: POLICY_VERSION, bank, pcrs, options: { allowAnyCmdline, allowAnyKernel }, rules };
  const need = policyPcrs(policy);
  const missing = need.filter((p) => !tl.covers(p, bank));
  if (missing.length) throw new PolicyError('NOT_QUOTED', `the policy would read PCR ${missing.join(', ')} (${bank}), which the ${tl.verified ? 'quote' : 'log'} does not cover`);
  policy.knownGood = Object.fromEntries(need.map((p) => [String(p), [valueHex(tl, bank, p)!]]));
  policy.knownGoodRules = rulesDigest(policy);
  return policy;
}

export interface AddBootOptions {
  /** Accept a boot with Secure Boot off into a policy that required it on (the policy then no longer requires it). */
  allowSecureBootOff?: boolean;
}

/**
 * Merges a second known-good boot into a policy: the allowed values become the union of both.
 * Rules that would silently relax are refused instead:
 * Secure Boot on → off (SECUREBOOT_DOWNGRADE, unless allowSecureBootOff), a dbx lacking required
 * revocations (DBX_ROLLBACK), a UEFI debugger or disabled DMA protection (DEBUG_BOOT), a boot
 * without a command line into a policy that checks it (NO_CMDLINE).
 * @throws PolicyError
 */
export function addBoot(policy: Policy, tl: TrustedLog, opts: AddBootOptions = {}): Policy {
  const st = stateOrThrow(tl, policyPcrs(policy));
  const r = policy.rules;
  const out: Policy = structuredClone(policy);
  if (r.secureBoot?.enabled && !st.secureBoot.enabled) {
    if (!opts.allowSecureBootOff) {
      throw new PolicyError('SECUREBOOT_DOWNGRADE', `the new boot has Secure Boot off (event ${st.secureBoot.event ?? 'none'}) but the policy requires it on; refusing to relax the policy (use --allow-secureboot-off to accept it)`);
    }
    out.rules.secureBoot = { pcr: 7, enabled: false };
  }
  if (r.secureBoot?.setupMode === false && st.setupMode?.enabled && out.rules.secureBoot?.enabled) {
    throw new PolicyError('SECUREBOOT_DOWNGRADE', `the new boot is in Secure Boot setup mode (event ${st.setupMode.event}); refusing to relax the policy`);
  }
  if (r.keys && r.keys.dbxMustContain.length) {
    const have = new Set((st.dbx?.entries ?? []).map(dbxEntry));
    const missing = r.keys.dbxMustContain.filter((e) => !have.has(e));
    if (missing.length) throw new PolicyError('DBX_ROLLBACK', `the new boot's dbx lacks ${missing.length} revocation(s) the policy requires (e.g. ${missing[0]}); refusing to relax the policy`);
  }
  if (r.debug && !r.debug.allowUefiDebugMode && st.debugMode.length) throw new PolicyError('DEBUG_BOOT', `the new boot ran with a UEFI debugger (event ${st.debugMode[0]}); refusing to relax the policy`);
  if (r.debug && !r.debug.allowDmaProtectionDisabled && st.dmaProtectionDisabled.length) throw new PolicyError('DEBUG_BOOT', `the new boot had DMA protection disabled (event ${st.dmaProtectionDisabled[0]}); refusing to relax the policy`);

  const np = generatePolicy(tl, { pcrs: policy.pcrs, bank: policy.bank, ...policy.options });
  const n = np.rules;
  const o = out.rules;
  if (o.firmware && n.firmware) o.firmware.allowed = uniq([...o.firmware.allowed, ...n.firmware.allowed], fwKey);
  if (o.bootChain && n.bootChain) {
    o.bootChain.stages = mergeStages(o.bootChain.stages, n.bootChain.stages);
    const pre = uniq([...(o.bootChain.preBoot ?? [[]]), ...(n.bootChain.preBoot ?? [[]])], (x) => x.join(','));
    if (pre.some((x) => x.length)) o.bootChain.preBoot = pre; else delete o.bootChain.preBoot;
    if (!(o.bootChain.requireExitBootServices && n.bootChain.requireExitBootServices)) delete o.bootChain.requireExitBootServices;
  }
  if (o.keys && n.keys) {
    for (const v of KEY_VARS) o.keys[v] = uniq([...o.keys[v], ...n.keys[v]], (k) => k.sha256);
  }
  if (o.authorities && n.authorities) o.authorities.allowed = uniq([...o.authorities.allowed, ...n.authorities.allowed], (a) => a.sha256);
  if (o.kernelCmdline && n.kernelCmdline) o.kernelCmdline.allowed = uniq([...o.kernelCmdline.allowed, ...n.kernelCmdline.allowed]);
  if (o.pcrValues && n.pcrValues) {
    for (const [p, vals] of Object.entries(n.pcrValues)) o.pcrValues[p] = uniq([...(Object.hasOwn(o.pcrValues, p) ? o.pcrValues[p] : []), ...vals]);
  }
  out.version = POLICY_VERSION;
  // Known-good values: the union, for the PCRs the merged policy reads. A version 1 policy has
  // no values for its earlier boots: then only the new boot's values are known.
  const kg: Record<string, string[]> = {};
  for (const p of policyPcrs(out)) {
    const k = String(p);
    const was = policy.knownGood && Object.hasOwn(policy.knownGood, k) ? policy.knownGood[k] : [];
    const now = np.knownGood && Object.hasOwn(np.knownGood, k) ? np.knownGood[k] : [];
    if (!policy.knownGood || !was.length) { if (!policy.knownGood) continue; }
    kg[k] = uniq([...was, ...now]);
  }
  if (policy.knownGood && policy.knownGoodRules === rulesDigest(policy)) {
    out.knownGood = kg;
    out.knownGoodRules = rulesDigest(out);
  } else {
    delete out.knownGood;
    delete out.knownGoodRules;
  }
  return out;
}

function fwKey(f: Firmware): string {
  return JSON.stringify(f.events.map((e) => e.digest));
}

function mergeStages(a: Stage[], b: Stage[]): Stage[] {
  const out: Stage[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i], y = b[i];
    if (x && y) {
      out.push({
        role: x.role,
        allowed: uniq([...x.allowed, ...y.allowed], (s) => s.digest),
        ...(x.allowAny || y.allowAny ? { allowAny: true } : {}),
        ...(x.optional || y.optional ? { optional: true } : {}),
        ...(x.signedBy || y.signedBy ? { signedBy: uniq([...(x.signedBy ?? []), ...(y.signedBy ?? [])], (c) => c.sha256) } : {}),
      });
    } else out.push({ ...(x ?? y)!, optional: true });
  }
  return out;
}

/**
 * Checks a trusted log against a policy (pure). Every failed rule is reported, with the PCR, the
 * event number, and the expected and actual values. Per PCR the policy reads by structure, the
 * analysis' issues (unexpected event types, unbound data, duplicate separators) are failures;
 * a PCR whose quoted value is one of the policy's known-good values passes as a whole.
 */
export function checkPolicy(policy: Policy, tl: TrustedLog): PolicyResult {
  const failures: Failure[] = [];
  const fail = (rule: string, pcr: number | null, event: number | null, expected: string, actual: string, what: string) => {
    const where = pcr === null ? '' : event === null ? `PCR ${pcr}: ` : `PCR ${pcr} event ${event}: `;
    failures.push({ rule, pcr, event, expected, actual, message: where + what });
  };
  const bank = policy.bank;
  const st = analyseBoot(tl);
  const warnings = () => st.warnings.map((w) => w.message);
  if (!tl.banks.includes(bank)) {
    fail('bank', null, null, bank, tl.banks.join(',') || 'none', `the quote has no ${bank} bank (it has ${tl.banks.join(', ') || 'none'}); the policy's digests are ${bank}`);
    return { pass: false, failures, warnings: warnings(), knownGoodPcrs: [] };
  }
  const need = policyPcrs(policy);
  const missing = need.filter((p) => !tl.covers(p, bank));
  if (missing.length) {
    fail('selection', null, null, need.join(','), tl.pcrs(bank).join(','), `the ${tl.verified ? 'quote' : 'log'} does not cover PCR ${missing.join(', ')} of bank ${bank}, which the policy reads`);
    return { pass: false, failures, warnings: warnings(), knownGoodPcrs: [] };
  }
  // The known-good shortcut: a PCR whose value is a known-good one is that boot's digest sequence.
  // Only while the rules are the ones the values were recorded with.
  const kgValid = policy.knownGood !== undefined && policy.knownGoodRules === rulesDigest(policy);
  const extraWarnings: string[] = [];
  if (policy.knownGood !== undefined && !kgValid) extraWarnings.push('the policy\'s rules changed since its known-good values were recorded: they are ignored, every rule reads its PCRs by structure');
  const kgPcrs = !kgValid ? [] : need.filter((p) => {
    const k = String(p);
    const v = valueHex(tl, bank, p);
    return Object.hasOwn(policy.knownGood!, k) && v !== undefined && policy.knownGood![k].includes(v);
  });
  const kg = new Set(kgPcrs);
  const structural = (pcrs: number[]) => !pcrs.every((p) => kg.has(p));
  const rp = rulePcrs(policy);
  const r = policy.rules;

  // Issues of every PCR read by structure: what could be relabelled or unbound.
  const readByStructure = new Set<number>();
  for (const pcrs of Object.values(rp)) if (structural(pcrs)) for (const p of pcrs) if (!kg.has(p)) readByStructure.add(p);
  for (const i of issuesIn(st, readByStructure)) {
    fail('log-structure', i.pcr ?? null, i.event ?? null, 'an event the quote binds and the analysis can read', i.code, i.message.replace(/^PCR \d+ event \d+: /, ''));
  }

  if (r.firmware && structural(rp.firmware)) checkFirmware(r.firmware.allowed, st, bank, fail);
  if (r.bootChain && structural(rp.bootChain)) {
    checkChain(r.bootChain.stages, st, bank, fail);
    const pre = st.preBootApps.map((a) => a.digests[bank] ?? '');
    const allowedPre = r.bootChain.preBoot ?? [[]];
    if (!allowedPre.some((s) => s.length === pre.length && s.every((d, i) => d === pre[i]))) {
      const a = st.preBootApps.find((x, i) => !allowedPre.some((s) => s[i] === (x.digests[bank] ?? '')));
      fail('boot-chain', 4, a?.event ?? null, allowedPre.map((s) => s.join(',') || 'none').join(' | '), pre.join(',') || 'none',
        `EFI application(s) loaded before "Calling EFI Application from Boot Option" (${st.preBootApps.map((x) => `${appName(x)} ${short(x.digests[bank] ?? '')}`).join(', ') || 'none'}) are not the ones the policy allows (${allowedPre.map((s) => s.map(short).join(', ') || 'none').join(' | ')})`);
    }
    if (r.bootChain.requireExitBootServices && st.exitBootServices === undefined) {
      fail('boot-chain', 5, null, 'Exit Boot Services Invocation', 'none', 'PCR 5 has no "Exit Boot Services Invocation" event, which the known-good boots had: the boot did not reach the hand-off the policy expects');
    }
  }
  if (rp.pcr7 && structural(rp.pcr7)) checkPcr7(policy, st, fail);
  if (r.kernelCmdline && !policy.options.allowAnyCmdline && structural(rp.kernelCmdline)) checkCmdlines(r.kernelCmdline.allowed, st, bank, policy.options.allowAnyKernel, fail);
  for (const [p, vals] of Object.entries(r.pcrValues ?? {})) {
    const pcr = Number(p);
    const actual = valueHex(tl, bank, pcr) ?? 'not quoted';
    if (vals.includes(actual)) continue;
    const evs = tl.events(pcr).map((e) => e.index);
    fail('pcr-value', pcr, null, vals.join(' | '), actual, `${bank} value is ${short(actual)}, policy allows ${orList(vals.map(short))} (PCR ${pcr} events: ${evs.join(', ') || 'none'})`);
  }
  return { pass: failures.length === 0, failures, warnings: [...extraWarnings, ...warnings()], knownGoodPcrs: kgPcrs };
}

type Fail = (rule: string, pcr: number | null, event: number | null, expected: string, actual: string, what: string) => void;

function checkPcr7(policy: Policy, st: BootState, fail: Fail): void {
  const r = policy.rules;
  if (r.secureBoot) {
    const sb = st.secureBoot;
    if (r.secureBoot.enabled && !sb.enabled) {
      fail('secure-boot', 7, sb.event ?? null, 'on', 'off', `Secure Boot is off (${sb.event === undefined ? 'no SecureBoot variable measured' : `SecureBoot = ${sb.value || 'empty'}`}), policy requires it on`);
    }
    if (r.secureBoot.setupMode === false && st.setupMode?.enabled) {
      fail('setup-mode', 7, st.setupMode.event, 'off', 'on', 'Secure Boot is in setup mode (keys can be replaced without authentication), policy requires user mode');
    }
  }
  if (r.keys) {
    for (const v of KEY_VARS) {
      const actual = st[v]?.dataSha256 ?? 'absent';
      const allowed = r.keys[v];
      if (allowed.some((k) => k.sha256 === actual)) continue;
      const subj = st[v]?.entries.map((e) => e.subject ?? `${e.type} ${short(e.hash)}`) ?? [];
      const desc = (k: AllowedKey) => (k.sha256 === 'absent' ? 'absent' : `${short(k.sha256)}${k.subjects.length ? ` (${k.subjects.join('; ')})` : ''}`);
      fail(v, 7, st[v]?.event ?? null, allowed.map((k) => k.sha256).join(' | '), actual,
        actual === 'absent' ? `${v} was not measured, policy allows ${orList(allowed.map(desc))}`
          : `${v} has SHA-256 ${short(actual)}${subj.length ? ` (${subj.join('; ')})` : ''}, policy allows ${orList(allowed.map(desc))}`);
    }
    if (r.keys.dbxMustContain.length) {
      const have = new Set((st.dbx?.entries ?? []).map(dbxEntry));
      const missing = r.keys.dbxMustContain.filter((e) => !have.has(e));
      if (missing.length) {
        fail('dbx', 7, st.dbx?.event ?? null, `all of ${r.keys.dbxMustContain.length} known revocations`, `${missing.length} missing`,
          `dbx ${st.dbx ? `has ${st.dbx.entries.length} entries and` : 'was not measured and'} lacks ${missing.length} of the ${r.keys.dbxMustContain.length} revocations the policy requires (e.g. ${missing.slice(0, 3).map((m) => m.replace(/:(.{12}).*/, ':$1…')).join(', ')})`);
      }
    }
  }
  if (r.authorities) {
    const ok = new Set(r.authorities.allowed.map((a) => a.sha256));
    const names = r.authorities.allowed.map((a) => a.subject ?? short(a.sha256));
    for (const a of st.authorities) {
      if (ok.has(a.sha256)) continue;
      fail('authority', 7, a.event, r.authorities.allowed.map((x) => x.sha256).join(' | '), a.sha256,
        `boot component verified by ${a.subject ?? 'a key'} from ${a.variable} (SHA-256 ${short(a.sha256)}), policy allows ${orList(names)}`);
    }
  }
  if (r.debug) {
    if (!r.debug.allowUefiDebugMode) for (const e of st.debugMode) fail('debug', 7, e, 'no UEFI debugger', 'UEFI Debug Mode', 'a UEFI debugger was enabled ("UEFI Debug Mode"), policy forbids it');
    if (!r.debug.allowDmaProtectionDisabled) for (const e of st.dmaProtectionDisabled) fail('debug', 7, e, 'DMA protection on', 'DMA Protection Disabled', 'DMA protection was disabled, policy forbids it');
  }
}

function checkFirmware(allowed: Firmware[], st: BootState, bank: BankName, fail: Fail): void {
  const mine = firmwareOf(st, bank);
  const key = fwKey(mine);
  if (allowed.some((f) => fwKey(f) === key)) return;
  // The first event that no allowed firmware has at the same position (digests only: labels are not bound).
  const n = Math.max(mine.events.length, ...allowed.map((f) => f.events.length));
  for (let i = 0; i < n; i++) {
    const ev = mine.events[i];
    const cands = allowed.filter((f) => f.events.slice(0, i).every((e, j) => e.digest === mine.events[j]?.digest));
    const pool = cands.length ? cands : allowed;
    const exp = uniq(pool.map((f) => f.events[i]).filter((e) => e !== undefined));
    if (ev && exp.some((e) => e.digest === ev.digest)) continue;
    const v = st.firmware.crtmVersions.map((c) => `${JSON.stringify(c.text)}${c.verified ? '' : ' (unverified text)'}`).join(' / ');
    if (!ev) {
      fail('firmware', 0, null, exp.map((e) => e.digest).join(' | '), 'none', `firmware event missing: policy expects ${orList(exp.map((e) => `${e.type} ${e.description} with digest ${short(e.digest)}`))} after the last PCR 0 event`);
    } else {
      fail('firmware', 0, ev.event, exp.map((e) => e.digest).join(' | ') || 'no further event', ev.digest,
        exp.length ? `firmware ${ev.type} ${ev.description} has digest ${short(ev.digest)}, policy allows ${orList(exp.map((e) => `${short(e.digest)} (${e.type} ${e.description})`))}${v ? `; firmware version ${v}` : ''}`
          : `firmware ${ev.type} ${ev.description} (digest ${short(ev.digest)}) is not in the allowed firmware`);
    }
    return;
  }
}

function appName(a: { path?: string; devicePath: string }): string {
  return a.path ?? (a.devicePath || '(no device path)');
}

/**
 * PCR 4's EFI applications against the policy's stages. The DECISION is by position (stage i
 * allows app i; an optional stage may be missing only at the end), as it always was. The
 * MESSAGES come from aligning the two chains by digest (diff.ts align), as a diff tool aligns
 * lines: an inserted or removed image is named as such, and the images after it are compared
 * with their own counterparts (not systemd-boot reported as the UKI, the UKI as the kernel).
 */
function checkChain(stages: Stage[], st: BootState, bank: BankName, fail: Fail): void {
  const apps = st.apps;
  let positional = apps.length > stages.length;
  for (let i = 0; i < Math.min(apps.length, stages.length); i++) if (!stageAccepts(stages[i], apps[i], bank)) positional = true;
  for (let i = apps.length; i < stages.length; i++) if (!stages[i].optional) positional = true;
  if (!positional) return;
  const paths = (s: Stage) => orList(s.allowed.map((x) => x.path ?? short(x.digest)));
  const ops = align(stages, apps, (s, a) => stageAccepts(s, a, bank));
  let n = 0;
  for (let k = 0; k < ops.length; k++) {
    const o = ops[k];
    if (o.op === 'same') continue;
    if (o.op === 'changed') {
      const a = o.b, s = o.a, d = a.digests[bank] ?? 'none';
      fail('boot-chain', 4, a.event, s.allowed.map((x) => x.digest).join(' | '), d,
        `EFI application ${appName(a)}${a.label ? ` (labelled ${a.label})` : ''} (${s.role}) has digest ${short(d)}, policy allows ${orList(s.allowed.map((x) => short(x.digest) + (x.path && x.path !== a.path ? ` (${x.path})` : '')))}`);
    } else if (o.op === 'added') {
      const a = o.b;
      const prev = ops.slice(0, k).reverse().find((x) => x.op !== 'added' && x.op !== 'removed');
      const next = ops.slice(k + 1).find((x) => x.op !== 'added' && x.op !== 'removed');
      const where = prev && 'a' in prev ? `after the policy's ${prev.a.role}` : next && 'a' in next ? `before the policy's ${next.a.role}` : 'in a chain the policy does not have';
      fail('boot-chain', 4, a.event, `${stages.length} EFI application(s)`, `${appName(a)} ${a.digests[bank] ?? ''}`,
        `unexpected EFI application ${appName(a)}${a.label ? ` (labelled ${a.label})` : ''} (digest ${short(a.digests[bank] ?? 'none')}) ${where}: the policy's boot chain (${stages.map((s) => s.role).join(' → ') || 'empty'}) has no image there`);
    } else if (!o.a.optional) {
      fail('boot-chain', 4, null, o.a.allowed.map((x) => x.digest).join(' | '), 'none',
        `the boot did not load the policy's ${o.a.role} (${paths(o.a)}): ${apps.length} EFI application(s) loaded, the policy's chain is ${stages.map((s) => s.role).join(' → ')}`);
    } else continue;
    n++;
  }
  if (!n) {
    // Every image matches its stage once aligned, but not by position: an optional stage was skipped before the end.
    fail('boot-chain', 4, null, stages.map((s) => s.role).join(' → '), apps.map(appName).join(' → '),
      `the boot skipped the optional ${ops.filter((o) => o.op === 'removed').map((o) => (o as { a: Stage }).a.role).join(', ')} stage(s) before the end of the chain; the policy's stages are matched by position (add this boot with \`policy add-boot\`)`);
  }
}

function showCmdline(a: AllowedCmdline): string {
  return a.text !== undefined ? JSON.stringify(a.text) : `load options with digest ${short(a.digest ?? '')}`;
}

function checkCmdlines(allowed: AllowedCmdline[], st: BootState, bank: BankName, allowAnyKernel: boolean, fail: Fail): void {
  const checkable = st.cmdlines.filter((c) => (c.text !== undefined && c.source !== 'linux-efi-stub') || !allowAnyKernel);
  // A source the policy lists by text must be measured as text: a digest-only stand-in is not enough.
  const textSources = new Set(allowed.filter((a) => a.text !== undefined).map((a) => a.source));
  const haveText = st.cmdlines.some((c) => c.text !== undefined && c.source !== 'linux-efi-stub');
  if (!checkable.length || (textSources.size && !haveText)) {
    fail('kernel-cmdline', null, null, allowed.map((a) => a.text ?? a.digest).join(' | '), 'none', `no kernel command line was measured${checkable.length ? ' as text' : ''}, policy allows ${orList(allowed.map(showCmdline))}`);
  }
  for (const c of checkable) {
    const same = allowed.filter((a) => a.source === c.source);
    const d = c.digests[bank] ?? '';
    const t = c.text === undefined || c.source === 'linux-efi-stub' ? undefined : normCmdline(c.text, c.source, allowAnyKernel);
    const ok = same.some((a) => (t !== undefined && a.text !== undefined ? normCmdline(a.text, a.source, allowAnyKernel) === t : a.digest !== undefined && a.digest === d))
      // The EFI stub's load options are also fine when they are one of the allowed texts (same digest as a verified text).
      || (c.source === 'linux-efi-stub' && c.text !== undefined && allowed.some((a) => a.text !== undefined && normCmdline(a.text, a.source, allowAnyKernel) === normCmdline(c.text!, a.source, allowAnyKernel)));
    if (ok) continue;
    const actual = t !== undefined ? JSON.stringify(t) : `load options with digest ${short(d)}`;
    fail('kernel-cmdline', c.pcr, c.event, (same.length ? same : allowed).map((a) => a.text ?? a.digest).join(' | '), t ?? d,
      `kernel command line (${c.source}) is ${actual}, policy allows ${same.length ? orList(same.map(showCmdline)) : `no ${c.source} command line (only ${orList(allowed.map((a) => `${a.source}: ${showCmdline(a)}`))})`}`);
  }
}
