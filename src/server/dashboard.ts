/**
 * The web dashboard: server-rendered HTML over HTTPS (the server's own certificate), on its own
 * listener (`dashboard = 127.0.0.1:7444`). No JavaScript at all, no CDN: one stylesheet served
 * here, and a Content-Security-Policy that allows nothing else (`default-src 'none'`, scripts
 * impossible). Why server-rendered: docs/ARCHITECTURE.md.
 *
 * - Every page needs a session: GET /login shows the sign-in form; POST /login with the admin
 *   token (constant-time compare, rate-limited per peer) sets `bk_session` (HttpOnly, Secure,
 *   SameSite=Strict, Path=/; 8 h absolute, 30 min idle; in this process's memory only).
 *   Without a session, pages redirect to /login (GET) or answer 403 (POST).
 * - GET pages only read. Actions are POST forms carrying the session's CSRF token (compared in
 *   constant time) and, when the browser sends one, an Origin equal to https://<Host header>.
 * - Actions go through Service.handle as `admin` requests: the same checks, log lines and audit
 *   entries as `bootkey admin` (peer `dashboard:ADDR`).
 * - Diff: for a refused machine, its kept refused boot (store.getRefusedBoot: the log of the
 *   last refusal decided after the quote verified) is bound to its quoted values again and
 *   aligned with the policy by diffBoot (measuredboot/diff.ts).
 * @module
 */
import { runtimeView } from './runtime.ts';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { parseListen, listenSide } from './listen.ts';
import { ServerError } from './errors.ts';
import { ctEqualSecret } from './secrets.ts';
import { RateLimiter } from './ratelimit.ts';
import type { Service } from './service.ts';
import type { MachineRecord, RefusedBoot, StagedRecord } from './store.ts';
import { parsePolicy } from '../measuredboot/policy-load.ts';
import type { Policy } from '../measuredboot/policy.ts';
import { parseEventLog } from '../measuredboot/eventlog.ts';
import { bindLogToQuote, unverifiedLog, type TrustedLog } from '../measuredboot/trusted.ts';
import { diffBoot, type BootDiff, type DiffRow } from '../measuredboot/diff.ts';
import { pcrValuesFromJson } from '../pcrs.ts';

export const SESSION_COOKIE = 'bk_session';
const SESSION_MAX_MS = 8 * 3600_000;
const SESSION_IDLE_MS = 30 * 60_000;
const MAX_SESSIONS = 1000;
const MAX_BODY = 64 * 1024;
export const PAGE_SIZE = 200;

export const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

interface Session {
  id: string;
  csrf: string;
  created: number;
  seen: number;
}

export interface DashboardOptions {
  listen: string;
  key: Buffer;
  cert: Buffer;
  service: Service;
  adminToken: string;
  log?: (line: string) => void;
  now?: () => number;
}

