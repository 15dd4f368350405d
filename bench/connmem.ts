/**
 * `node --import tsx bench/connmem.ts [--count N] [--server bundle|tsx]`: the server's memory per
 * open connection, the figure `max-connections` is sized from (docs/SCALE.md §4.3).
 *
 * One `bootkey server --workers 1` child (the bundle, as shipped; timeouts raised so that
 * nothing is closed while measured). N connections are opened and held in one state, the
 * child's RSS (VmRSS) is read before and after (1.5 s to settle), the growth divided by N;
 * they stay open while the next state's N are opened (RSS does not shrink when memory is freed,
 * so closing them first would let the next state reuse it and look free):
 *
 * - `tcp`: TCP accepted, nothing sent (the TLS server waits for a ClientHello);
 * - `handshake`: a real ClientHello sent (captured once from node:tls), the server's flight
 *   computed and sent, the server waiting for the client's Finished: mid-handshake;
 * - `idle`: TLS 1.3 established, no request;
 * - `request`: TLS established, half of a 7.8 kB attest-finish frame sent (mid-request);
 * - `worst`: TLS established, a 2 MiB frame announced and all but one byte sent (the most a
 *   client can make the server hold; N/10 connections).
 */
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { initState } from '../src/server/pki.ts';
import { MAX_FRAME } from '../src/protocol/codec.ts';
import { spawnServer, ensureBundle, procStats, type ServerKind } from './sim/server-proc.ts';

const argv = process.argv.slice(2);
const val = (f: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1] : undefined);
const N = Number(val('--count') ?? 400);
const KIND = (val('--server') ?? 'bundle') as ServerKind;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A ClientHello as node:tls sends it (TLS 1.3, the server name "localhost"). */
async function captureClientHello(): Promise<Buffer> {
  return new Promise((resolve) => {
    const srv = net.createServer((s) => s.once('data', (d: Buffer) => {
      resolve(d);
      s.destroy();
      srv.close();
    }));
    srv.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, servername: 'localhost', minVersion: 'TLSv1.3', rejectUnauthorized: false });
      c.on('error', () => undefined);
    });
  });
}

async function main(): Promise<void> {
  if (KIND === 'bundle') ensureBundle();
  const root = mkdtempSync(join(tmpdir(), 'bootkey-connmem-'));
  const state = join(root, 'state');
  await initState(state);
  const ca = readFileSync(join(state, 'ca.pem'));
  const s = await spawnServer({ stateDir: state, kind: KIND, workers: 1, args: ['--max-connections', '100000', '--message-timeout', '300', '--connection-timeout', '3600', '--rate-limit-peer', '100000/100000'] });
  const held: net.Socket[] = [];
  const results: { state: string; n: number; kbPerConnection: number }[] = [];
  const hello = await captureClientHello();
  const rss = async () => {
    await sleep(1500);
    return procStats(s.pid).rssMb * 1024;
  };
  const tlsOpen = () => new Promise<tls.TLSSocket>((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port: s.port, ca, servername: 'localhost', minVersion: 'TLSv1.3' });
    c.once('secureConnect', () => resolve(c));
    c.once('error', reject);
  });
  const measure = async (name: string, n: number, open: () => Promise<net.Socket>) => {
    const before = await rss();
    for (let i = 0; i < n; i++) held.push(await open());
    const after = await rss();
    results.push({ state: name, n, kbPerConnection: (after - before) / n });
    process.stderr.write(`  ${name}: ${n} connections, RSS ${(before / 1024).toFixed(1)} → ${(after / 1024).toFixed(1)} MB: ${((after - before) / n).toFixed(1)} kB each\n`);
    // Kept open: the next state's connections need new memory (RSS does not shrink when a
    // closed connection's memory is freed, so closing first would hide their cost).
  };
  try {
    // warm the server (JIT, TLS context) with a few full connections first
    for (let i = 0; i < 20; i++) (await tlsOpen()).destroy();
    await measure('tcp', N, () => new Promise((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port: s.port }, () => resolve(c));
      c.on('error', () => undefined);
    }));
    await measure('handshake', N, () => new Promise((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port: s.port }, () => {
        c.write(hello);
        c.once('data', () => resolve(c)); // the server's flight: it has done its part
      });
      c.on('error', () => undefined);
    }));
    await measure('idle', N, tlsOpen);
    const log = readFileSync(new URL('../test/data/qemu/uki-sb-on.bin', import.meta.url));
    await measure('request', N, async () => {
      const c = await tlsOpen();
      const h = Buffer.alloc(4);
      h.writeUInt32BE(log.length + 400);
      c.write(Buffer.concat([h, log.subarray(0, log.length >> 1)]));
      return c;
    });
    const nw = Math.max(10, Math.floor(N / 10));
    await measure('worst', nw, async () => {
      const c = await tlsOpen();
      const h = Buffer.alloc(4);
      h.writeUInt32BE(MAX_FRAME);
      await new Promise<void>((r) => c.write(Buffer.concat([h, Buffer.alloc(MAX_FRAME - 1, 0xa5)]), () => r()));
      return c;
    });
  } finally {
    await s.stop();
    rmSync(root, { recursive: true, force: true });
  }
  console.log(`| state | connections | server RSS per connection |`);
  console.log(`|---|--:|--:|`);
  for (const r of results) console.log(`| ${r.state} | ${r.n} | ${r.kbPerConnection >= 1024 ? `${(r.kbPerConnection / 1024).toFixed(2)} MB` : `${r.kbPerConnection.toFixed(1)} kB`} |`);
  console.log(JSON.stringify({ load_avg: round(loadavg()[0]), ...Object.fromEntries(results.map((r) => [`${r.state}_kb`, round(r.kbPerConnection)])) }));
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
