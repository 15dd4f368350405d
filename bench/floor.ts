/**
 * `node --import tsx bench/floor.ts [--quick] [--json]`: the FLOOR of one boot-time release, the
 * operations a release cannot do without, each timed alone (CPU time of this process, or of a
 * bare server child process for TLS), and their sum `floor_cpu_ms`:
 *
 *   tls       a bare TLS 1.3 server in Node (node:tls, the same P-256 certificate as `bootkey
 *             server init` makes, TCP_NODELAY) accepting a new connection and answering two
 *             request/reply exchanges of a release's sizes: the server process's CPU (user + system,
 *             /proc) per connection
 *   cbor      decoding and validating an attest-begin and an attest-finish frame (parseMessage),
 *             encoding an attest-challenge and a released reply (encodeMessage)
 *   quote     one ECDSA P-256 / SHA-256 verify of a TPMS_ATTEST (node:crypto, key prepared)
 *   log       parsing the 7.8 kB event log of test/data/qemu/uki-sb-on.bin and replaying it
 *   policy    checkPolicy of a generated policy on that log (policy parsed once)
 *   sealing   createImportBlob to a P-256 EK (ECDH, KDFa, AES-CFB, HMAC, PolicyPCR digest) and
 *             opening the AES-256-GCM sealed share
 *   store     the SQLite statements of one release (machine read, nonce insert, nonce mark-used,
 *             result update, audit insert), statements prepared once
 *
 * Reference figures (not summed): `openssl speed` for ECDSA P-256 verify and ECDH P-256, and the
 * whole request handling in process without TLS (Service.handle of attest-begin + attest-finish).
 * Used by bench/server.ts (`floor_cpu_ms` in its last line).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { randomBytes, sign, verify, createHash } from 'node:crypto';
import { initState } from '../src/server/pki.ts';
import { Service } from '../src/server/service.ts';
import { SqliteStore } from '../src/server/store-sqlite.ts';
import { Vault } from '../src/server/secrets.ts';
import { parseMessage, encodeMessage, type MessageOf } from '../src/protocol/messages.ts';
import { parseEventLog, replay } from '../src/measuredboot/index.ts';
import { checkPolicy } from '../src/measuredboot/policy.ts';
import { parsePolicy } from '../src/measuredboot/policy-load.ts';
import { bindLogToQuote } from '../src/measuredboot/trusted.ts';
import { createImportBlob } from '../src/tpm/verify.ts';
import { unmarshalPublic2B } from '../src/tpm/structures.ts';
import { toTpmSelection } from '../src/server/attest.ts';
import { SimMachine, BootImage } from './sim/machine.ts';
import { procStats } from './sim/server-proc.ts';

export interface FloorPart {
  name: string;
  what: string;
  ms: number;
}
export interface Floor {
  parts: FloorPart[];
  totalMs: number;
  reference: { name: string; what: string; value: string }[];
}

const LOG = new URL('../test/data/qemu/uki-sb-on.bin', import.meta.url);

/** CPU ms per call of fn, over at least `minMs` of CPU after a warm-up. */
function cpuPer(fn: () => void, minMs: number): number {
  for (let i = 0; i < 50; i++) fn();
  let n = 0;
  const t0 = process.cpuUsage();
  let used = 0;
  while (used < minMs * 1000) {
    for (let i = 0; i < 20; i++) fn();
    n += 20;
    const u = process.cpuUsage(t0);
    used = u.user + u.system;
  }
  return used / 1000 / n;
}

async function cpuPerAsync(fn: () => Promise<unknown>, minMs: number): Promise<number> {
  for (let i = 0; i < 20; i++) await fn();
  let n = 0;
  const t0 = process.cpuUsage();
  let used = 0;
  while (used < minMs * 1000) {
    for (let i = 0; i < 10; i++) await fn();
    n += 10;
    const u = process.cpuUsage(t0);
    used = u.user + u.system;
  }
  return used / 1000 / n;
}