function h(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
function time(t: number | undefined | null): string {
  return typeof t === 'number' ? new Date(t).toISOString().replace(/\.\d+Z$/, 'Z').replace('T', ' ') : '–';
}
function short(x: string, n = 16): string {
  return x.length > n ? `${x.slice(0, n)}…` : x;
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#23395d;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}header form{margin-left:auto}
main{padding:16px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;position:sticky;top:0}td.mono,.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.state-active{color:#0a6b2a}.state-revoked{color:#a10d0d;font-weight:600}.state-pending{color:#8a6100}
.res-refused{color:#a10d0d}.res-released{color:#0a6b2a}
tr.same td{color:#555}tr.changed{background:#fff4d6}tr.removed{background:#ffe1e1}tr.added{background:#e2f5e2}
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:#ddd;font-size:12px}
.warn{background:#fff4d6;border:1px solid #e0b000;padding:8px;margin:8px 0}
.placeholder{border:1px dashed #999;padding:8px;color:#555;margin:8px 0}
form.inline{display:inline}button{cursor:pointer}
fieldset{border:1px solid #ccc;margin:8px 0}label{margin-right:8px}
.login{max-width:420px;margin:80px auto;background:#fff;padding:24px;border:1px solid #ddd}
.login input{width:100%;box-sizing:border-box;margin:8px 0}
`;

export interface RunningDashboard {
  port: number;
  close(): Promise<void>;
}

export async function startDashboard(o: DashboardOptions): Promise<RunningDashboard> {
  const log = o.log ?? (() => undefined);
  const now = o.now ?? Date.now;
  const sessions = new Map<string, Session>();
  const loginLimiter = new RateLimiter({ burst: 10, perSecond: 0.2 });
  const { host, port } = parseListen(o.listen);

  const getSession = (req: IncomingMessage): Session | undefined => {
    const c = (req.headers.cookie ?? '').split(';').map((x) => x.trim()).find((x) => x.startsWith(`${SESSION_COOKIE}=`));
    if (!c) return undefined;
    const id = c.slice(SESSION_COOKIE.length + 1);
    const s = sessions.get(id);
    const t = now();
    if (!s) return undefined;
    if (t - s.created > SESSION_MAX_MS || t - s.seen > SESSION_IDLE_MS) {
      sessions.delete(id);
      return undefined;
    }
    s.seen = t;
    return s;
  };

  const send = (res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form posts.
      'referrer-policy': 'same-origin',
      'x-frame-options': 'DENY',
      'cache-control': 'no-store',
      'strict-transport-security': 'max-age=31536000',
      ...extra,
    });
    res.end(body);
  };
  const redirect = (res: ServerResponse, to: string, extra: Record<string, string> = {}) => {
    res.writeHead(303, { location: to, 'content-security-policy': CSP, 'cache-control': 'no-store', ...extra });
    res.end();
  };

  const page = (title: string, body: string, s?: Session) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${h(title)} · bootkey</title><link rel="stylesheet" href="/static/dashboard.css"></head>
<body><header><a href="/machines">bootkey</a><a href="/machines">Machines</a><a href="/audit">Audit</a>${s ? `<form method="post" action="/logout"><input type="hidden" name="csrf" value="${h(s.csrf)}"><button type="submit">Sign out</button></form>` : ''}</header>
<main><h1>${h(title)}</h1>${body}</main></body></html>`;

  const csrfField = (s: Session) => `<input type="hidden" name="csrf" value="${h(s.csrf)}">`;

  const readBody = (req: IncomingMessage): Promise<URLSearchParams> => new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(new ServerError('BAD_REQUEST', 'form too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });

  const admin = async (req: IncomingMessage, op: string, fields: Record<string, unknown>): Promise<{ ok: true; json: unknown } | { ok: false; code: string; message: string; failures?: string[] }> => {
    const r = await o.service.handle({ t: 'admin', adminToken: o.adminToken, op, ...fields } as never, { peer: `dashboard:${req.socket.remoteAddress ?? 'unknown'}` });
    if (r.t === 'admin-result') return { ok: true, json: JSON.parse(r.json) as unknown };
    if (r.t === 'error') return { ok: false, code: r.code, message: r.message, failures: r.failures };
    return { ok: false, code: 'INTERNAL', message: `unexpected reply ${r.t}` };
  };

  // ---------- pages ----------

  const loginPage = (msg = '') => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in · bootkey</title><link rel="stylesheet" href="/static/dashboard.css"></head>
<body><div class="login"><h1>bootkey</h1><p>Sign in with the server's admin token (STATE/admin.token).</p>${msg ? `<p class="warn">${h(msg)}</p>` : ''}
<form method="post" action="/login"><input type="password" name="token" autocomplete="current-password" aria-label="admin token" autofocus><button type="submit">Sign in</button></form></div></body></html>`;

  const policyLine = (m: MachineRecord): { summary: string } => {
    try {
      const p = JSON.parse(m.policy) as Policy;
      const rules = Object.keys(p.rules ?? {}).join(', ') || 'none';
      return { summary: `${p.bank} PCRs ${(p.pcrs ?? []).join(',')}; ${rules}` };
    } catch {
      return { summary: '(unreadable policy)' };
    }
  };

  const machinesPage = async (url: URL, s: Session): Promise<string> => {
    const q = (url.searchParams.get('q') ?? '').slice(0, 100).toLowerCase();
    const state = url.searchParams.get('state') ?? '';
    const result = url.searchParams.get('result') ?? '';
    const pageNo = Math.max(0, Math.min(100000, Number(url.searchParams.get('page') ?? '0') | 0));
    let ms = await o.service.store.listMachines();
    const total = ms.length;
    ms = ms.filter((m) => (!state || m.state === state)
      && (!result || (result === 'refused' ? (m.lastResult ?? '').startsWith('refused') : (m.lastResult ?? '') === result))
      && (!q || m.id.includes(q) || m.hostname.toLowerCase().includes(q)));
    // Refused first, then the most recent.
    ms.sort((a, b) => Number((b.lastResult ?? '').startsWith('refused')) - Number((a.lastResult ?? '').startsWith('refused')) || (b.lastTime ?? 0) - (a.lastTime ?? 0));
    const shown = ms.slice(pageNo * PAGE_SIZE, (pageNo + 1) * PAGE_SIZE);
    // Staged boots per machine (pending / active), in one store query.
    const stagedCount = new Map<string, { pending: number; active: number }>();
    for (const x of await o.service.store.listStaged()) {
      if (x.state !== 'pending' && x.state !== 'active') continue;
      const c = stagedCount.get(x.machine) ?? { pending: 0, active: 0 };
      c[x.state]++;
      stagedCount.set(x.machine, c);
    }
    // Runtime (IMA) attestation state per machine, in one store query (runtime.ts: off, new, attesting, failed, stale).
    const now = Date.now();
    const runtime = new Map((await o.service.store.listRuntime()).map((r) => [r.machine, r]));
    const sel = (name: string, cur: string, opts: string[]) => `<select name="${name}" aria-label="${name}"><option value="">any ${name}</option>${opts.map((x) => `<option${x === cur ? ' selected' : ''}>${h(x)}</option>`).join('')}</select>`;
    const rows = shown.map((m) => {
      const pl = policyLine(m);
      const res = m.lastResult ?? '';
      return `<tr><td class="mono"><a href="/machines/${h(m.id)}">${h(m.id)}</a></td><td>${h(m.hostname)}</td><td class="state-${h(m.state)}">${h(m.state)}</td>`
        + `<td class="${res.startsWith('refused') ? 'res-refused' : res === 'released' ? 'res-released' : ''}">${h(res || '–')}</td><td>${time(m.lastTime)}</td><td>${h(pl.summary)}</td>`
        + `<td>${((c) => (c ? `${c.active} active${c.pending ? `, <b>${c.pending} pending</b>` : ''}` : '–'))(stagedCount.get(m.id))}</td>`
        + `<td class="runtime-${h(runtimeView(runtime.get(m.id), now))}">${h(runtimeView(runtime.get(m.id), now))}</td></tr>`;
    }).join('\n');
    const qs = (p: number) => `?${new URLSearchParams({ q, state, result, page: String(p) }).toString()}`;
    const pages = Math.max(1, Math.ceil(ms.length / PAGE_SIZE));
    return page('Machines', `<form method="get" action="/machines"><input name="q" value="${h(q)}" placeholder="id or hostname" aria-label="search"> ${sel('state', state, ['active', 'pending', 'revoked'])} ${sel('result', result, ['released', 'refused', 'enrolled'])} <button type="submit">Filter</button></form>
<p>${ms.length} of ${total} machine(s); page ${pageNo + 1} of ${pages}${pageNo > 0 ? ` · <a href="/machines${qs(pageNo - 1)}">previous</a>` : ''}${pageNo + 1 < pages ? ` · <a href="/machines${qs(pageNo + 1)}">next</a>` : ''}</p>
<table id="machines"><thead><tr><th>Machine</th><th>Hostname</th><th>State</th><th>Last result</th><th>Last time (UTC)</th><th>Policy</th><th>Staged boots</th><th>Runtime</th></tr></thead><tbody>
${rows || '<tr><td colspan="8">(no machines)</td></tr>'}</tbody></table>`, s);
  };

  const diffTable = (d: BootDiff): string => {
    const cell = (r: DiffRow) => `<td>${r.pcr ?? ''}</td><td>${r.event ?? ''}</td><td>${r.expected ? `${h(r.expected.label)}<div class="mono">${r.expected.values.map((v) => h(short(v, 64))).join('<br>') || '(none)'}</div>` : ''}</td>`
      + `<td>${r.actual ? `${h(r.actual.label)}<div class="mono">${h(short(r.actual.value, 64))}</div>` : ''}</td>`;
    const mark: Record<string, string> = { same: '=', changed: '≠', removed: '−', added: '+', failed: '!' };
    return d.sections.map((sec) => `<h3>${h(sec.title)}${sec.ruled ? '' : ' <span class="badge">no rule in the policy</span>'}</h3>
<table class="diff"><thead><tr><th></th><th>PCR</th><th>Event</th><th>Policy</th><th>This boot</th></tr></thead><tbody>
${sec.rows.map((r) => `<tr class="${r.status}"><td title="${r.status}">${mark[r.status]}</td>${cell(r)}</tr>`).join('\n') || '<tr><td colspan="5">(nothing measured)</td></tr>'}</tbody></table>`).join('\n');
  };

  const refusedDiff = (m: MachineRecord, rb: RefusedBoot, policy: Policy): { html: string; verified: boolean } => {
    let tl: TrustedLog;
    let note = '';
    let verified = true;
    try {
      const log = parseEventLog(rb.eventLog);
      try {
        tl = bindLogToQuote(log, pcrValuesFromJson(JSON.parse(rb.pcrs)), { skipPcr: m.releasedPcr });
      } catch (e) {
        tl = unverifiedLog(log);
        verified = false;
        note = `<p class="warn">UNVERIFIED: this log does not replay to the quoted PCR values (${h((e as Error).message)}); the rows below are what the log claims, not what the TPM measured.</p>`;
      }
    } catch (e) {
      return { html: `<p class="warn">The kept log does not parse: ${h((e as Error).message)}</p>`, verified: false };
    }
    const d = diffBoot(policy, tl);
    const fails = d.failures.length ? `<ul id="failures">${d.failures.map((f) => `<li><b>${h(f.rule)}</b>: ${h(f.message)}</li>`).join('')}</ul>` : '<p>The current policy passes this boot (the policy changed since the refusal).</p>';
    return { html: `${note}<p>Refused ${time(rb.time)} with <b>${h(rb.code)}</b>; event log ${rb.eventLog.length} bytes; bank ${h(d.bank)}. Rows: = same, ≠ changed, − in the policy only, + in this boot only; each PCR's events aligned by digest.</p>${fails}<div id="diff">${diffTable(d)}</div>`, verified };
  };

  const machinePage = async (id: string, s: Session, flash = ''): Promise<string | undefined> => {
    const m = await o.service.store.getMachine(id);
    if (!m) return undefined;
    let policy: Policy | undefined;
    try {
      policy = parsePolicy(m.policy);
    } catch {
      policy = undefined;
    }
    const rb = await o.service.store.getRefusedBoot(m.id);
    const info = [['Machine', m.id], ['Hostname', m.hostname], ['machine-id', m.machineId], ['State', m.state], ['Released PCR', m.releasedPcr], ['Enrolled', time(m.created)], ['Updated', time(m.updated)],
      ['Last result', m.lastResult ?? '–'], ['Last time', time(m.lastTime)], ['EK name', m.ekName.toString('hex')], ['AK name', m.akName.toString('hex')]]
      .map(([k, v]) => `<tr><th>${h(k)}</th><td class="${k === 'State' ? `state-${h(v)}` : String(k).endsWith('name') ? 'mono' : ''}">${h(v)}</td></tr>`).join('');
    const reasons = m.lastReasons?.length ? `<h2>Last failure reasons</h2><ul>${m.lastReasons.map((r) => `<li>${h(r)}</li>`).join('')}</ul>` : '';
    const act = (op: string, label: string) => `<form class="inline" method="post" action="/machines/${h(m.id)}/${op}">${csrfField(s)}<button type="submit" id="${op}">${label}</button></form>`;
    let diff = '';
    let accept = '';
    if (rb && policy) {
      const r = refusedDiff(m, rb, policy);
      diff = `<h2>Last refused boot against the policy</h2>${r.html}`;
      if (r.verified) accept = act('add-boot', 'Accept the refused boot into the policy');
    } else if ((m.lastResult ?? '').startsWith('refused')) {
      diff = '<h2>Last refused boot</h2><p>No event log kept: the refusal was decided before the quote verified (e.g. NONCE, SIGNATURE, RATE_LIMITED), or the server that refused it predates this feature.</p>';
    }
    // Boots the machine staged for itself (bootkey stage, src/server/staging.ts): approve a pending
    // one, drop a pending or active one — the same admin operations as `bootkey admin staged`.
    const stagedRows = await o.service.store.listStaged(m.id);
    const stagedAct = (x: StagedRecord, op: 'approve' | 'drop') =>
      `<form class="inline" method="post" action="/machines/${h(m.id)}/staged/${h(x.id)}/${op}">${csrfField(s)}<button type="submit" id="staged-${op}-${h(x.id)}">${op === 'approve' ? 'Approve' : 'Drop'}</button></form>`;
    const staged = stagedRows.length
      ? `<h2>Staged boots</h2><table id="staged"><thead><tr><th>Id</th><th>State</th><th>Label</th><th>Mode</th><th>Staged</th><th>What it allows</th><th></th></tr></thead><tbody>${stagedRows.map((x) =>
        `<tr><td class="mono">${h(x.id)}</td><td class="state-${h(x.state)}">${h(x.state)}${x.used ? ' (used)' : ''}</td><td>${h(x.label)}</td><td>${h(x.mode)}</td><td>${time(x.created)}</td><td>${x.summary.map(h).join('<br>')}</td>`
        + `<td>${x.state === 'pending' ? stagedAct(x, 'approve') : ''} ${x.state === 'pending' || x.state === 'active' ? stagedAct(x, 'drop') : ''}</td></tr>`).join('')}</tbody></table>`
      : '<h2>Staged boots</h2><p id="staged-none">None: the machine has not staged a boot for itself (bootkey stage; docs/UPDATES.md).</p>';
    const rt = await o.service.store.getRuntime(m.id);
    const rv = runtimeView(rt, Date.now());
    const runtimeHtml = `<h2>Runtime attestation (IMA)</h2><p id="runtime">State <b class="runtime-${h(rv)}">${h(rv)}</b>${rt ? `; ${rt.count} entries verified this boot; last report ${time(rt.lastReport)}; stale limit ${rt.staleLimit ? `${rt.staleLimit} s` : 'off'}` : ''}${rv === 'off' ? ' (no runtime policy: bootkey admin set-runtime-policy)' : ''}</p>`
      + (rt?.state === 'failed' ? `<p class="warn">${h(rt.reason ?? 'failed')} (since ${time(rt.failedAt)}): the next boot is refused RUNTIME_FAILED until <code>bootkey admin clear ${h(m.id)}</code></p><ul>${rt.failures.map((f) => `<li class="mono">${h(f)}</li>`).join('')}</ul>` : '');
    const actions = `<h2>Actions</h2><p>${m.state === 'revoked' ? act('unrevoke', 'Unrevoke') : act('revoke', 'Revoke')} ${accept}</p>`;
    const summary = policy ? `<h2>Policy</h2><p>Bank ${h(policy.bank)}, PCRs ${h(policy.pcrs.join(','))}; rules: ${h(Object.keys(policy.rules).join(', ') || 'none')}${policy.rules.bootChain ? `; boot chain ${h(policy.rules.bootChain.stages.map((x) => x.role).join(' → '))}` : ''}</p>` : '<p class="warn">The stored policy does not parse.</p>';
    return page(`Machine ${m.hostname}`, `${flash}<table class="info">${info}</table>${reasons}${actions}${summary}${runtimeHtml}${diff}${staged}
<p><a href="/audit?machine=${encodeURIComponent(m.id)}">Audit trail of this machine</a></p>`, s);
  };

  const auditPage = async (url: URL, s: Session): Promise<string> => {
    const machine = (url.searchParams.get('machine') ?? '').slice(0, 64);
    const action = (url.searchParams.get('action') ?? '').slice(0, 64);
    const result = (url.searchParams.get('result') ?? '').slice(0, 16);
    const code = (url.searchParams.get('code') ?? '').slice(0, 64);
    const limit = Math.max(1, Math.min(5000, Number(url.searchParams.get('limit') ?? '500') | 0));
    const rows = (await o.service.store.queryAudit({ machine: machine || undefined, limit: action || result || code ? 100000 : limit }))
      .filter((a) => (!action || a.action === action) && (!result || a.result === result) && (!code || a.code === code))
      .slice(-limit).reverse();
    const inp = (n: string, v: string, ph: string) => `<input name="${n}" value="${h(v)}" placeholder="${ph}" aria-label="${n}">`;
    return page('Audit trail', `<form method="get" action="/audit">${inp('machine', machine, 'machine id')} ${inp('action', action, 'action (release, attest-finish, admin-revoke…)')} ${inp('result', result, 'ok / refused')} ${inp('code', code, 'code')} ${inp('limit', String(limit), 'limit')} <button type="submit">Filter</button></form>
<p>${rows.length} entr${rows.length === 1 ? 'y' : 'ies'}, newest first.</p>
<table id="audit"><thead><tr><th>#</th><th>Time (UTC)</th><th>Who</th><th>Action</th><th>Machine</th><th>Result</th><th>Code</th><th>Peer</th><th>Reasons</th></tr></thead><tbody>
${rows.map((a) => `<tr><td>${a.seq}</td><td>${time(a.time)}</td><td>${h(a.who)}</td><td>${h(a.action)}</td><td class="mono">${a.machine ? `<a href="/machines/${h(a.machine)}">${h(a.machine)}</a>` : ''}</td><td class="${a.result === 'refused' ? 'res-refused' : ''}">${h(a.result)}</td><td>${h(a.code ?? '')}</td><td>${h(a.peer ?? '')}</td><td>${(a.reasons ?? []).map((r) => h(r)).join('<br>')}</td></tr>`).join('\n') || '<tr><td colspan="9">(no entries)</td></tr>'}</tbody></table>`, s);
  };

  // ---------- routing ----------

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://dashboard.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/static/dashboard.css') {
      res.writeHead(200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'max-age=3600', 'x-content-type-options': 'nosniff', 'content-security-policy': CSP });
      res.end(STYLE);
      return;
    }
    if (method === 'GET' && path === '/favicon.ico') {
      res.writeHead(204, { 'cache-control': 'max-age=86400' });
      res.end();
      return;
    }
    if (path === '/login') {
      if (method === 'GET') return send(res, 200, loginPage());
      if (method !== 'POST') return send(res, 405, 'method not allowed');
      const peer = req.socket.remoteAddress ?? 'unknown';
      if (!loginLimiter.take(peer)) return send(res, 429, loginPage('Too many sign-in attempts; wait a minute.'));
      const body = await readBody(req);
      const token = body.get('token') ?? '';
      if (!ctEqualSecret(token, o.adminToken)) {
        log(`event=dashboard-login result=refused peer=${peer}`);
        return send(res, 403, loginPage('Admin token refused.'));
      }
      if (sessions.size >= MAX_SESSIONS) for (const [k, v] of sessions) if (now() - v.seen > SESSION_IDLE_MS || now() - v.created > SESSION_MAX_MS) sessions.delete(k);
      if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
      const s: Session = { id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), created: now(), seen: now() };
      sessions.set(s.id, s);
      log(`event=dashboard-login result=ok peer=${peer}`);
      return redirect(res, '/machines', { 'set-cookie': `${SESSION_COOKIE}=${s.id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${SESSION_MAX_MS / 1000}` });
    }
    const s = getSession(req);
    if (!s) {
      if (method === 'GET') return redirect(res, '/login');
      return send(res, 403, page('Forbidden', '<p>Sign in first.</p>'));
    }
    if (method === 'POST') {
      const org = req.headers.origin;
      if (org !== undefined && org !== `https://${req.headers.host ?? ''}`) return send(res, 403, page('Forbidden', '<p>Cross-origin request refused.</p>', s));
      const body = await readBody(req);
      if (!ctEqualSecret(body.get('csrf') ?? '', s.csrf)) return send(res, 403, page('Forbidden', '<p>Missing or wrong CSRF token: reload the page.</p>', s));
      if (path === '/logout') {
        sessions.delete(s.id);
        return redirect(res, '/login', { 'set-cookie': `${SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0` });
      }
      const sm = /^\/machines\/(m-[0-9a-f]{16})\/staged\/(s-[0-9a-f]{16})\/(approve|drop)$/.exec(path);
      if (sm) {
        const [, id, sid, sop] = sm;
        const x = await o.service.store.getStaged(sid);
        if (!x || x.machine !== id) return send(res, 404, page('Not found', `<p>No staged boot ${h(sid)} for machine ${h(id)}.</p>`, s));
        const r = await admin(req, `staged-${sop}`, { staged: sid });
        const flash = r.ok ? `<p class="warn" id="flash">staged ${h(sop)}: done.</p>` : `<p class="warn" id="flash">staged ${h(sop)} refused: ${h(r.code)}: ${h(r.message)}</p>`;
        // A refused action still renders the page (200): the refusal and its reason are the flash.
        const body2 = await machinePage(id, s, flash);
        return send(res, body2 ? 200 : 404, body2 ?? page('Not found', flash, s));
      }
      const m = /^\/machines\/(m-[0-9a-f]{16})\/(revoke|unrevoke|add-boot)$/.exec(path);
      if (!m) return send(res, 404, page('Not found', '', s));
      const [, id, op] = m;
      const fields: Record<string, unknown> = { machine: id };
      if (op === 'add-boot') {
        const rb = await o.service.store.getRefusedBoot(id);
        if (!rb) return send(res, 409, page('Conflict', '<p>No refused boot is kept for this machine.</p>', s));
        fields.eventLog = rb.eventLog;
      }
      const r = await admin(req, op, fields);
      const flash = r.ok ? `<p class="warn" id="flash">${h(op)}: done.</p>` : `<p class="warn" id="flash">${h(op)} refused: ${h(r.code)}: ${h(r.message)}${r.failures ? `<br>${r.failures.map(h).join('<br>')}` : ''}</p>`;
      const body2 = await machinePage(id, s, flash);
      return send(res, r.ok ? 200 : 409, body2 ?? page('Not found', flash, s));
    }
    if (method !== 'GET') return send(res, 405, page('Method not allowed', '', s));
    if (path === '/' ) return redirect(res, '/machines');
    if (path === '/machines') return send(res, 200, await machinesPage(url, s));
    if (path === '/audit') return send(res, 200, await auditPage(url, s));
    const mm = /^\/machines\/(m-[0-9a-f]{16})$/.exec(path);
    if (mm) {
      const body = await machinePage(mm[1], s);
      return body ? send(res, 200, body) : send(res, 404, page('Not found', `<p>No machine ${h(mm[1])}.</p>`, s));
    }
    return send(res, 404, page('Not found', '', s));
  };

  const srv = https.createServer({ key: o.key, cert: o.cert, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch((e) => {
      log(`event=dashboard-error error=${JSON.stringify((e as Error).message)}`);
      if (!res.headersSent) send(res, e instanceof ServerError && e.code === 'BAD_REQUEST' ? 400 : 500, 'error');
      else res.end();
    });
  });
  srv.headersTimeout = 10_000;
  srv.requestTimeout = 30_000;
  srv.maxConnections = 64;
  return listenSide(srv, 'dashboard', host, port, log);
}
