/**
 * The runtime pieces on their own: the agent's chunking (fast-check: any list, any split point,
 * any chunk size gives contiguous chunks at entry boundaries that concatenate to the tail),
 * the boot gate and the stale view (pure), the webhook's retries and the command hook.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import http from 'node:http';
import { mkdtempSync, writeFileSync, readFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunkEntries, nextDelayMs, bankOfListFile, AgentError } from '../../src/agent/agent.ts';
import { bootGate, runtimeView } from '../../src/server/runtime.ts';
import { emptyRuntime } from '../../src/server/store.ts';
import { Notifier, webhookSignature, type RuntimeEvent } from '../../src/server/webhook.ts';
import { binaryEntry, imaNgData, fileDigest } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'bootkey-runtime-units-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('chunkEntries: contiguous chunks at entry boundaries, each within the limit, concatenating to the entries from `from`', () => {
  fc.assert(fc.property(fc.array(fc.string({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 60 }), fc.nat(70), fc.integer({ min: 400, max: 5000 }), (paths, from, max) => {
    const entries = paths.map((p) => binaryEntry(imaNgData(`/${p}`, fileDigest(p))));
    const list = Buffer.concat(entries);
    const { chunks, total } = chunkEntries(list, 'sha256', from, max);
    assert.is(total, entries.length);
    const start = Math.min(from, total);
    assert.ok(Buffer.concat(chunks.map((c) => c.bytes)).equals(Buffer.concat(entries.slice(start))));
    let next = start;
    for (const c of chunks) {
      assert.is(c.from, next);
      assert.ok(c.bytes.length <= max);
      let n = 0;
      for (let o = 0; o < c.bytes.length; n++) o += entries[next + n].length;
      next += n;
    }
    assert.is(next, total);
  }), { numRuns: 200 });
});

test('chunkEntries: an entry larger than a chunk, and a list that does not parse, are AgentErrors', () => {
  const big = binaryEntry(imaNgData(`/${'x'.repeat(3000)}`, fileDigest('x')));
  assert.throws(() => chunkEntries(big, 'sha256', 0, 1000), (e: Error) => e instanceof AgentError && /larger than 1000 bytes/.test(e.message));
  assert.throws(() => chunkEntries(Buffer.from('garbage!garbage!garbage!'), 'sha256', 0), (e: Error) => e instanceof AgentError && e.code === 'IMA_LIST');
});

test('list file banks and jittered intervals', () => {
  assert.is(bankOfListFile('/sys/kernel/security/ima/binary_runtime_measurements_sha256'), 'sha256');
  assert.is(bankOfListFile('/sys/kernel/security/ima/binary_runtime_measurements'), 'sha1');
  assert.is(bankOfListFile('/tmp/list.bin'), 'sha1');
  assert.is(nextDelayMs(60, () => 0), 54_000);
  assert.is(nextDelayMs(60, () => 1), 66_000);
});

test('boot gate: failed → RUNTIME_FAILED with the entries; stale → RUNTIME_STALE unless approved; no row or attesting → through', () => {
  const now = 1_800_000_000_000;
  assert.equal(bootGate(undefined, now), { useApproval: false });
  const base = { ...emptyRuntime('m-1', now), policyHash: 'ab'.repeat(32), state: 'attesting' as const, lastReport: now - 10_000 };
  assert.equal(bootGate(base, now), { useApproval: false });
  assert.is(runtimeView(base, now), 'attesting');
  const failed = bootGate({ ...base, state: 'failed', reason: 'POLICY: 1 IMA entry', failures: ['entry 9 /tmp/x: no'] }, now);
  assert.is('code' in failed && failed.code, 'RUNTIME_FAILED');
  assert.match('code' in failed ? failed.message : '', /POLICY: 1 IMA entry.*admin clear m-1/);
  assert.equal('code' in failed ? failed.failures : [], ['entry 9 /tmp/x: no']);
  const stale = { ...base, staleLimit: 5 };
  assert.is(runtimeView(stale, now), 'stale');
  const s = bootGate(stale, now);
  assert.is('code' in s && s.code, 'RUNTIME_STALE');
  assert.equal(bootGate({ ...stale, approvedUntil: now + 1 }, now), { useApproval: true });
  assert.is('code' in bootGate({ ...stale, approvedUntil: now }, now), true, 'an expired approval does not count');
  assert.is('code' in bootGate({ ...base, state: 'failed', approvedUntil: now + 1000 }, now), true, 'an approval does not end a failure');
  assert.is(runtimeView({ ...base, policyHash: undefined }, now), 'off');
});

const ev: RuntimeEvent = { event: 'runtime-failed', machine: 'm-1', hostname: 'h', time: new Date(0).toISOString(), reason: 'POLICY', failures: ['entry 3 /tmp/x: no'] };

test('webhook: retried with backoff until the receiver accepts; gives up after the attempts; signature = HMAC-SHA256 over the body', async () => {
  let calls = 0;
  const bodies: { body: string; sig?: string }[] = [];
  const srv = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      calls++;
      bodies.push({ body: Buffer.concat(parts).toString(), sig: req.headers['x-bootkey-signature'] as string });
      res.writeHead(calls < 3 ? 503 : 200).end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/`;
  const key = Buffer.from('k'.repeat(32));
  const lines: string[] = [];
  try {
    assert.ok(await new Notifier({ url, secret: key, backoffMs: 10, log: (l) => lines.push(l) }).post(ev));
    assert.is(calls, 3);
    assert.is(bodies[2].sig, webhookSignature(key, bodies[2].body));
    assert.equal(JSON.parse(bodies[2].body), ev);
    assert.is(lines.filter((l) => /result=retry/.test(l)).length, 2);
    calls = -100; // always 503 now
    assert.not.ok(await new Notifier({ url, attempts: 3, backoffMs: 5, log: (l) => lines.push(l) }).post(ev));
    assert.ok(lines.some((l) => /result=failed .*attempts=3/.test(l)));
    assert.is(bodies.at(-1)!.sig, undefined, 'no secret: no signature header');
  } finally {
    srv.close();
  }
});

test('command hook: the event on stdin, BOOTKEY_EVENT/BOOTKEY_MACHINE set, no shell; a failing or slow hook is reported', async () => {
  const out = join(tmp, 'hook.out');
  const hook = join(tmp, 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\n{ echo "$BOOTKEY_EVENT $BOOTKEY_MACHINE"; cat; } > '${out}'\n`);
  chmodSync(hook, 0o755);
  assert.ok(await new Notifier({ command: hook }).run(ev));
  const [first, json] = readFileSync(out, 'utf8').split('\n');
  assert.is(first, 'runtime-failed m-1');
  assert.equal(JSON.parse(json), ev);
  const bad = join(tmp, 'bad.sh');
  writeFileSync(bad, '#!/bin/sh\nexit 3\n');
  chmodSync(bad, 0o755);
  const lines: string[] = [];
  assert.not.ok(await new Notifier({ command: bad, log: (l) => lines.push(l) }).run(ev));
  assert.match(lines[0], /result=failed .*status=3/);
  const slow = join(tmp, 'slow.sh');
  writeFileSync(slow, '#!/bin/sh\nsleep 5\n');
  chmodSync(slow, 0o755);
  assert.not.ok(await new Notifier({ command: slow, commandTimeoutMs: 200, log: (l) => lines.push(l) }).run(ev));
  assert.match(lines[1], /timed out/);
  assert.not.ok(await new Notifier({ command: join(tmp, 'missing') }).run(ev));
});

test.run();
