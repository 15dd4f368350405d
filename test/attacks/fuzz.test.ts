/**
 * Attacker fuzzing of the boot verdict: every real corpus log and OVMF boot, the PCR values an
 * honest TPM would quote for it (its own replay over requiredSelection(policy, 15)), and
 * mutations of the log that the quote cannot see (mutate.ts). Policies: generated from the same
 * log (released boots), from another boot (refused), and from each attack scenario's
 * known-good boot against the attacker's honest log (refused); each as generated and with
 * `knownGood` deleted (structural analysis only) when the policy has one.
 *
 * Invariants:
 * - a refused boot is never released by a mutation;
 * - a released boot, mutated, stays released with no failures, or is refused (counted);
 * - a log with an event of digest count 0 or without a declared bank is refused with EVENTLOG;
 * - evaluateBoot never throws.
 *
 * BOOTKEY_FUZZ_SEED (default: random, printed), BOOTKEY_FUZZ_N (mutated logs; default 16000),
 * BOOTKEY_EXPECT_FIXED=0 (assert that the fuzzer finds today's bug instead).
 */
import { test } from 'uvu';
import { unverifiedLog } from '../../src/measuredboot/trusted.ts';
import * as assert from 'uvu/assert';
import { evaluateBoot, type Verdict } from '../../src/measuredboot/verdict.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { generatePolicy, type Policy } from '../../src/measuredboot/policy.ts';
import { analyseBoot } from '../../src/measuredboot/bootstate.ts';
import type { PcrValues } from '../../src/pcrs.ts';
import { randomMutation, Rng, type MutationContext } from './mutate.ts';
import { qemuLogs, realLogs, type CorpusLog } from './corpus.ts';
import { allAttacks, quoteFor, showVerdict, RELEASED_PCR } from './scenarios.ts';

