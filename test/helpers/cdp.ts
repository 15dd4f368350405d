/**
 * A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe` (fd 3 in, fd 4 out,
 * NUL-separated JSON): headless Debian `chromium` driven without puppeteer or a WebSocket
 * library, and without any browser download. Enough for the dashboard tests: open a page,
 * navigate, evaluate, click, screenshot, and collect console errors and CSP violations.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

type Handler = (params: Record<string, unknown>, sessionId?: string) => void;

export class Browser {
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; method: string }>();
  private handlers = new Map<string, Handler[]>();
  private buf = '';
  private constructor(private proc: ChildProcess, private input: Writable, output: Readable, private profile: string) {
    output.setEncoding('utf8');
    output.on('data', (chunk: string) => {
      this.buf += chunk;
      let i;
      while ((i = this.buf.indexOf('\0')) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, i)) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown>; sessionId?: string };
        this.buf = this.buf.slice(i + 1);
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
          else p?.resolve(msg.result ?? {});
        } else if (msg.method) for (const h of this.handlers.get(msg.method) ?? []) h(msg.params ?? {}, msg.sessionId);
      }
    });
  }

  /** Starts headless chromium; `args` are extra flags (e.g. --ignore-certificate-errors-spki-list=...). */
  static async launch(args: string[] = []): Promise<Browser> {
    if (!CHROMIUM) throw new Error('chromium is not installed (apt-get install chromium; scripts/setup.sh)');
    const profile = mkdtempSync(join(tmpdir(), 'bootkey-chromium-'));
    const proc = spawn(CHROMIUM, ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
      '--disable-extensions', '--disable-background-networking', '--disable-sync', '--remote-debugging-pipe', `--user-data-dir=${profile}`, ...args, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const b = new Browser(proc, proc.stdio[3] as Writable, proc.stdio[4] as Readable, profile);
    const exited = new Promise<never>((_, rej) => proc.once('exit', (c) => rej(new Error(`chromium exited (${c}): ${stderr}`))));
    await Promise.race([b.send('Browser.getVersion'), exited, new Promise((_, rej) => setTimeout(() => rej(new Error(`chromium did not answer: ${stderr}`)), 30_000))]);
    return b;
  }

  on(method: string, h: Handler): void {
    this.handlers.set(method, [...(this.handlers.get(method) ?? []), h]);
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.input.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  }

  async newPage(): Promise<Page> {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' }) as { targetId: string };
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true }) as { sessionId: string };
    const p = new Page(this, sessionId);
    await p.init();
    return p;
  }

  async close(): Promise<void> {
    await this.send('Browser.close').catch(() => undefined);
    await new Promise((r) => {
      if (this.proc.exitCode !== null) r(undefined);
      this.proc.once('exit', r);
      setTimeout(() => this.proc.kill('SIGKILL'), 5000).unref();
    });
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  /** Console errors, uncaught exceptions and error-level log entries (CSP violations land here). */
  readonly errors: string[] = [];
  /** Bytes received per navigation's resources (encodedDataLength), by URL. */
  readonly received = new Map<string, number>();
  /** The last navigation: its loader, when it was asked for, when its first contentful paint was reported (wall clock, ms). */
  private nav: { loaderId?: string; start: number; fcp?: number } = { start: 0 };
  private loadWaiters: (() => void)[] = [];
  constructor(readonly browser: Browser, readonly sessionId: string) {}

  async init(): Promise<void> {
    const b = this.browser;
    const mine = (f: Handler): Handler => (p, s) => { if (s === this.sessionId) f(p, s); };
    const urls = new Map<string, string>();
    b.on('Runtime.consoleAPICalled', mine((p) => { if (p.type === 'error' || p.type === 'assert') this.errors.push(`console.${p.type}: ${JSON.stringify(p.args)}`); }));
    b.on('Runtime.exceptionThrown', mine((p) => this.errors.push(`exception: ${JSON.stringify(p.exceptionDetails)}`)));
    b.on('Log.entryAdded', mine((p) => {
      const e = p.entry as { level: string; text: string; url?: string };
      if (e.level === 'error') this.errors.push(`log: ${e.text} ${e.url ?? ''}`);
    }));
    b.on('Network.responseReceived', mine((p) => urls.set(p.requestId as string, (p.response as { url: string }).url)));
    b.on('Network.loadingFinished', mine((p) => this.received.set(urls.get(p.requestId as string) ?? String(p.requestId), p.encodedDataLength as number)));
    b.on('Page.lifecycleEvent', mine((p) => {
      if (p.name === 'firstContentfulPaint' && p.loaderId === this.nav.loaderId && this.nav.fcp === undefined) this.nav.fcp = performance.now();
    }));
    b.on('Page.loadEventFired', mine(() => { for (const w of this.loadWaiters.splice(0)) w(); }));
    for (const d of ['Page.enable', 'Runtime.enable', 'Log.enable', 'Network.enable']) await this.send(d);
    await this.send('Network.setCacheDisabled', { cacheDisabled: true });
    await this.send('Page.setLifecycleEventsEnabled', { enabled: true });
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.browser.send(method, params, this.sessionId);
  }

  private waitLoad(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('page load timed out')), timeoutMs);
      this.loadWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  /**
   * Wall-clock ms from asking for the last navigation (goto) to the browser reporting its first
   * contentful paint (request, server, transfer, parse, style, paint); undefined if none yet.
   */
  firstContentfulPaintMs(): number | undefined {
    return this.nav.fcp === undefined ? undefined : this.nav.fcp - this.nav.start;
  }

  async goto(url: string): Promise<void> {
    this.received.clear();
    this.nav = { start: performance.now() };
    const loaded = this.waitLoad();
    const r = await this.send('Page.navigate', { url }) as { errorText?: string; loaderId?: string };
    this.nav.loaderId = r.loaderId;
    if (r.errorText) throw new Error(`navigate ${url}: ${r.errorText}`);
    await loaded;
  }

  /** Evaluates an expression in the page (from DevTools: the page's CSP does not apply). */
  async eval<T>(expression: string): Promise<T> {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }) as { result: { value: T }; exceptionDetails?: unknown };
    if (r.exceptionDetails) throw new Error(`eval ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  }

  /** Runs `action` (which submits a form or clicks a link) and waits for the next page load. */
  async andWait(expression: string): Promise<void> {
    this.received.clear();
    const loaded = this.waitLoad();
    await this.eval(expression);
    await loaded;
  }

  async screenshot(): Promise<Buffer> {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }) as { data: string };
    return Buffer.from(data, 'base64');
  }
}
