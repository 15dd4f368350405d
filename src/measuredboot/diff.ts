/**
 * Aligning two boots, as a diff tool aligns lines: per PCR, the two sequences of events are
 * matched by digest with a longest common subsequence, so that an image inserted, removed or
 * replaced is reported as such, and the images after it are still compared with their own
 * counterparts instead of with whatever the policy had at the same position.
 *
 * - {@link align}: the generic alignment (LCS over an equality predicate; a run of removals and
 *   additions between two matches is paired into `changed` entries, in order).
 * - {@link diffBoot}: a boot (TrustedLog) against a policy, section by section: PCR 0 firmware
 *   events, PCR 4 EFI applications, kernel command lines, the Secure Boot state, PK/KEK/db,
 *   dbx, pinned PCR values. The dashboard renders it; `policy check`'s boot-chain reasons use
 *   {@link align} too (policy.ts checkChain).
 *
 * Pure. The decision stays checkPolicy's: diffBoot copies each row's status from checkPolicy's
 * failures where a rule decides it, and only adds the alignment around them.
 * @module
 */
import { analyseBoot, type BootApp, type BootState } from './bootstate.ts';
import { checkPolicy, type Failure, type Policy, type Stage } from './policy.ts';
import type { TrustedLog } from './trusted.ts';
import type { BankName } from '../pcrs.ts';

export type AlignOp<A, B> =
  | { op: 'same'; a: A; b: B; ai: number; bi: number }
  | { op: 'changed'; a: A; b: B; ai: number; bi: number }
  | { op: 'removed'; a: A; ai: number }
  | { op: 'added'; b: B; bi: number };

/** Above this many DP cells (after trimming the common prefix and suffix) the middle is paired by position. */
export const MAX_ALIGN_CELLS = 4_000_000;

/**
 * Aligns `a` (expected) with `b` (actual) by a longest common subsequence under `eq`; between
 * two matches, the k-th removal is paired with the k-th addition as `changed`.
 */
export function align<A, B>(a: readonly A[], b: readonly B[], eq: (x: A, y: B) => boolean): AlignOp<A, B>[] {
  const raw: ({ k: 's'; ai: number; bi: number } | { k: 'r'; ai: number } | { k: 'a'; bi: number })[] = [];
  let pre = 0;
  while (pre < a.length && pre < b.length && eq(a[pre], b[pre])) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && eq(a[a.length - 1 - suf], b[b.length - 1 - suf])) suf++;
  for (let i = 0; i < pre; i++) raw.push({ k: 's', ai: i, bi: i });
  const n = a.length - pre - suf, m = b.length - pre - suf;
  if ((n + 1) * (m + 1) > MAX_ALIGN_CELLS) {
    for (let i = 0; i < Math.max(n, m); i++) {
      if (i < n) raw.push({ k: 'r', ai: pre + i });
      if (i < m) raw.push({ k: 'a', bi: pre + i });
    }
  } else {
    // L[i][j] = LCS length of a[pre+i..pre+n) and b[pre+j..pre+m)
    const w = m + 1;
    const L = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i * w + j] = eq(a[pre + i], b[pre + j]) ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
      }
    }
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && eq(a[pre + i], b[pre + j]) && L[i * w + j] === L[(i + 1) * w + j + 1] + 1) {
        raw.push({ k: 's', ai: pre + i, bi: pre + j });
        i++;
        j++;
      } else if (j < m && (i === n || L[i * w + j + 1] >= L[(i + 1) * w + j])) {
        raw.push({ k: 'a', bi: pre + j });
        j++;
      } else {
        raw.push({ k: 'r', ai: pre + i });
        i++;
      }
    }
  }
  for (let k = 0; k < suf; k++) raw.push({ k: 's', ai: a.length - suf + k, bi: b.length - suf + k });

  const out: AlignOp<A, B>[] = [];
  for (let k = 0; k < raw.length;) {
    const r = raw[k];
    if (r.k === 's') {
      out.push({ op: 'same', a: a[r.ai], b: b[r.bi], ai: r.ai, bi: r.bi });
      k++;
      continue;
    }
    const rem: number[] = [], add: number[] = [];
    while (k < raw.length && raw[k].k !== 's') {
      const x = raw[k++];
      if (x.k === 'r') rem.push(x.ai);
      else if (x.k === 'a') add.push(x.bi);
    }
    for (let q = 0; q < Math.max(rem.length, add.length); q++) {
      if (q < rem.length && q < add.length) out.push({ op: 'changed', a: a[rem[q]], b: b[add[q]], ai: rem[q], bi: add[q] });
      else if (q < rem.length) out.push({ op: 'removed', a: a[rem[q]], ai: rem[q] });
      else out.push({ op: 'added', b: b[add[q]], bi: add[q] });
    }
  }
  return out;
}

