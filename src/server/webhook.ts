/**
 * What a runtime failure sets off besides the audit entry and the boot gate (issue 12 §4): a
 * webhook (HTTP POST of JSON to a configured URL, signed with HMAC-SHA256 over the body in the
 * `X-Bootkey-Signature: sha256=<hex>` header, retried with exponential backoff) and an optional
 * command hook (the event as JSON on stdin, BOOTKEY_EVENT and BOOTKEY_MACHINE in its
 * environment, no shell, bounded run time). Both run in the background: a slow receiver never
 * delays a reply. Nothing secret is in an event (machine id, hostname, reason, failing entries).
 * @module
 */
import { createHmac, randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';

export interface RuntimeEvent {
  event: 'runtime-failed';
  machine: string;
  hostname: string;
  /** ISO 8601. */
  time: string;
  reason: string;
  /** One line per failing entry ("entry 1432 /usr/bin/x: …"), bounded. */
  failures: string[];
}

export interface NotifierOptions {
  /** http(s) URL of the webhook; none: no webhook. */
  url?: string;
  /** HMAC-SHA256 key; without it the signature header is absent. */
  secret?: Buffer;
  /** Deliveries tried before giving up; default 5. */
  attempts?: number;
  /** First backoff (doubles each attempt); default 1000 ms. */
  backoffMs?: number;
  /** Per-request timeout; default 5000 ms. */
  timeoutMs?: number;
  /** Executable run once per event (no shell); none: no hook. */
  command?: string;
  /** The hook's time limit; default 30 s. */
  commandTimeoutMs?: number;
  log?: (line: string) => void;
  /** Delivery results (ok / failed) for the metrics. */
  onResult?: (kind: 'webhook' | 'hook', ok: boolean) => void;
}

/** The signature header's value: `sha256=` + hex HMAC-SHA256(secret, body). */
export function webhookSignature(secret: Buffer, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export class Notifier {
  constructor(private readonly o: NotifierOptions) {}

  get enabled(): boolean {
    return !!(this.o.url || this.o.command);
  }

  /** Sends the webhook and runs the hook; resolves when both are done (the service does not wait). */
  async notify(ev: RuntimeEvent): Promise<void> {
    await Promise.all([this.o.url ? this.post(ev) : undefined, this.o.command ? this.run(ev) : undefined]);
  }

  private log(fields: string): void {
    this.o.log?.(fields);
  }

  async post(ev: RuntimeEvent): Promise<boolean> {
    const body = Buffer.from(JSON.stringify(ev), 'utf8');
    const delivery = randomUUID();
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'bootkey-server', 'x-bootkey-event': ev.event, 'x-bootkey-delivery': delivery };
    if (this.o.secret) headers['x-bootkey-signature'] = webhookSignature(this.o.secret, body);
    const attempts = this.o.attempts ?? 5;
    let backoff = this.o.backoffMs ?? 1000;
    for (let i = 1; i <= attempts; i++) {
      let why: string;
      try {
        const r = await fetch(this.o.url!, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000), redirect: 'error' });
        await r.arrayBuffer().catch(() => undefined);
        if (r.ok) {
          this.log(`event=webhook result=ok machine=${ev.machine} delivery=${delivery} attempt=${i} status=${r.status}`);
          this.o.onResult?.('webhook', true);
          return true;
        }
        why = `HTTP ${r.status}`;
      } catch (e) {
        why = (e as Error).message;
      }
      this.log(`event=webhook result=retry machine=${ev.machine} delivery=${delivery} attempt=${i} reason=${JSON.stringify(why)}`);
      if (i < attempts) {
        await sleep(backoff * (0.75 + Math.random() * 0.5));
        backoff = Math.min(backoff * 2, 60_000);
      }
    }
    this.log(`event=webhook result=failed machine=${ev.machine} delivery=${delivery} attempts=${attempts}`);
    this.o.onResult?.('webhook', false);
    return false;
  }

  run(ev: RuntimeEvent): Promise<boolean> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok: boolean, what: string): void => {
        if (done) return;
        done = true;
        this.log(`event=runtime-hook result=${ok ? 'ok' : 'failed'} machine=${ev.machine} ${what}`);
        this.o.onResult?.('hook', ok);
        resolve(ok);
      };
      const child = spawn(this.o.command!, [], {
        stdio: ['pipe', 'ignore', 'ignore'], shell: false,
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', BOOTKEY_EVENT: ev.event, BOOTKEY_MACHINE: ev.machine },
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(false, `reason="timed out after ${this.o.commandTimeoutMs ?? 30_000} ms"`);
      }, this.o.commandTimeoutMs ?? 30_000);
      timer.unref();
      child.on('error', (e) => { clearTimeout(timer); finish(false, `reason=${JSON.stringify(e.message)}`); });
      child.on('exit', (code, sig) => { clearTimeout(timer); finish(code === 0, `status=${code ?? sig}`); });
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify(ev) + '\n');
    });
  }
}
