/**
 * `node --import tsx bench/dashboard.ts [--machines 10000]`
 *
 * The dashboard with N machines in the SQLite store (default 10 000; each with a policy
 * generated from a real QEMU boot, 5 % refused, one with a kept refused boot), in headless
 * Chromium: page weight (bytes received, HTML + CSS) and time to first render (wall clock from
 * the navigation request to the browser's first-contentful-paint lifecycle event; and the
 * server's time to first byte) for the
 * machine list, a refused machine's diff page and the audit page. Last line: one JSON object.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initState } from '../src/server/pki.ts';
import { startServer } from '../src/server/server.ts';
import { SqliteStore } from '../src/server/store-sqlite.ts';
import { generatePolicy } from '../src/measuredboot/policy.ts';
import { unverifiedLog } from '../src/measuredboot/trusted.ts';
import { parseEventLog } from '../src/measuredboot/eventlog.ts';
import { Browser } from '../test/helpers/cdp.ts';

const argv = process.argv.slice(2);
const N = Number(argv[argv.indexOf('--machines') + 1] ?? 10000) || 10000;
const QEMU = new URL('../test/data/qemu/', import.meta.url);
const sdboot = readFileSync(new URL('sdboot-sb-off.bin', QEMU));
const uki = readFileSync(new URL('uki-sb-off.bin', QEMU));
const policy = JSON.stringify(generatePolicy(unverifiedLog(parseEventLog(sdboot))));

const dir = join(mkdtempSync(join(tmpdir(), 'bootkey-dash-bench-')), 'state');
await initState(dir, { sans: [] });
const t0 = Date.now();
{
  const st = new SqliteStore(join(dir, 'bootkey.db'));
  await st.migrate();
  const ins = st.db.transaction(() => {
    for (let i = 0; i < N; i++) {
      const id = `m-${i.toString(16).padStart(16, '0')}`;
      const refused = i % 20 === 0;
      const now = Date.now() - (N - i) * 1000;
      void st.createMachine({
        id, machineId: randomBytes(16).toString('hex'), hostname: `node-${i}.fleet.example`, ekPublic: randomBytes(64), ekName: randomBytes(34), akPublic: randomBytes(64), akName: randomBytes(34),
        policy, shareSealed: randomBytes(60), state: 'active', releasedPcr: 15, created: now, updated: now,
        lastResult: refused ? 'refused:POLICY' : 'released', lastTime: now, lastReasons: refused ? ['boot-chain: PCR 4 event 23: …'] : undefined,
      });
      void st.audit({ time: now, who: 'machine', machine: id, action: refused ? 'attest-finish' : 'release', result: refused ? 'refused' : 'ok', code: refused ? 'POLICY' : undefined, peer: '192.0.2.1' });
    }
  });
  ins.immediate();
  const pcrs = JSON.stringify({ sha256: {} });
  await st.putRefusedBoot({ machine: 'm-0000000000000000', time: Date.now(), code: 'POLICY', eventLog: uki, pcrs });
  await st.close();
}
const fillMs = Date.now() - t0;
const srv = await startServer({ stateDir: dir, listen: '127.0.0.1:0', dashboardListen: '127.0.0.1:0' });
const base = `https://127.0.0.1:${srv.dashboardPort}`;
const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
const spki = createHash('sha256').update(new X509Certificate(readFileSync(join(dir, 'server.pem'))).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
const browser = await Browser.launch([`--ignore-certificate-errors-spki-list=${spki}`]);
const out: Record<string, unknown> = { machines: N, fillMs };
try {
  const page = await browser.newPage();
  await page.goto(`${base}/login`);
  await page.andWait(`document.querySelector('input[name=token]').value = ${JSON.stringify(token)}; document.querySelector('form').submit()`);
  const measure = async (name: string, url: string) => {
    const runs: { bytes: number; fcp: number; ttfb: number }[] = [];
    for (let i = 0; i < 3; i++) {
      await page.goto(url);
      for (let w = 0; w < 50 && page.firstContentfulPaintMs() === undefined; w++) await new Promise((r) => setTimeout(r, 100));
      const ttfb = await page.eval<number>(`(() => { const n = performance.getEntriesByType('navigation')[0]; return n.responseStart - n.requestStart; })()`);
      runs.push({ bytes: [...page.received.values()].reduce((a, b) => a + b, 0), fcp: page.firstContentfulPaintMs() ?? -1, ttfb });
    }
    const med = (k: 'bytes' | 'fcp' | 'ttfb') => runs.map((r) => r[k]).sort((a, b) => a - b)[1];
    out[name] = { bytes: med('bytes'), firstContentfulPaintMs: Math.round(med('fcp')), serverTtfbMs: Math.round(med('ttfb')) };
    process.stdout.write(`${name}: ${(med('bytes') / 1024).toFixed(1)} KiB received, first contentful paint ${med('fcp').toFixed(0)} ms, server TTFB ${med('ttfb').toFixed(0)} ms (median of 3)\n`);
    if (page.errors.length) throw new Error(`console errors: ${page.errors.join('; ')}`);
  };
  await measure('machineList', `${base}/machines`);
  await measure('machineListFiltered', `${base}/machines?result=refused`);
  await measure('refusedMachineDiff', `${base}/machines/m-0000000000000000`);
  await measure('audit', `${base}/audit`);
} finally {
  await browser.close();
  await srv.close();
  rmSync(join(dir, '..'), { recursive: true, force: true });
  rmSync(`${dir}-ca`, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + '\n');
