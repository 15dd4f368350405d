/**
 * EK certificate validity dates (issue 10 §4): notBefore/notAfter read from the DER (UTCTime and
 * GeneralizedTime, notAfter 9999 included), checked against the server's clock with 5 minutes
 * of skew either side; the refusal names the date problem. The certificate is swtpm's real EK
 * certificate (swtpm_setup: notBefore = UTCTime of provisioning, notAfter 99991231235959Z).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { X509Certificate } from 'node:crypto';
import { startSwtpm, type Swtpm } from '../helpers/swtpm.ts';
import { Tpm } from '../../src/tpm/tpm.ts';
import { getEK, readEKCertificate, flushKey } from '../../src/tpm/keys.ts';
import type { TPMTPublic } from '../../src/tpm/structures.ts';
import { certificateValidity, checkEkCertificate, EK_CERT_CLOCK_SKEW_MS } from '../../src/server/ekcert.ts';
import { ServerError } from '../../src/server/errors.ts';
import { EK_CA } from './_helpers.ts';

let sw: Swtpm;
let der: Buffer;
let ek: TPMTPublic;
const bundle = EK_CA;

test.before(async () => {
  sw = await startSwtpm();
  const tpm = await Tpm.open(sw.tcti);
  try {
    der = (await readEKCertificate(tpm, 'rsa'))!;
    const k = await getEK(tpm, 'rsa');
    ek = k.public;
    await flushKey(tpm, k);
  } finally {
    await tpm.close();
  }
});
test.after(async () => {
  await sw?.stop();
});

function refusal(f: () => void): ServerError {
  try {
    f();
  } catch (e) {
    assert.instance(e, ServerError);
    assert.is((e as ServerError).code, 'EK_CERT');
    return e as ServerError;
  }
  assert.unreachable('expected EK_CERT');
  throw new Error();
}

test('certificateValidity: swtpm EK certificate, UTCTime notBefore and GeneralizedTime 9999 notAfter, as OpenSSL reads them', () => {
  const v = certificateValidity(der);
  const x = new X509Certificate(der);
  assert.is(v.notBefore, Date.parse(x.validFrom));
  assert.is(v.notAfter, Date.UTC(9999, 11, 31, 23, 59, 59));
  assert.is(new Date(v.notAfter).toISOString(), '9999-12-31T23:59:59.000Z');
});

test('checkEkCertificate: inside the validity (± 5 min skew) passes; outside refuses naming notBefore / notAfter', () => {
  const { notBefore, notAfter } = certificateValidity(der);
  const min = 60_000;
  assert.is(EK_CERT_CLOCK_SKEW_MS, 5 * min);
  checkEkCertificate(der, ek, bundle, notBefore + 60 * min);
  checkEkCertificate(der, ek, bundle, notBefore - 4 * min); // server clock 4 min behind: tolerated
  checkEkCertificate(der, ek, bundle, notAfter + 4 * min);
  const early = refusal(() => checkEkCertificate(der, ek, bundle, notBefore - 6 * min));
  assert.match(early.message, /not yet valid: notBefore \d{4}-\d\d-\d\dT[\d:.]+Z is after the server's time .*clock skew 5 min/);
  const late = refusal(() => checkEkCertificate(der, ek, bundle, notAfter + 6 * min));
  assert.match(late.message, /expired: notAfter 9999-12-31T23:59:59\.000Z is before the server's time/);
});

/** A minimal certificate-shaped DER: SEQ{ SEQ{ [0]{INT 2}, INT 1, SEQ{}, SEQ{}, SEQ{ t1, t2 } } }. */
function fakeCert(t1: [number, string], t2: [number, string], version = true): Buffer {
  const el = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag, body.length]), body]);
  const time = ([tag, s]: [number, string]): Buffer => el(tag, Buffer.from(s, 'latin1'));
  const tbs = Buffer.concat([
    version ? el(0xa0, el(0x02, Buffer.from([2]))) : Buffer.alloc(0),
    el(0x02, Buffer.from([1])), el(0x30, Buffer.alloc(0)), el(0x30, Buffer.alloc(0)),
    el(0x30, Buffer.concat([time(t1), time(t2)])),
  ]);
  return el(0x30, el(0x30, tbs));
}

test('certificateValidity: UTCTime years 49/50 (RFC 5280), GeneralizedTime with fractions and years < 100, no version field', () => {
  let v = certificateValidity(fakeCert([0x17, '491231235959Z'], [0x17, '500101000000Z']));
  assert.is(new Date(v.notBefore).toISOString(), '2049-12-31T23:59:59.000Z');
  assert.is(new Date(v.notAfter).toISOString(), '1950-01-01T00:00:00.000Z');
  v = certificateValidity(fakeCert([0x18, '00500101000000.5Z'], [0x18, '20301231235959Z'], false));
  assert.is(new Date(v.notBefore).toISOString(), '0050-01-01T00:00:00.000Z');
  assert.is(new Date(v.notAfter).toISOString(), '2030-12-31T23:59:59.000Z');
});

test('certificateValidity: malformed input throws naming the problem; checkEkCertificate refuses EK_CERT', () => {
  assert.throws(() => certificateValidity(der.subarray(0, 40)), /DER: .*offset/);
  assert.throws(() => certificateValidity(fakeCert([0x17, '491231235959'], [0x17, '500101000000Z'])), /notBefore: not a UTCTime/);
  assert.throws(() => certificateValidity(fakeCert([0x17, '491331235959Z'], [0x17, '500101000000Z'])), /notBefore: .*not a valid date/);
  assert.throws(() => certificateValidity(fakeCert([0x04, '491231235959Z'], [0x17, '500101000000Z'])), /notBefore: not a UTCTime/);
  assert.throws(() => certificateValidity(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])), /DER: bad length at offset 0/);
  const e = refusal(() => checkEkCertificate(der.subarray(0, 40), ek, bundle));
  assert.match(e.message, /EK certificate: /);
});

test.run();