const EXPECT_FIXED = process.env.BOOTKEY_EXPECT_FIXED !== '0';
const SEED = process.env.BOOTKEY_FUZZ_SEED ? Number(process.env.BOOTKEY_FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const N = process.env.BOOTKEY_FUZZ_N ? Number(process.env.BOOTKEY_FUZZ_N) : 16000;

interface Target {
  name: string;
  policy: Policy;
  bytes: Buffer;
  quoted: PcrValues;
  released: boolean;
  cmdlines: string[];
}

function cmdlinesOf(bytes: Buffer): string[] {
  try {
    return analyseBoot(unverifiedLog(parseEventLog(bytes))).cmdlines.flatMap((c) => (c.text !== undefined ? [c.text] : []));
  } catch {
    return [];
  }
}

function policyOf(bytes: Buffer): Policy | undefined {
  try {
    const log = parseEventLog(bytes);
    const o = log.banks.includes('sha256') ? { bank: 'sha256' as const } : {};
    try {
      return generatePolicy(unverifiedLog(log), o);
    } catch {
      // logs without a command line (NO_CMDLINE): the operator's explicit opt-out
      return generatePolicy(unverifiedLog(log), { ...o, allowAnyCmdline: true });
    }
  } catch {
    return undefined;
  }
}

/** The policy as generated, and without knownGood when it has one. */
function variants(p: Policy): { label: string; policy: Policy }[] {
  if (!Object.hasOwn(p, 'knownGood')) return [{ label: '', policy: p }];
  const s = structuredClone(p) as Policy & { knownGood?: unknown };
  delete s.knownGood;
  return [{ label: ' [knownGood]', policy: p }, { label: ' [structural]', policy: s }];
}

const skipped: string[] = [];

function target(name: string, policy: Policy, bytes: Buffer, hintFrom: Buffer[]): Target[] {
  if (!parseEventLog(bytes).banks.includes(policy.bank)) {
    skipped.push(`${name}: the log has no ${policy.bank} bank`);
    return [];
  }
  const cmdlines = [...new Set([...policy.rules.kernelCmdline?.allowed.flatMap((a) => (a.text !== undefined ? [a.text] : [])) ?? [], ...hintFrom.flatMap(cmdlinesOf)])];
  return variants(policy).map(({ label, policy: p }) => {
    const quoted = quoteFor(p, bytes);
    const v = evaluateBoot(p, bytes, quoted, { releasedPcr: RELEASED_PCR });
    return { name: name + label, policy: p, bytes, quoted, released: v.pass, cmdlines };
  });
}

function buildTargets(): Target[] {
  const qemu = qemuLogs();
  const real = realLogs().filter((l) => {
    try {
      parseEventLog(l.bytes);
      return true;
    } catch (e) {
      skipped.push(`${l.name}: refused by the strict parser (${(e as Error).message.slice(0, 60)}…)`);
      return false;
    }
  });
  const out: Target[] = [];
  const policies = new Map<string, Policy | undefined>();
  for (const l of [...real, ...qemu]) policies.set(l.name, policyOf(l.bytes));
  const banksOf = (l: CorpusLog) => parseEventLog(l.bytes).banks.join('+');

  // released: the policy of the log itself
  for (const l of [...real, ...qemu]) {
    const p = policies.get(l.name);
    if (!p) { skipped.push(`${l.name}: no policy (generatePolicy refuses the log)`); continue; }
    out.push(...target(`${l.name} / own policy`, p, l.bytes, [l.bytes]));
  }
  // refused: OVMF boots against each other's policy
  const q = (n: string) => qemu.find((l) => l.name === `qemu/${n}`)!;
  for (const [pol, boot] of [['uki-sb-on', 'uki-sb-off'], ['uki-sb-off', 'uki-sb-on'], ['uki-sb-off', 'uki-sb-off-cmdline2'], ['uki-sb-off-cmdline2', 'uki-sb-off'], ['sdboot-sb-off', 'uki-sb-off'], ['uki-sb-off', 'sdboot-sb-off'], ['uki-sb-on', 'sdboot-sb-off']]) {
    out.push(...target(`qemu/${boot} / policy of ${pol}`, policies.get(`qemu/${pol}`)!, q(boot).bytes, [q(pol).bytes, q(boot).bytes]));
  }
  // refused: each real log against the policy of the next corpus log with the same banks
  for (const [i, l] of real.entries()) {
    const other = [...real.slice(i + 1), ...real.slice(0, i)].find((o) => banksOf(o) === banksOf(l) && policies.get(o.name) && !o.bytes.equals(l.bytes));
    if (!other) { skipped.push(`${l.name}: no other corpus log with banks ${banksOf(l)}`); continue; }
    out.push(...target(`${l.name} / policy of ${other.name}`, policies.get(other.name)!, l.bytes, [other.bytes, l.bytes]));
  }
  // refused: the attackers' honest boots against the known-good policies
  for (const a of allAttacks()) out.push(...target(`attack ${a.id} honest boot`, a.policy, a.honest, [a.honest]));
  return out;
}

const t0 = performance.now();
const TARGETS = buildTargets();
const setupMs = performance.now() - t0;

test('targets: released and refused boots from the whole corpus', () => {
  const released = TARGETS.filter((t) => t.released).length;
  const refused = TARGETS.length - released;
  console.log(`fuzz targets: ${TARGETS.length} (${released} released, ${refused} refused at baseline), set-up ${Math.round(setupMs)} ms; skipped: ${skipped.length ? skipped.join("; ") : "none"}`);
  assert.ok(released >= 30, `${released} released targets`);
  assert.ok(refused >= 30, `${refused} refused targets`);
  for (const a of allAttacks()) {
    const ts = TARGETS.filter((t) => t.name.startsWith(`attack ${a.id} honest boot`));
    assert.ok(ts.length >= 1, `attack ${a.id}: a target`);
    for (const t of ts) assert.not.ok(t.released, `${t.name}: the honest boot is refused`);
  }
});

interface Violation { kind: string; case: number; target: string; description: string; verdict: string }

test(`mutations keep refused boots refused (seed ${SEED}, N ${N})`, () => {
  const violations: Violation[] = [];
  const counts = { mutations: 0, none: 0, releasedStayed: 0, releasedRefused: 0, eventlog: 0, refusedStayed: 0 };
  const refusedCodes: Record<string, number> = {};
  const stats = { rejected: 0, notApplicable: 0 };
  const start = performance.now();
  const released = TARGETS.filter((t) => t.released);
  const refused = TARGETS.filter((t) => !t.released);
  for (let i = 0; i < N; i++) {
    // one RNG per case, so that a case can be replayed from (seed, i); two thirds on refused boots
    const rng = new Rng((SEED + Math.imul(i, 0x9e3779b1)) >>> 0);
    const t = rng.int(3) === 0 ? rng.pick(released) : rng.pick(refused);
    const ctx: MutationContext = { rng, quoted: t.quoted, cmdlines: t.cmdlines, stats };
    const m = randomMutation(t.bytes, ctx);
    if (!m) { counts.none++; continue; }
    counts.mutations++;
    let v: Verdict;
    try {
      v = evaluateBoot(t.policy, m.bytes, t.quoted, { releasedPcr: RELEASED_PCR });
    } catch (e) {
      violations.push({ kind: 'evaluateBoot threw', case: i, target: t.name, description: m.description, verdict: String((e as Error)?.stack ?? e) });
      continue;
    }
    const bad = (kind: string) => violations.push({ kind, case: i, target: t.name, description: m.description, verdict: showVerdict(v) });
    if (m.expect === 'eventlog') {
      counts.eventlog++;
      if (v.code !== 'EVENTLOG') bad('event extending nothing not refused with EVENTLOG');
      continue;
    }
    if (!t.released) {
      if (v.pass) bad('refused boot released');
      else counts.refusedStayed++;
      continue;
    }
    if (v.pass) {
      if (v.failures.length) bad('released with failures');
      else counts.releasedStayed++;
    } else {
      counts.releasedRefused++;
      refusedCodes[v.code ?? '?'] = (refusedCodes[v.code ?? '?'] ?? 0) + 1;
      // With its known-good values, a released boot's verdict is a function of the quoted
      // values: a mutation the quote cannot see may make the log unparseable (EVENTLOG), never
      // change the policy's answer.
      if (EXPECT_FIXED && t.name.endsWith('[knownGood]') && v.code === 'POLICY') bad('known-good boot refused by POLICY after a quote-invisible mutation');
    }
  }
  const ms = performance.now() - start;
  const byKind = new Map<string, Violation[]>();
  for (const v of violations) byKind.set(v.kind, [...(byKind.get(v.kind) ?? []), v]);
  console.log(`fuzz: seed ${SEED}, N ${N}: ${counts.mutations} mutated logs evaluated in ${(ms / 1000).toFixed(1)} s (${(counts.mutations / (ms / 1000)).toFixed(0)}/s); `
    + `${counts.none} cases without an applicable mutation, ${stats.rejected} mutation steps rejected (a quoted PCR would change), ${stats.notApplicable} not applicable`);
  console.log(`fuzz: released boots mutated: ${counts.releasedStayed} stayed released, ${counts.releasedRefused} refused (${Object.entries(refusedCodes).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}); `
    + `refused boots mutated: ${counts.refusedStayed} stayed refused; extends-nothing events: ${counts.eventlog}`);
  for (const [kind, vs] of byKind) {
    console.log(`fuzz VIOLATION ×${vs.length}: ${kind} (reproduce: BOOTKEY_FUZZ_SEED=${SEED} BOOTKEY_FUZZ_N=${N})`);
    for (const v of vs.slice(0, 4)) console.log(`  case ${v.case}, ${v.target}: ${v.description}\n    → ${v.verdict.slice(0, 400)}`);
  }
  assert.ok(counts.mutations >= N * 0.8, `${counts.mutations} of ${N} cases mutated`);
  if (EXPECT_FIXED) {
    assert.is(violations.length, 0, `${violations.length} violation(s), seed ${SEED}: ${[...byKind.keys()].join('; ')}`);
  } else {
    // today's analysis: extends-nothing events are believed (found in every run); refused boots
    // released are found in most runs of the default N (2-3 per 16000-20000), so only reported
    assert.ok(byKind.has('event extending nothing not refused with EVENTLOG'), 'the fuzzer finds the count-0 / missing-bank bug');
    console.log(`fuzz (old analysis): refused boots released by a mutation: ${byKind.get('refused boot released')?.length ?? 0}`);
  }
});

test.run();