/** A bare node:tls server as a child process; returns the server's CPU ms per connection. */
async function tlsFloor(state: string, conns: number, sizes: { req: number[]; rep: number[] }): Promise<number> {
  const script = `
const tls = require('node:tls'); const fs = require('node:fs');
const req = ${JSON.stringify(sizes.req)}, rep = ${JSON.stringify(sizes.rep)};
const srv = tls.createServer({ key: fs.readFileSync(process.argv[1] + '/server.key'), cert: fs.readFileSync(process.argv[1] + '/server.pem'), minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', noDelay: true }, (s) => {
  let got = 0, n = 0;
  s.on('error', () => {});
  s.on('data', (b) => { got += b.length; while (n < req.length && got >= req[n]) { got -= req[n]; s.write(Buffer.alloc(rep[n], 1)); n++; } if (n === req.length) s.end(); });
});
srv.maxConnections = 128;
srv.listen(0, '127.0.0.1', 511, () => process.stdout.write(srv.address().port + '\\n'));
process.on('SIGTERM', () => process.exit(0));`;
  const child = spawn(process.execPath, ['-e', script, state], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('exit', (c) => reject(new Error(`bare TLS server exited (${c})`)));
    });
    const ca = readFileSync(join(state, 'ca.pem'));
    const one = () => new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: [ca], servername: 'localhost', minVersion: 'TLSv1.3' });
      s.setNoDelay(true);
      let got = 0, n = 0;
      s.on('error', reject);
      s.once('secureConnect', () => s.write(Buffer.alloc(sizes.req[0], 2)));
      s.on('data', (b: Buffer) => {
        got += b.length;
        while (n < sizes.rep.length && got >= sizes.rep[n]) {
          got -= sizes.rep[n];
          n++;
          if (n < sizes.req.length) s.write(Buffer.alloc(sizes.req[n], 2));
        }
      });
      s.on('close', () => (n === sizes.rep.length ? resolve() : reject(new Error('bare TLS exchange incomplete'))));
    });
    const run = async (k: number) => {
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next++ < k) await one();
      }));
    };
    await run(50);
    const c0 = procStats(child.pid!).cpuS;
    await run(conns);
    return ((procStats(child.pid!).cpuS - c0) * 1000) / conns;
  } finally {
    child.kill('SIGTERM');
  }
}

