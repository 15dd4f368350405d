/**
 * The dashboard in headless Chromium (Debian's chromium over the DevTools pipe, test/helpers/cdp.ts)
 * and the metrics listener checked by promtool. One server (state from initState, swtpm machine
 * enrolled with the systemd-boot boot, then booted with the UKI boot: refused, POLICY).
 * Screenshots go to test-artifacts/dashboard/ (gitignored; the path is printed).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import https from 'node:https';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initState } from '../../src/server/pki.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import { enrolTokenHash } from '../../src/server/enrol-tokens.ts';
import { CSP } from '../../src/server/dashboard.ts';
import { Browser, CHROMIUM, type Page } from '../helpers/cdp.ts';
import { TestMachine, qemuLog, code, ENROL, ENROL_ID } from './_helpers.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'dashboard');
const SDBOOT = qemuLog('sdboot-sb-off');
const UKI = qemuLog('uki-sb-off');

let dir: string;
let srv: RunningServer;
let token: string;
let spki: string;
let mach: TestMachine;
let browser: Browser;
let page: Page;
let base: string;

function get(url: string, o: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: o.method ?? 'GET', headers: o.headers, rejectUnauthorized: false }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

test.before(async () => {
  try {
    await setup();
  } catch (e) {
    console.error('dashboard test setup failed:', e);
    throw e;
  }
});

async function setup(): Promise<void> {
  dir = join(mkdtempSync(join(tmpdir(), 'bootkey-dash-')), 'state');
  await initState(dir, { sans: [] });
  token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  spki = createHash('sha256').update(new X509Certificate(readFileSync(join(dir, 'server.pem'))).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  srv = await startServer({ stateDir: dir, listen: '127.0.0.1:0', metricsListen: '127.0.0.1:0', dashboardListen: '127.0.0.1:0', version: 'test' });
  base = `https://127.0.0.1:${srv.dashboardPort}`;
  await srv.service.store.putEnrolToken({ id: ENROL_ID, hash: enrolTokenHash(ENROL), comment: 'tests', created: Date.now(), expiresAt: Date.now() + 86400_000, uses: 10, usesLeft: 10 });
  // Enrolled with systemd-boot → kernel; then boots a UKI: refused (POLICY), its log kept.
  mach = await TestMachine.start(SDBOOT);
  await mach.enrollAndCommit(srv.service);
  await mach.reboot(UKI);
  const a = await mach.attest(srv.service);
  assert.is(code(a.reply), 'POLICY');
  mkdirSync(ARTIFACTS, { recursive: true });
}

test.after(async () => {
  await browser?.close();
  await mach?.stop();
  await srv?.close();
  rmSync(join(dir, '..'), { recursive: true, force: true });
  rmSync(`${dir}-ca`, { recursive: true, force: true });
});

test('the store kept the refused boot (latest only, with its quoted values)', async () => {
  const rb = await srv.service.store.getRefusedBoot(mach.id);
  assert.ok(rb);
  assert.is(rb!.code, 'POLICY');
  assert.ok(rb!.eventLog.equals(UKI));
  assert.ok(Object.keys(JSON.parse(rb!.pcrs).sha256).includes('4'));
});

test('metrics: promtool check metrics passes; refusals by code, gauges from the store', async () => {
  const r = await get(`http://127.0.0.1:${srv.metricsPort}/metrics`);
  assert.is(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  writeFileSync(join(ARTIFACTS, 'metrics.txt'), r.body);
  const p = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8' });
  assert.ok(!p.error, 'promtool is installed (Debian prometheus; scripts/setup.sh)');
  assert.is(p.status, 0, `promtool: ${p.stdout}${p.stderr}`);
  assert.match(r.body, /^bootkey_refusals_total\{request="attest-finish",code="POLICY"\} 1$/m);
  assert.match(r.body, /^bootkey_machines\{state="active"\} 1$/m);
  assert.match(r.body, /^bootkey_machines_failed 1$/m);
  assert.match(r.body, /^bootkey_verification_seconds_count 1$/m);
  assert.match(r.body, /^bootkey_store_seconds_count\{op="getMachine"\} \d+$/m);
  assert.match(r.body, /^bootkey_rate_limited_total\{scope="peer"\} 0$/m);
  assert.match(r.body, /^bootkey_build_info\{version="test"\} 1$/m);
  assert.not.match(r.body, new RegExp(mach.id), 'no machine ids in the metrics');
  assert.is((await get(`http://127.0.0.1:${srv.metricsPort}/`)).status, 404);
});

test('5. without a session: pages redirect to sign-in, actions are refused (no state change)', async () => {
  for (const p of ['/machines', `/machines/${mach.id}`, '/audit']) {
    const r = await get(base + p);
    assert.is(r.status, 303, p);
    assert.is(r.headers.location, '/login');
    assert.not.match(r.body, new RegExp(mach.id));
  }
  const post = await get(`${base}/machines/${mach.id}/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'csrf=x' });
  assert.is(post.status, 403);
  assert.is((await srv.service.store.getMachine(mach.id))!.state, 'active');
  const bad = await get(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=wrong' });
  assert.is(bad.status, 403);
  assert.is(bad.headers['set-cookie'], undefined);
  const login = await get(base + '/login');
  assert.is(login.headers['content-security-policy'], CSP);
});

test('1. sign in (headless Chromium)', async () => {
  if (!CHROMIUM) assert.unreachable('chromium is not installed (Debian chromium; scripts/setup.sh)');
  browser = await Browser.launch([`--ignore-certificate-errors-spki-list=${spki}`]);
  page = await browser.newPage();
  await page.goto(`${base}/machines`);
  assert.match(await page.eval<string>('location.pathname'), /^\/login$/);
  writeFileSync(join(ARTIFACTS, '0-login.png'), await page.screenshot());
  await page.andWait(`document.querySelector('input[name=token]').value = ${JSON.stringify(token)}; document.querySelector('form').submit()`);
  assert.is(await page.eval<string>('location.pathname'), '/machines');
  const rows = await page.eval<string[]>(`[...document.querySelectorAll('#machines tbody tr')].map((r) => r.innerText)`);
  assert.is(rows.length, 1);
  assert.match(rows[0], new RegExp(`${mach.id}\\s+test-host\\s+active\\s+refused:POLICY`));
  writeFileSync(join(ARTIFACTS, '1-machines.png'), await page.screenshot());
});

test('2. open the refused machine: its boot diffed against the policy, event by event', async () => {
  await page.andWait(`document.querySelector('#machines a[href="/machines/${mach.id}"]').click()`);
  const pcr4 = await page.eval<string[][]>(`(() => { const h = [...document.querySelectorAll('#diff h3')].find((x) => x.textContent.startsWith('PCR 4'));
    return [...h.nextElementSibling.querySelectorAll('tbody tr')].map((r) => [r.className, r.innerText]); })()`);
  assert.equal(pcr4.map((r) => r[0]), ['changed', 'same'], JSON.stringify(pcr4));
  assert.match(pcr4[0][1], /bootloader/);
  assert.match(pcr4[0][1], /\\EFI\\BOOT\\BOOTX64\.EFI/);
  assert.match(pcr4[0][1], /680da84c/, 'the UKI\'s digest');
  const fails = await page.eval<string>(`document.querySelector('#failures').innerText`);
  assert.match(fails, /boot-chain: .*\(bootloader\) has digest 680da84c/);
  assert.ok(await page.eval<boolean>(`!!document.querySelector('#staged-none')`), 'staged boots: none yet, said so');
  writeFileSync(join(ARTIFACTS, '2-machine-diff.png'), await page.screenshot());
});

test('3. revoke it from the dashboard: the next release is refused (REVOKED), audited as the dashboard', async () => {
  await page.andWait(`document.querySelector('#revoke').click()`);
  assert.match(await page.eval<string>(`document.querySelector('#flash').innerText`), /revoke: done/);
  assert.is((await srv.service.store.getMachine(mach.id))!.state, 'revoked');
  assert.is(code((await mach.attest(srv.service)).reply), 'REVOKED');
  const audit = await srv.service.store.queryAudit({ machine: mach.id });
  const rev = audit.find((a) => a.action === 'admin-revoke');
  assert.ok(rev && rev.peer?.startsWith('dashboard:'));
  writeFileSync(join(ARTIFACTS, '3-revoked.png'), await page.screenshot());
  await page.goto(`${base}/audit?machine=${mach.id}&action=admin-revoke`);
  const rows = await page.eval<string[]>(`[...document.querySelectorAll('#audit tbody tr')].map((r) => r.innerText)`);
  assert.is(rows.length, 1, 'the audit filter keeps only admin-revoke');
  writeFileSync(join(ARTIFACTS, '4-audit.png'), await page.screenshot());
});

test('CSRF: a POST with the session cookie but without the token, or from another origin, is refused', async () => {
  const cookies = await page.send('Network.getCookies', { urls: [base] }) as { cookies: { name: string; value: string; httpOnly: boolean; secure: boolean; sameSite: string }[] };
  const c = cookies.cookies.find((x) => x.name === 'bk_session')!;
  assert.ok(c.httpOnly && c.secure);
  assert.is(c.sameSite, 'Strict');
  const h = { 'content-type': 'application/x-www-form-urlencoded', cookie: `bk_session=${c.value}` };
  assert.is((await get(`${base}/machines/${mach.id}/unrevoke`, { method: 'POST', headers: h, body: 'csrf=wrong' })).status, 403);
  const csrf = await page.eval<string>(`document.querySelector('input[name=csrf]').value`);
  assert.is((await get(`${base}/machines/${mach.id}/unrevoke`, { method: 'POST', headers: { ...h, origin: 'https://evil.example' }, body: `csrf=${csrf}` })).status, 403);
  assert.is((await srv.service.store.getMachine(mach.id))!.state, 'revoked');
});

test('unrevoke, then "accept the refused boot into the policy": its boot chain is merged (audited as the dashboard)', async () => {
  await page.goto(`${base}/machines/${mach.id}`);
  await page.andWait(`document.querySelector('#unrevoke').click()`);
  assert.is((await srv.service.store.getMachine(mach.id))!.state, 'active');
  await page.andWait(`document.querySelector('#add-boot').click()`);
  assert.match(await page.eval<string>(`document.querySelector('#flash').innerText`), /add-boot: done/);
  const p = JSON.parse((await srv.service.store.getMachine(mach.id))!.policy) as { rules: { bootChain: { stages: { allowed: { digest: string }[] }[] } } };
  assert.ok(p.rules.bootChain.stages[0].allowed.some((x) => x.digest.startsWith('680da84c')), 'the UKI is now an allowed first stage');
  // The next attestation has no boot-chain failure any more. (It is still refused: the systemd-boot
  // boot measured its command line as text, the UKI's stub only by digest, and a policy listing a
  // text command line requires text: a limit of add-boot across boot-loader styles, not of the dashboard.)
  const a = await mach.attest(srv.service);
  assert.ok(a.reply.t !== 'error' || !(a.reply.failures ?? []).some((f) => f.startsWith('boot-chain')), JSON.stringify(a.reply));
  assert.ok((await srv.service.store.queryAudit({ machine: mach.id })).some((x) => x.action === 'admin-add-boot' && x.peer?.startsWith('dashboard:')));
});

test('staged boots: listed on the machine page; approve and drop go through the admin operations (refusal reasons shown)', async () => {
  const now = Date.now();
  const mk = (id: string) => ({ id, machine: mach.id, state: 'pending' as const, created: now, updated: now, label: `test ${id}`, mode: 'any', prediction: '{}', knownGood: {}, summary: ['boot-chain: a test digest'], used: false, unused: 0 });
  const a = 's-00000000000000a1', b = 's-00000000000000b2';
  await srv.service.store.putStaged(mk(a));
  await srv.service.store.putStaged(mk(b));
  await page.goto(`${base}/machines`);
  assert.match(await page.eval<string>(`document.body.innerText`), /2 pending/);
  await page.goto(`${base}/machines/${mach.id}`);
  assert.is(await page.eval<number>(`document.querySelectorAll('#staged tbody tr').length`), 2);
  // This prediction is not a boot: approve is refused by the server, with its reason, and nothing changes.
  await page.andWait(`document.querySelector('#staged-approve-${a}').click()`);
  assert.match(await page.eval<string>(`document.querySelector('#flash').innerText`), /staged approve refused: BAD_PREDICTION: /);
  assert.is((await srv.service.store.getStaged(a))!.state, 'pending');
  await page.andWait(`document.querySelector('#staged-drop-${b}').click()`);
  assert.match(await page.eval<string>(`document.querySelector('#flash').innerText`), /staged drop: done/);
  assert.is((await srv.service.store.getStaged(b))!.state, 'dropped');
  assert.ok((await srv.service.store.queryAudit({ machine: mach.id })).some((x) => x.action === 'admin-staged-drop' && x.peer?.startsWith('dashboard:')) || (await srv.service.store.queryAudit({})).some((x) => x.action === 'admin-staged-drop'));
  writeFileSync(join(ARTIFACTS, '5-staged.png'), await page.screenshot());
});

test('4. no console errors (nor CSP violations) on any page', async () => {
  assert.equal(page.errors, []);
  process.stdout.write(`\n  dashboard screenshots and metrics: ${ARTIFACTS}\n`);
});

test.run();
