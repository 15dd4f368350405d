/**
 * Refusals, each with its reason code, and after each one a valid unlock still works (no state
 * broken). A successful unlock extends the released PCR, so the machine "reboots" (swtpm
 * restart + log replay) before the next one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { tempDir, testServer, luksImage, machine, enrollMachine, unlockImage, refused, admin, type TestServer, type Machine } from './helpers.ts';
import { withServer } from '../../src/client/connect.ts';
import { attest, readToken, type AttestFinish } from '../../src/initrd/unlock.ts';
import { createAK, createPrimary, flushKey } from '../../src/tpm/keys.ts';
import { quotePCRs } from '../../src/tpm/commands/attest.ts';
import { akTemplate } from '../../src/tpm/templates.ts';
import { TPM_RH, TPMA_OBJECT } from '../../src/tpm/constants.ts';
import { marshalPublic2B, marshalSignature } from '../../src/tpm/structures.ts';
import { toTpmSelection } from '../../src/client/selection.ts';
import { parseEventLog } from '../../src/measuredboot/index.ts';
import { frame, encodeCbor, Connection } from '../../src/protocol/index.ts';
import { findTokens, type BootkeyToken } from '../../src/client/token.ts';
import { importToken, removeToken } from '../../src/luks/cryptsetup.ts';
import { unmarshalPublic2B } from '../../src/tpm/structures.ts';
import { TPM_ALG } from '../../src/tpm/constants.ts';
import type { ClientError } from '../../src/client/connect.ts';
import { metadata } from './helpers.ts';

const tmp = tempDir('refusals');
let srv: TestServer;
let m: Machine;
let image: string;

test.before(async () => {
  srv = await testServer(tmp.dir);
  m = await machine();
  const img = await luksImage(tmp.dir);
  image = img.image;
  await enrollMachine(srv, m, img);
});
test.after(async () => {
  await m?.stop();
  await srv?.close();
  tmp.cleanup();
});

/** A valid unlock works, then reboot so the next test starts from a fresh boot. */
async function stillWorks(): Promise<void> {
  const r = await unlockImage(m, image);
  assert.ok(r.machine);
  await m.reboot();
}

const tamper = (f: (x: AttestFinish) => AttestFinish | Promise<AttestFinish>) => ({ tamper: f });

/** Event-log surgery on the raw bytes: [start, end) of event i. */
function span(bytes: Buffer, i: number): [number, number] {
  const ev = parseEventLog(bytes).events;
  return [ev[i].offset, i + 1 < ev.length ? ev[i + 1].offset : parseEventLog(bytes).length];
}
function eventIndex(bytes: Buffer, pred: (e: ReturnType<typeof parseEventLog>['events'][number]) => boolean): number {
  const i = parseEventLog(bytes).events.findIndex(pred);
  assert.ok(i > 0, 'event found');
  return i;
}

test('wrong nonce → NONCE', async () => {
  await refused(unlockImage(m, image, tamper((f) => ({ ...f, nonce: randomBytes(32) }))), 'NONCE');
  await stillWorks();
});

test('replayed attest-finish (captured, sent again) → NONCE_USED', async () => {
  let captured: AttestFinish | undefined;
  await unlockImage(m, image, tamper((f) => (captured = f)));
  const { token } = await readToken(image);
  await refused(withServer({ servers: token.servers, ca: token.ca }, (s) => s.request(captured!, ['released'])), 'NONCE_USED');
  await m.reboot();
  await stillWorks();
});

test('PCR values that do not match the quote → PCR_DIGEST', async () => {
  await refused(unlockImage(m, image, tamper((f) => {
    const pcrs = new Map([...f.pcrs].map(([b, v]) => [b, new Map(v)]));
    const bank = [...pcrs.values()][0];
    bank.set(7, randomBytes(bank.get(7)!.length));
    return { ...f, pcrs };
  })), 'PCR_DIGEST');
  await stillWorks();
});

test('a quote from ANOTHER TPM claiming the enrolled AK name → SIGNATURE', async () => {
  const other = await machine(undefined, { blank: true });
  try {
    await refused(unlockImage(m, image, tamper(async (f) => {
      const ak = await createAK(other.tpm, 'ecc');
      try {
        const sel = [...f.pcrs].map(([bank, v]) => ({ bank, pcrs: [...v.keys()] }));
        const q = await quotePCRs(other.tpm, ak, { selection: toTpmSelection(sel), nonce: f.nonce });
        return { ...f, quote: q.quoted, signature: marshalSignature(q.signature), pcrs: q.pcrs };
      } finally {
        await flushKey(other.tpm, ak);
      }
    })), 'SIGNATURE');
  } finally {
    await other.stop();
  }
  await stillWorks();
});

