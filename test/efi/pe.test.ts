/**
 * The Authenticode digest on hand-built PE32 / PE32+ images: which bytes it covers (not the
 * CheckSum, not the certificate-table entry, not the certificate table; the sections by file
 * offset; trailing data), and the refusals of broken headers with their codes and offsets.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { buildPe } from './build-pe.ts';
import { parsePe, authenticodeDigest, authenticodeDigests, authenticodeRanges, sectionData, parseCertificateTable, verifyAuthenticode, EfiError, efiReport } from '../../src/efi/index.ts';

function sha256(...parts: Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}
const d256 = (b: Buffer) => authenticodeDigest(b, 'sha256').toString('hex');

function errorOf(f: () => unknown): EfiError {
  try {
    f();
  } catch (e) {
    assert.instance(e, EfiError);
    return e as EfiError;
  }
  assert.unreachable('no error');
  throw new Error();
}

test('PE32+: the digest is headers minus CheckSum and cert entry, then sections (by hand)', () => {
  const b = buildPe();
  const pe = parsePe(b);
  assert.ok(pe.pe32plus);
  assert.is(pe.checksumOffset, 0x80 + 24 + 64);
  assert.is(pe.certTable!.entryOffset, 0x80 + 24 + 112 + 32);
  const c = pe.checksumOffset;
  const e = pe.certTable!.entryOffset;
  const expected = sha256(b.subarray(0, c), b.subarray(c + 4, e), b.subarray(e + 8, 0x200), b.subarray(0x200, 0x600), b.subarray(0x600, 0x800));
  assert.is(d256(b), expected);
  const all = authenticodeDigests(b);
  assert.equal(Object.keys(all), ['sha1', 'sha256', 'sha384', 'sha512']);
  assert.is(all.sha512!.length, 64);
});

test('CheckSum and the certificate-table entry are not covered; every other header byte is', () => {
  const b = buildPe();
  const pe = parsePe(b);
  const base = d256(b);
  const x = Buffer.from(b);
  x.writeUInt32LE(0x12345678, pe.checksumOffset);
  assert.is(d256(x), base);
  const y = Buffer.from(b);
  y.writeUInt32LE(0, pe.certTable!.entryOffset); // offset 0, size 0 stays "no table"
  y.writeUInt32LE(0, pe.certTable!.entryOffset + 4);
  assert.is(d256(y), base);
  for (const off of [0x3a, 0x80 + 8, pe.checksumOffset - 8, pe.checksumOffset + 4, pe.certTable!.entryOffset - 1, pe.certTable!.entryOffset + 8, 0x1ff]) {
    const z = Buffer.from(b);
    z[off] ^= 0x40;
    assert.is.not(d256(z), base, `byte ${off}`);
  }
});

test('PE32 (ia32) layout: CheckSum at the same place, data directories 16 bytes earlier', () => {
  const b = buildPe({ pe32plus: false });
  const pe = parsePe(b);
  assert.not.ok(pe.pe32plus);
  assert.is(pe.certTable!.entryOffset, 0x80 + 24 + 96 + 32);
  const c = pe.checksumOffset;
  const e = pe.certTable!.entryOffset;
  assert.is(d256(b), sha256(b.subarray(0, c), b.subarray(c + 4, e), b.subarray(e + 8, 0x200), b.subarray(0x200, 0x800)));
});

test('NumberOfRvaAndSizes <= 4: no certificate entry, only CheckSum left out', () => {
  const b = buildPe({ nrva: 4 });
  const pe = parsePe(b);
  assert.is(pe.certTable, undefined);
  const c = pe.checksumOffset;
  assert.is(d256(b), sha256(b.subarray(0, c), b.subarray(c + 4, 0x800)));
  assert.is(verifyAuthenticode(pe).length, 0);
});

test('sections are hashed in file order, whatever the table order; empty sections skipped', () => {
  const sections = [
    { name: '.a', data: Buffer.alloc(0x200, 1) },
    { name: '.bss', data: Buffer.alloc(0) },
    { name: '.b', data: Buffer.alloc(0x200, 2) },
  ];
  const inOrder = buildPe({ sections });
  const reversed = buildPe({ sections, tableOrder: [2, 1, 0] });
  assert.is.not(inOrder.toString('hex'), reversed.toString('hex'));
  const ranges = authenticodeRanges(parsePe(reversed)).slice(3);
  assert.equal(ranges, [[0x200, 0x400], [0x400, 0x600]]);
  // Same section data, same digest as hashing the bytes after the headers in file order.
  const r = parsePe(reversed);
  const c = r.checksumOffset;
  const e = r.certTable!.entryOffset;
  assert.is(d256(reversed), sha256(reversed.subarray(0, c), reversed.subarray(c + 4, e), reversed.subarray(e + 8, 0x600)));
});

test('trailing data is hashed; the certificate table is not', () => {
  const trailing = Buffer.from('trailing bytes after the last section');
  const cert = Buffer.alloc(64, 0x55);
  cert.writeUInt32LE(64, 0);
  cert.writeUInt16LE(0x0200, 4);
  cert.writeUInt16LE(0x0002, 6);
  const b = buildPe({ trailing, cert });
  const pe = parsePe(b);
  assert.is(pe.certTable!.size, 64);
  const c = pe.checksumOffset;
  const e = pe.certTable!.entryOffset;
  // Trailing data runs up to the certificate table, its 8-byte alignment padding included.
  assert.is(d256(b), sha256(b.subarray(0, c), b.subarray(c + 4, e), b.subarray(e + 8, 0x800), b.subarray(0x800, pe.certTable!.offset)));
  const x = Buffer.from(b);
  x[pe.certTable!.offset + 20] ^= 1;
  assert.is(d256(x), d256(b), 'certificate table bytes are not covered');
  const y = Buffer.from(b);
  y[0x800 + 3] ^= 1;
  assert.is.not(d256(y), d256(b), 'trailing bytes are covered');
  // The table's one entry is not a PKCS#7: reported, not thrown; the image digest is still there.
  const r = efiReport(b);
  assert.is(r.signature, 'invalid');
  assert.is(r.signatures[0].error, `at byte ${pe.certTable!.offset}: WIN_CERTIFICATE: not DER: End of input reached before message was fully decoded (inconsistent offset and length values)`);
});

test('section data is VirtualSize bytes: cut, or zero-filled beyond the raw data', () => {
  const b = buildPe({ sections: [{ name: '.cmdline', data: Buffer.from('abc'), virtualSize: 3 }, { name: '.x', data: Buffer.alloc(4, 7), virtualSize: 0x300 }] });
  const pe = parsePe(b);
  assert.is(sectionData(pe, pe.sections[0]).toString(), 'abc');
  const x = sectionData(pe, pe.sections[1]);
  assert.is(x.length, 0x300);
  assert.ok(x.subarray(0, 4).equals(Buffer.alloc(4, 7)) && x.subarray(0x200).every((v) => v === 0));
  assert.is(errorOf(() => sectionData(pe, pe.sections[1], 0xff)).code, 'BAD_SECTION');
  assert.is(sectionData(pe, pe.sections[1], 0x100).length, 0x300);
});

test('refusals: codes and offsets', () => {
  const good = buildPe();
  const cases: Array<[string, (b: Buffer) => Buffer, string, number | undefined]> = [
    ['empty', () => Buffer.alloc(0), 'NOT_PE', 0],
    ['no MZ', (b) => (b.write('ZM', 0, 'latin1'), b), 'NOT_PE', 0],
    ['e_lfanew past the end', (b) => (b.writeUInt32LE(0x7fffffff, 0x3c), b), 'TRUNCATED', 0x3c],
    ['no PE signature', (b) => (b.write('PX', 0x80, 'latin1'), b), 'NOT_PE', 0x80],
    ['bad magic', (b) => (b.writeUInt16LE(0x107, 0x98), b), 'BAD_HEADER', 0x98],
    ['optional header too small', (b) => (b.writeUInt16LE(100, 0x80 + 20), b), 'BAD_HEADER', 0x80 + 20],
    ['NumberOfRvaAndSizes too large', (b) => (b.writeUInt32LE(1000, 0x98 + 108), b), 'BAD_HEADER', 0x98 + 108],
    ['SizeOfHeaders past the end', (b) => (b.writeUInt32LE(0x100000, 0x98 + 60), b), 'BAD_HEADER', 0x98 + 60],
    ['section table past the end', (b) => (b.writeUInt16LE(5000, 0x86), b), 'TRUNCATED', undefined],
    ['section raw data past the end', (b) => (b.writeUInt32LE(0x10000, 0x98 + 240 + 16), b), 'BAD_SECTION', 0x98 + 240 + 16],
    ['section raw pointer past the end', (b) => (b.writeUInt32LE(0xfffffff0, 0x98 + 240 + 20), b), 'BAD_SECTION', 0x98 + 240 + 16],
    ['cert table past the end', (b) => (b.writeUInt32LE(0x600, 0x98 + 144), b.writeUInt32LE(0x1000, 0x98 + 148), b), 'BAD_CERT_TABLE', 0x98 + 144],
    ['cert table inside the headers', (b) => (b.writeUInt32LE(0x100, 0x98 + 144), b.writeUInt32LE(8, 0x98 + 148), b), 'BAD_CERT_TABLE', 0x98 + 144],
    ['truncated file', (b) => b.subarray(0, 0x90), 'TRUNCATED', undefined],
  ];
  for (const [what, mutate, code, offset] of cases) {
    const e = errorOf(() => authenticodeDigests(mutate(Buffer.from(good))));
    assert.is(e.code, code, `${what}: ${e.message}`);
    if (offset !== undefined) assert.is(e.offset, offset, `${what}: ${e.message}`);
    assert.match(e.message, /^at byte \d+: /, what);
  }
});

test('WIN_CERTIFICATE framing: dwLength out of bounds, stray bytes, too many entries', () => {
  const mk = (cert: Buffer) => parsePe(buildPe({ cert }));
  const bad = Buffer.alloc(16);
  bad.writeUInt32LE(4, 0);
  assert.is(errorOf(() => parseCertificateTable(mk(bad))).code, 'BAD_CERT_TABLE');
  bad.writeUInt32LE(1000, 0);
  assert.is(errorOf(() => parseCertificateTable(mk(bad))).code, 'BAD_CERT_TABLE');
  const stray = Buffer.alloc(20);
  stray.writeUInt32LE(16, 0);
  stray[18] = 1;
  assert.is(errorOf(() => parseCertificateTable(mk(stray))).code, 'BAD_CERT_TABLE');
  const many = Buffer.alloc(8 * 20);
  for (let i = 0; i < 20; i++) many.writeUInt32LE(8, i * 8);
  assert.is(errorOf(() => parseCertificateTable(mk(many))).code, 'TOO_LARGE');
  // A certificate of another type (X.509, 0x0001): decoded as "not PKCS#7", the image still shown.
  const x509 = Buffer.alloc(16);
  x509.writeUInt32LE(16, 0);
  x509.writeUInt16LE(0x0200, 4);
  x509.writeUInt16LE(0x0001, 6);
  const res = verifyAuthenticode(mk(x509));
  assert.is(res.length, 1);
  assert.not.ok(res[0].valid);
  assert.match(res[0].error!, /type 0x1 is not a PKCS#7/);
});

test.run();