/** Does this app fit this stage (its digest allowed, or the stage accepts any image)? */
export function stageAccepts(s: Stage, a: BootApp, bank: BankName): boolean {
  return s.allowAny === true || s.allowed.some((x) => x.digest === (a.digests[bank] ?? 'none'));
}

export type RowStatus = 'same' | 'changed' | 'removed' | 'added' | 'failed';

/** One line of the diff: what the policy expects, what the boot had, and whether they agree. */
export interface DiffRow {
  status: RowStatus;
  pcr: number | null;
  /** The boot's event number (log position), when the row has one. */
  event: number | null;
  /** What the policy has here: a label and the allowed digest(s) or value(s). */
  expected?: { label: string; values: string[] };
  /** What the boot had here. */
  actual?: { label: string; value: string };
}

export interface DiffSection {
  title: string;
  /** False when the policy has no rule for this part (the rows then just list the boot). */
  ruled: boolean;
  rows: DiffRow[];
}

export interface BootDiff {
  verified: boolean;
  bank: BankName;
  sections: DiffSection[];
  /** checkPolicy's failures on this boot (the decision). */
  failures: Failure[];
}

function appLabel(a: BootApp): string {
  return `${a.path ?? (a.devicePath || '(no device path)')}${a.label ? ` [${a.label}]` : ''}`;
}