// Event data that contradicts its digest is no longer a refusal by itself: the data is not read
// (the quote binds the digest only), so the verdict is the honest boot's. test/server/pipeline.test.ts
// and test/attacks/ cover it.
test('event log altered: one digest, an event removed, events reordered → REPLAY', async () => {
  // one digest of the PCR 4 application event changed
  await refused(unlockImage(m, image, tamper((f) => {
    const b = Buffer.from(f.eventLog);
    const i = eventIndex(b, (e) => e.pcr === 4 && e.decoded.kind === 'efi-image');
    // pcr, type, digest count, then (algId, digest)*: find the sha256 (0x000b) digest, the bank the quote covers
    let o = span(b, i)[0] + 12;
    while (b.readUInt16LE(o) !== 0x000b) o += 2 + ({ 0x0004: 20, 0x000c: 48, 0x000d: 64 } as Record<number, number>)[b.readUInt16LE(o)]; // little-endian (TCG log)
    b[o + 2] ^= 0x80;
    return { ...f, eventLog: b };
  })), 'REPLAY');
  // an event removed
  await refused(unlockImage(m, image, tamper((f) => {
    const b = f.eventLog;
    const [s, e] = span(b, eventIndex(b, (x) => x.pcr === 4 && x.decoded.kind === 'efi-image'));
    return { ...f, eventLog: Buffer.concat([b.subarray(0, s), b.subarray(e)]) };
  })), 'REPLAY');
  // two events of PCR 7 swapped (same multiset of digests, another order)
  await refused(unlockImage(m, image, tamper((f) => {
    const b = f.eventLog;
    const evs = parseEventLog(b).events;
    const i = evs.findIndex((e, k) => e.pcr === 7 && evs[k + 1]?.pcr === 7 && !e.digests.get('sha256')!.equals(evs[k + 1].digests.get('sha256')!));
    assert.ok(i > 0);
    const [s1, e1] = span(b, i);
    const [, e2] = span(b, i + 1);
    return { ...f, eventLog: Buffer.concat([b.subarray(0, s1), b.subarray(e1, e2), b.subarray(s1, e1), b.subarray(e2)]) };
  })), 'REPLAY');
  // garbage instead of a log
  await refused(unlockImage(m, image, tamper((f) => ({ ...f, eventLog: randomBytes(300) }))), 'EVENTLOG');
  await stillWorks();
});

for (const [logName, what] of [['uki-sb-off', /SecureBoot|secure.?boot|PCR 7|pcr7/i], ['sdboot-sb-off', /kernel|boot|PCR 4|pcr4|application/i], ['uki-sb-off-cmdline2', /cmdline|command line/i]] as const) {
  test(`policy: a boot of ${logName} → POLICY with reasons`, async () => {
    await m.reboot(logName);
    const e = await refused(unlockImage(m, image), 'POLICY');
    assert.ok((e.failures ?? []).length > 0, 'failures listed');
    assert.ok(e.failures!.some((f) => what.test(f)), `a failure matches ${what}: ${e.failures!.join(' | ')}`);
    await m.reboot('uki-sb-on');
    await stillWorks();
  });
}

test('revoked machine → REVOKED; unrevoked → works', async () => {
  const { token } = await readToken(image);
  await admin(srv, 'revoke', token.machine);
  await refused(unlockImage(m, image), 'REVOKED');
  await admin(srv, 'unrevoke', token.machine);
  await stillWorks();
});

test('unknown machine → UNKNOWN_MACHINE', async () => {
  const { token } = await readToken(image);
  const ak = await createAK(m.tpm, token.ak_alg);
  try {
    await refused(withServer({ servers: token.servers, ca: token.ca }, (s) => attest(s, m.tpm, ak, { ...token, machine: 'no-such-machine' }, m.eventLog)), 'UNKNOWN_MACHINE');
  } finally {
    await flushKey(m.tpm, ak);
  }
  await stillWorks();
});

test('expired nonce → NONCE_EXPIRED (server with a 300 ms nonce lifetime)', async () => {
  const short = await testServer(tmp.dir, { nonceTtlMs: 300 });
  const m2 = await machine();
  try {
    const img = await luksImage(tmp.dir, 'short.img');
    await enrollMachine(short, m2, img);
    await refused(unlockImage(m2, img.image, tamper(async (f) => {
      await new Promise((r) => setTimeout(r, 1200));
      return f;
    })), 'NONCE_EXPIRED');
    assert.ok(await unlockImage(m2, img.image));
  } finally {
    await m2.stop();
    await short.close();
  }
});