function opensslSpeed(alg: 'ecdsap256' | 'ecdhp256'): string {
  try {
    // -mr: "+F4:i:bits:sign/s:verify/s" (ECDSA), "+F5:i:bits:op/s:s/op" (ECDH)
    const out = execFileSync('openssl', ['speed', '-mr', '-seconds', '1', alg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const f = (out.split('\n').find((l) => /^\+F[45]:/.test(l)) ?? '').split(':');
    const rate = Number(alg === 'ecdsap256' ? f[4] : f[3]);
    if (!rate) return 'no figure';
    return `${(1000 / rate).toFixed(4)} ms per ${alg === 'ecdsap256' ? 'verify' : 'op'} (${rate.toFixed(0)}/s)`;
  } catch (e) {
    return `openssl speed failed: ${(e as Error).message}`;
  }
}

export async function measureFloor(o: { quick?: boolean; log?: (l: string) => void } = {}): Promise<Floor> {
  const minMs = o.quick ? 150 : 500;
  const log = o.log ?? (() => undefined);
  const root = mkdtempSync(join(tmpdir(), 'bootkey-floor-'));
  try {
    const state = join(root, 'state');
    await initState(state);
    const image = new BootImage(readFileSync(LOG));

    // A machine enrolled in process (Service.handle, no TLS) to get genuine messages and records.
    const store = new SqliteStore(join(root, 'floor.db'));
    await store.migrate();
    const vault = new Vault(randomBytes(32));
    const adminToken = randomBytes(24).toString('base64url');
    const svc = new Service({ store, vault, adminToken });
    const ctx = { peer: '127.0.0.1' };
    const tok = JSON.parse((await svc.handle({ t: 'admin', adminToken, op: 'token-create', uses: 5 }, ctx) as MessageOf<'admin-result'>).json) as { token: string };
    const m = new SimMachine(0, image);
    const { activateCredentialSoft } = await import('./sim/activate.ts');
    const { marshalPublic2B } = await import('../src/tpm/structures.ts');
    const ch = await svc.handle({ t: 'enroll-begin', enrolToken: tok.token, ekPublic: marshalPublic2B(m.ekPublic), akPublic: marshalPublic2B(m.akPublic), machineId: '0'.repeat(32), hostname: 'floor' }, ctx) as MessageOf<'enroll-challenge'>;
    const proof = activateCredentialSoft({ ekPublic: m.ekPublic, ekPrivate: m.ekKey.privateKey, akName: m.akName, credentialBlob: ch.credentialBlob, encryptedSecret: ch.encryptedSecret });
    const eq = m.quote(ch.pcrSelection, ch.nonce);
    const acc = await svc.handle({ t: 'enroll-finish', enrolToken: tok.token, enrollment: ch.enrollment, proof, quote: eq.quote, signature: eq.signature, pcrs: eq.pcrs, eventLog: image.log }, ctx) as MessageOf<'enroll-accepted'>;
    if (acc.t !== 'enroll-accepted') throw new Error(`floor: enrolment refused: ${JSON.stringify(acc)}`);
    await svc.handle({ t: 'enroll-commit', enrolToken: tok.token, enrollment: ch.enrollment }, ctx);
    m.id = acc.machine;
    m.releasedPcr = acc.releasedPcr;
    const rec = (await store.getMachine(m.id))!;

    // One release's messages.
    const beginMsg = { t: 'attest-begin' as const, machine: m.id, akName: m.akName, ...m.binding() };
    const chal = await svc.handle(beginMsg, ctx) as MessageOf<'attest-challenge'>;
    const q = m.quote(chal.pcrSelection, chal.nonce);
    const finishMsg = { t: 'attest-finish' as const, machine: m.id, akName: m.akName, ...m.binding(), nonce: chal.nonce, quote: q.quote, signature: q.signature, pcrs: q.pcrs, eventLog: image.log };
    const rel = await svc.handle(finishMsg, ctx) as MessageOf<'released'>;
    if (rel.t !== 'released') throw new Error(`floor: release refused: ${JSON.stringify(rel)}`);
    const beginFrame = encodeMessage(beginMsg);
    const finishFrame = encodeMessage(finishMsg);
    const chalFrame = encodeMessage(chal);
    const relFrame = encodeMessage(rel);
    const parts: FloorPart[] = [];
    const add = (name: string, what: string, ms: number) => {
      parts.push({ name, what, ms });
      log(`${name.padEnd(8)} ${ms.toFixed(4)} ms  ${what}`);
    };

    // tls: the sizes of a release's frames (4-byte length + CBOR)
    const sizes = { req: [beginFrame.length + 4, finishFrame.length + 4], rep: [chalFrame.length + 4, relFrame.length + 4] };
    add('tls', `bare node:tls 1.3 server, P-256 certificate, new connection + 2 exchanges (${sizes.req.join('+')} B in, ${sizes.rep.join('+')} B out), server process CPU`, await tlsFloor(state, o.quick ? 600 : 2000, sizes));

    add('cbor', 'parseMessage of attest-begin + attest-finish, encodeMessage of attest-challenge + released', cpuPer(() => {
      parseMessage(beginFrame, ['attest-begin']);
      parseMessage(finishFrame, ['attest-finish']);
      encodeMessage(chal);
      encodeMessage(rel);
    }, minMs));

    const akKey = m.akKey.publicKey;
    const attest = q.quote;
    const sig = sign('sha256', attest, m.akKey.privateKey);
    add('quote', 'one ECDSA P-256 SHA-256 verify of the TPMS_ATTEST (node:crypto, key prepared)', cpuPer(() => {
      if (!verify('sha256', attest, { key: akKey, dsaEncoding: 'der' }, sig)) throw new Error('verify');
    }, minMs));

    add('log', `parseEventLog + replay of the ${image.log.length}-byte log`, cpuPer(() => void replay(parseEventLog(image.log)), minMs));

    const policy = parsePolicy(rec.policy);
    const trusted = bindLogToQuote(parseEventLog(image.log), image.values, { skipPcr: m.releasedPcr });
    if (!checkPolicy(policy, trusted).pass) throw new Error('floor: policy check failed');
    add('policy', 'checkPolicy of the generated policy on the bound log (policy parsed once)', cpuPer(() => void checkPolicy(policy, trusted), minMs));

    const ek = unmarshalPublic2B(rec.ekPublic, 'EK');
    const sel = toTpmSelection(rel.sealedTo);
    const values = image.pcrs(rel.sealedTo);
    add('sealing', 'createImportBlob to the P-256 EK (PolicyPCR) + AES-256-GCM open of the share', cpuPer(() => {
      const s = vault.open(rec.shareSealed, rec.id);
      createImportBlob(ek, s, { pcrs: { selection: sel, values } });
    }, minMs));

    // store: one release's statements, prepared once, on a file database (WAL, synchronous=NORMAL)
    const db = store.db;
    const getM = db.prepare('SELECT * FROM machines WHERE id = ?');
    const putN = db.prepare('INSERT INTO nonces (hash, machine, purpose, expires_at) VALUES (?, ?, ?, ?)');
    const useN = db.prepare('UPDATE nonces SET used_at = ? WHERE hash = ? AND machine = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?');
    const res = db.prepare('UPDATE machines SET last_result = ?, last_time = ?, last_reasons = ?, last_reset_count = ?, last_restart_count = ? WHERE id = ?');
    const aud = db.prepare('INSERT INTO audit (time, who, machine, action, result, code, reasons, peer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    let k = 0;
    add('store', 'SQLite (WAL, synchronous=NORMAL), prepared: machine read ×2, nonce insert, nonce mark-used, result update, audit insert', cpuPer(() => {
      const now = Date.now();
      const h = createHash('sha256').update(String(k++)).digest();
      getM.get(rec.id);
      putN.run(h, rec.id, 'attest', now + 60_000);
      getM.get(rec.id);
      useN.run(now, h, rec.id, 'attest', now);
      res.run('released', now, '[]', 1, 0, rec.id);
      aud.run(now, 'machine', rec.id, 'release', 'ok', null, '[]', '127.0.0.1');
    }, minMs));

    const totalMs = parts.reduce((a, p) => a + p.ms, 0);
    log(`sum      ${totalMs.toFixed(4)} ms  (floor_cpu_ms)`);

    // references
    const reference: Floor['reference'] = [];
    let nonceFor: Buffer | undefined;
    const inproc = await cpuPerAsync(async () => {
      m.reboot();
      const c = await svc.handle(beginMsg, ctx) as MessageOf<'attest-challenge'>;
      nonceFor = c.nonce;
      const qq = m.quote(c.pcrSelection, c.nonce);
      const r = await svc.handle({ ...finishMsg, nonce: nonceFor, quote: qq.quote, signature: qq.signature, pcrs: qq.pcrs }, ctx);
      if (r.t !== 'released') throw new Error(`floor: in-process release refused: ${JSON.stringify(r)}`);
    }, minMs);
    // the simulated machine's quote (ECDSA sign + TPMS_ATTEST) is in that figure: subtract it
    const quoteCost = cpuPer(() => void m.quote(chal.pcrSelection, chal.nonce), minMs / 2);
    reference.push({ name: 'in-process release', what: 'Service.handle(attest-begin) + Service.handle(attest-finish), no TLS, no framing (simulated quote subtracted)', value: `${(inproc - quoteCost).toFixed(3)} ms` });
    reference.push({ name: 'openssl speed ecdsap256', what: 'OpenSSL ECDSA P-256 verify', value: opensslSpeed('ecdsap256') });
    reference.push({ name: 'openssl speed ecdhp256', what: 'OpenSSL ECDH P-256 (sealing does one)', value: opensslSpeed('ecdhp256') });
    for (const r of reference) log(`ref: ${r.name}: ${r.value} (${r.what})`);
    await store.close();
    return { parts, totalMs, reference };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const json = process.argv.includes('--json');
  const f = await measureFloor({ quick, log: json ? undefined : (l) => console.log(l) });
  if (json) console.log(JSON.stringify(f));
  else console.log(JSON.stringify({ floor_cpu_ms: Math.round(f.totalMs * 1000) / 1000 }));
}