/** A boot against a policy, section by section, each sequence aligned by digest. */
export function diffBoot(policy: Policy, tl: TrustedLog): BootDiff {
  const bank = policy.bank;
  const st: BootState = analyseBoot(tl);
  const res = checkPolicy(policy, tl);
  const failedAt = (rule: string | RegExp, event: number | null) =>
    res.failures.some((f) => (typeof rule === 'string' ? f.rule === rule : rule.test(f.rule)) && (event === null || f.event === event));
  const sections: DiffSection[] = [];
  const r = policy.rules;

  // PCR 0: the firmware events, against the allowed firmware that aligns best.
  {
    const actual = st.firmware.events;
    const fws = r.firmware?.allowed ?? [];
    let best: AlignOp<{ digest: string; type: string; description: string }, (typeof actual)[number]>[] | undefined;
    let bestSame = -1;
    for (const fw of fws) {
      const ops = align(fw.events, actual, (x, y) => x.digest === (y.digests[bank] ?? ''));
      const same = ops.filter((o) => o.op === 'same').length;
      if (same > bestSame) {
        best = ops;
        bestSame = same;
      }
    }
    const rows: DiffRow[] = [];
    if (best) {
      for (const o of best) {
        rows.push({
          status: o.op, pcr: 0, event: 'b' in o ? o.b.event : null,
          expected: 'a' in o ? { label: `${o.a.type} ${o.a.description}`.trim(), values: [o.a.digest] } : undefined,
          actual: 'b' in o ? { label: `${o.b.type} ${o.b.description}`.trim(), value: o.b.digests[bank] ?? '' } : undefined,
        });
      }
    } else for (const e of actual) rows.push({ status: 'same', pcr: 0, event: e.event, actual: { label: `${e.type} ${e.description}`.trim(), value: e.digests[bank] ?? '' } });
    sections.push({ title: 'PCR 0: firmware', ruled: !!r.firmware, rows });
  }

  // PCR 4: the EFI applications against the policy's stages.
  {
    const stages = r.bootChain?.stages ?? [];
    const rows: DiffRow[] = [];
    const ops = align(stages, st.apps, (s, a) => stageAccepts(s, a, bank));
    for (const o of ops) {
      if (o.op === 'removed' && o.a.optional) continue; // an optional stage this boot did not load
      rows.push({
        status: o.op, pcr: 4, event: 'b' in o ? o.b.event : null,
        expected: 'a' in o ? { label: `${o.a.role}${o.a.optional ? ' (optional)' : ''}${o.a.allowed.some((x) => x.path) ? ` ${[...new Set(o.a.allowed.map((x) => x.path).filter(Boolean))].join(', ')}` : ''}`, values: o.a.allowAny ? ['any image'] : o.a.allowed.map((x) => x.digest) } : undefined,
        actual: 'b' in o ? { label: appLabel(o.b), value: o.b.digests[bank] ?? '' } : undefined,
      });
    }
    sections.push({ title: 'PCR 4: EFI applications', ruled: !!r.bootChain, rows });
  }

  // Kernel command lines (PCR 8, 9 or 12): each measured one, allowed or not (checkPolicy decides).
  {
    const allowed = r.kernelCmdline?.allowed ?? [];
    const rows: DiffRow[] = st.cmdlines.map((c) => ({
      status: failedAt('kernel-cmdline', c.event) ? 'changed' : 'same', pcr: c.pcr, event: c.event,
      expected: { label: `${c.source} command line`, values: allowed.filter((a) => a.source === c.source).map((a) => a.text ?? `digest ${a.digest}`) },
      actual: { label: c.source, value: c.text ?? `digest ${c.digests[bank] ?? ''}` },
    }));
    if (!st.cmdlines.length && allowed.length) rows.push({ status: 'removed', pcr: null, event: null, expected: { label: 'kernel command line', values: allowed.map((a) => a.text ?? `digest ${a.digest}`) } });
    sections.push({ title: 'Kernel command line', ruled: !!r.kernelCmdline && !policy.options.allowAnyCmdline, rows });
  }

  // PCR 7: Secure Boot state, keys, dbx.
  {
    const rows: DiffRow[] = [];
    const sbFail = failedAt('secure-boot', null);
    rows.push({
      status: sbFail ? 'changed' : 'same', pcr: 7, event: st.secureBoot.event ?? null,
      expected: r.secureBoot ? { label: 'Secure Boot', values: [r.secureBoot.enabled ? 'on' : 'off'] } : undefined,
      actual: { label: 'Secure Boot', value: st.secureBoot.enabled ? 'on' : 'off' },
    });
    if (st.setupMode) rows.push({ status: failedAt('setup-mode', null) ? 'changed' : 'same', pcr: 7, event: st.setupMode.event, actual: { label: 'SetupMode', value: st.setupMode.enabled ? 'setup mode' : 'user mode' } });
    for (const v of ['PK', 'KEK', 'db'] as const) {
      const a = st[v];
      rows.push({
        status: failedAt(v, null) ? 'changed' : 'same', pcr: 7, event: a?.event ?? null,
        expected: r.keys ? { label: v, values: r.keys[v].map((k) => `${k.sha256}${k.subjects.length ? ` (${k.subjects.join('; ')})` : ''}`) } : undefined,
        actual: { label: v, value: a ? `${a.dataSha256}${a.entries.some((e) => e.subject) ? ` (${a.entries.map((e) => e.subject).filter(Boolean).join('; ')})` : ''}` : 'absent' },
      });
    }
    const need = r.keys?.dbxMustContain.length ?? 0;
    rows.push({
      status: failedAt('dbx', null) ? 'changed' : 'same', pcr: 7, event: st.dbx?.event ?? null,
      expected: r.keys ? { label: 'dbx', values: [`contains the ${need} revocation(s) of the known-good boots`] } : undefined,
      actual: { label: 'dbx', value: st.dbx ? `${st.dbx.entries.length} entries` : 'not measured' },
    });
    for (const a of st.authorities) {
      rows.push({ status: failedAt('authority', a.event) ? 'changed' : 'same', pcr: 7, event: a.event, actual: { label: `authority from ${a.variable}`, value: a.subject ?? a.sha256 } });
    }
    sections.push({ title: 'PCR 7: Secure Boot', ruled: !!(r.secureBoot || r.keys || r.authorities), rows });
  }

  // Pinned PCR values.
  const pinned = Object.entries(r.pcrValues ?? {});
  if (pinned.length) {
    sections.push({
      title: 'Pinned PCR values', ruled: true,
      rows: pinned.map(([p, vals]) => ({
        status: res.failures.some((f) => f.rule === 'pcr-value' && f.pcr === Number(p)) ? 'changed' : 'same', pcr: Number(p), event: null,
        expected: { label: `PCR ${p}`, values: vals }, actual: { label: `PCR ${p}`, value: tl.value(bank, Number(p))?.toString('hex') ?? 'not quoted' },
      })),
    });
  }
  return { verified: tl.verified, bank, sections, failures: res.failures };
}