test('enrolment with a NON-restricted signing key as "AK" → AK_ATTRIBUTES', async () => {
  const t = akTemplate('ecc');
  t.objectAttributes &= ~TPMA_OBJECT.restricted;
  const key = await createPrimary(m.tpm, TPM_RH.ENDORSEMENT, t);
  const ek = await createPrimary(m.tpm, TPM_RH.ENDORSEMENT, (await import('../../src/tpm/templates.ts')).ekTemplate('rsa'));
  try {
    await refused(withServer({ servers: [srv.url], ca: srv.ca }, (s) => s.request({
      t: 'enroll-begin', enrolToken: srv.enrolToken, ekPublic: marshalPublic2B(ek.public), akPublic: marshalPublic2B(key.public), machineId: 'unrestricted', hostname: 'x',
    }, ['enroll-challenge'])), 'AK_ATTRIBUTES');
  } finally {
    await flushKey(m.tpm, key);
    await flushKey(m.tpm, ek);
  }
  await stillWorks();
});

test('garbage and oversize messages: refused or cut off, the server keeps serving', async () => {
  const { token } = await readToken(image);
  const raw = async (bytes: Buffer): Promise<string> => {
    const sock = tls.connect({ host: '127.0.0.1', port: srv.port, ca: [token.ca], minVersion: 'TLSv1.3' });
    await new Promise<void>((r, j) => { sock.once('secureConnect', () => r()); sock.once('error', j); });
    const c = new Connection(sock);
    sock.write(bytes);
    try {
      const m = await c.receive(['error'], 5000);
      return m.t === 'error' ? (m as { code: string }).code : m.t;
    } catch (e) {
      return `closed:${(e as { code?: string }).code}`;
    } finally {
      sock.destroy();
    }
  };
  const garbage = await raw(frame(randomBytes(200)));
  assert.match(garbage, /^(BAD_MESSAGE|BAD_REQUEST|closed:CLOSED)$/);
  const wrongType = await raw(frame(encodeCbor({ v: 1, t: 'attest-finish', machine: 7 })));
  assert.match(wrongType, /^(BAD_MESSAGE|BAD_REQUEST)$/);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(64 * 1024 * 1024);
  const oversize = await raw(Buffer.concat([big, randomBytes(1024)]));
  assert.match(oversize, /^(TOO_LARGE|closed:CLOSED)$/);
  await stillWorks();
});

test('a rewritten LUKS2 header: another pinned EK → TOKEN_EK, another released PCR → TOKEN_RELEASED_PCR (server); a forged signature → TOKEN_SIGNATURE (client); no key released', async () => {
  const orig = await readToken(image);
  const other = unmarshalPublic2B(Buffer.from(orig.token.ek, 'base64'));
  if (other.type !== TPM_ALG.RSA) throw new Error('RSA EK expected');
  other.unique.rsa = Buffer.from(other.unique.rsa);
  other.unique.rsa[9] ^= 0x77;
  const doctored: [BootkeyToken, 'REFUSED' | 'TOKEN_SIGNATURE', string | undefined][] = [
    [{ ...orig.token, ek: marshalPublic2B(other).toString('base64') }, 'REFUSED', 'TOKEN_EK'],
    [{ ...orig.token, released_pcr: 14 }, 'REFUSED', 'TOKEN_RELEASED_PCR'],
    [{ ...orig.token, sig: Buffer.alloc(64, 1).toString('base64') }, 'TOKEN_SIGNATURE', undefined],
  ];
  try {
    for (const [t, code, serverCode] of doctored) {
      // rewrite the header itself: the client reads the token from the disk
      await removeToken(image, orig.id);
      await importToken(image, t, orig.id);
      let released = false;
      try {
        await unlockImage(m, image, { onReleased: () => { released = true; }, deadlineMs: 10_000 });
        assert.unreachable('unlocked with a doctored token');
      } catch (e) {
        assert.is((e as ClientError).code, code, (e as Error).message);
        if (serverCode) assert.is((e as ClientError).serverCode, serverCode, (e as Error).message);
      }
      assert.not.ok(released, 'no key released for a doctored token');
    }
  } finally {
    await removeToken(image, orig.id);
    await importToken(image, orig.token, orig.id);
  }
  await stillWorks();
});

test('the token on the disk is unchanged by all of this', async () => {
  const [t] = findTokens(await metadata(image));
  assert.ok(t);
});

test.run();
