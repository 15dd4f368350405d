/**
 * IMA signatures (src/ima/sig.ts) cross-checked with the real tools: evmctl (ima-evm-utils) signs
 * files with RSA and ECDSA keys; openssl makes raw-digest ECDSA, v3 (sigv3) signatures and the
 * appended PKCS#7 of ima-modsig. The ECDSA curve constants are checked against node:crypto.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createECDH, createHash, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CURVES, mulAdd, mulAddNative, ecdsaVerifyDigest, parseDerSig } from '../../src/ima/_ecdsa.ts';
import { ImaSigError, keyIndex, loadVerificationKey, parseImaSignature, tryLoadKey, verifyImaSignature, verifyModsig } from '../../src/ima/sig.ts';
import { parseImaList } from '../../src/ima/list.ts';
import { checkRuntimePolicy } from '../../src/ima/policy.ts';
import { unverifiedImaEntries } from '../../src/ima/trusted.ts';
import { entry, policy, tool, ROOT } from './policy-helpers.ts';

const dir = mkdtempSync(tmpdir() + '/bootkey-ima-sig-');
const f = (n: string) => `${dir}/${n}`;
writeFileSync(f('file'), 'a signed file\n');
writeFileSync(f('other'), 'another file\n');
const digest = createHash('sha256').update(readFileSync(f('file'))).digest();
const otherDigest = createHash('sha256').update(readFileSync(f('other'))).digest();

function keypair(name: string, kind: 'rsa' | 'ec', curve = 'prime256v1'): void {
  if (kind === 'rsa') tool('openssl', ['genrsa', '-out', f(`${name}.key`), '2048']);
  else tool('openssl', ['ecparam', '-name', curve, '-genkey', '-noout', '-out', f(`${name}.key`)]);
  tool('openssl', ['pkey', '-in', f(`${name}.key`), '-pubout', '-out', f(`${name}.pub`)]);
  tool('openssl', ['req', '-new', '-x509', '-key', f(`${name}.key`), '-subj', `/CN=bootkey test ${name}`, '-days', '30', '-out', f(`${name}.crt`), '-addext', 'subjectKeyIdentifier=hash']);
}
keypair('rsa', 'rsa');
keypair('p256', 'ec');
keypair('p384', 'ec', 'secp384r1');
keypair('other', 'ec');

function evmSign(key: string, file: string, extra: string[] = [], algo = 'sha256'): Buffer {
  tool('evmctl', ['ima_sign', '--sigfile', '-k', f(`${key}.key`), '-a', algo, ...extra, f(file)]);
  return readFileSync(f(`${file}.sig`));
}
const keys = (...names: string[]) => keyIndex(names.map((n) => loadVerificationKey(readFileSync(f(n)), n)));

test('curves: k·G of our constants equals node:crypto (createECDH) for P-256, P-384, P-521, secp256k1', () => {
  const node: Record<string, string> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1', secp256k1: 'secp256k1' };
  for (const [name, c] of Object.entries(CURVES)) {
    for (const k of [1n, 2n, 7n, 0x1234567890abcdefn, c.n - 1n]) {
      const e = createECDH(node[name]);
      e.setPrivateKey(Buffer.from(k.toString(16).padStart(c.size * 2, '0'), 'hex'));
      const x = BigInt('0x' + e.getPublicKey().subarray(1, 1 + c.size).toString('hex'));
      assert.is(mulAdd(c, k, [c.gx, c.gy], 0n, [c.gx, c.gy]), x, `${name} k=${k}`);
    }
  }
});

test('curves: the OpenSSL-assisted u1·G + u2·Q equals the BigInt double-and-add (random scalars, every curve)', () => {
  let seed = 12345n;
  const rnd = (n: bigint) => { seed = (seed * 6364136223846793005n + 1442695040888963407n) % (1n << 64n); let v = 0n; for (let i = 0; i < 9; i++) v = (v << 64n) | ((seed * BigInt(i + 7)) % (1n << 64n)); return (v % (n - 2n)) + 1n; };
  for (const c of Object.values(CURVES)) {
    const e = createECDH(c.openssl);
    e.setPrivateKey(Buffer.from(rnd(c.n).toString(16).padStart(c.size * 2, '0'), 'hex'));
    const pub = e.getPublicKey();
    const qx = BigInt('0x' + pub.subarray(1, 1 + c.size).toString('hex'));
    const qy = BigInt('0x' + pub.subarray(1 + c.size).toString('hex'));
    for (let i = 0; i < 4; i++) {
      const u1 = rnd(c.n);
      const u2 = rnd(c.n);
      assert.is(mulAddNative(c, u1, u2, qx, qy), mulAdd(c, u1, [c.gx, c.gy], u2, [qx, qy]), `${c.name} #${i}`);
    }
    assert.is(mulAddNative(c, 0n, 5n, qx, qy), undefined, 'u1 = 0 falls back');
  }
});

test('evmctl RSA: verifies, keyid is ours (SHA-1 of PKCS#1), over another digest it does not', () => {
  const sig = evmSign('rsa', 'file');
  const p = parseImaSignature(sig);
  assert.is(p.type, 3);
  assert.is(p.version, 2);
  assert.is(p.hashAlgo, 'sha256');
  assert.is(p.keyid.toString('hex'), loadVerificationKey(readFileSync(f('rsa.pub'))).keyids.at(-1));
  const ok = verifyImaSignature(sig, 'sha256', digest, keys('rsa.pub'));
  assert.ok(ok.ok, JSON.stringify(ok));
  const other = verifyImaSignature(sig, 'sha256', otherDigest, keys('rsa.pub'));
  assert.equal([other.ok, !other.ok && other.code], [false, 'BAD_SIGNATURE']);
  const algo = verifyImaSignature(sig, 'sha1', digest.subarray(0, 20), keys('rsa.pub'));
  assert.equal([algo.ok, !algo.ok && algo.code], [false, 'ALGO_MISMATCH']);
});

test('evmctl ECDSA P-256 and P-384: verify (prehashed ECDSA), unknown key and wrong key refused', () => {
  for (const k of ['p256', 'p384']) {
    const sig = evmSign(k, 'file');
    assert.ok(verifyImaSignature(sig, 'sha256', digest, keys(`${k}.pub`)).ok, k);
    const unknown = verifyImaSignature(sig, 'sha256', digest, keys('other.pub'));
    assert.equal([unknown.ok, !unknown.ok && unknown.code], [false, 'UNKNOWN_KEY']);
    assert.match((unknown as { message: string }).message, /no such key in the policy/);
  }
  // a key that claims the signer's keyid but is another key: the signature decides, not the keyid
  const sig = evmSign('p256', 'file');
  const forged = Buffer.from(sig);
  loadVerificationKey(readFileSync(f('other.pub'))).keyids.at(-1) && Buffer.from(loadVerificationKey(readFileSync(f('other.pub'))).keyids.at(-1)!, 'hex').copy(forged, 3);
  const r = verifyImaSignature(forged, 'sha256', digest, keys('other.pub'));
  assert.equal([r.ok, !r.ok && r.code], [false, 'BAD_SIGNATURE']);
});

test('evmctl --keyid-from-cert: the keyid is the certificate SKID\'s last 4 bytes, which a certificate key answers to', () => {
  const sig = evmSign('rsa', 'file', ['--keyid-from-cert', f('rsa.crt')]);
  const k = loadVerificationKey(readFileSync(f('rsa.crt')));
  assert.ok(k.cert?.skid);
  assert.is(parseImaSignature(sig).keyid.toString('hex'), k.cert!.skid!.subarray(-4).toString('hex'));
  assert.is(k.keyids[0], k.cert!.skid!.subarray(-4).toString('hex'));
  assert.ok(verifyImaSignature(sig, 'sha256', digest, keyIndex([k])).ok);
  // openssl's SKID "hash" method is SHA-1 of the subjectPublicKey bits = PKCS#1 for RSA: the bare key's keyid
  assert.equal(k.keyids, loadVerificationKey(readFileSync(f('rsa.pub'))).keyids);
  // an explicit keyid no key answers to
  const sig2 = evmSign('rsa', 'file', ['--keyid', '0a0b0c0d']);
  const r = verifyImaSignature(sig2, 'sha256', digest, keyIndex([k]));
  assert.equal([r.ok, !r.ok && r.code, !r.ok && r.keyid], [false, 'UNKNOWN_KEY', '0a0b0c0d']);
});

test('evmctl sha1 and sha512 signatures verify with their entry algorithm', () => {
  for (const a of ['sha1', 'sha512']) {
    const sig = evmSign('p256', 'file', [], a);
    const d = createHash(a).update(readFileSync(f('file'))).digest();
    assert.ok(verifyImaSignature(sig, a, d, keys('p256.pub')).ok, a);
  }
});

/** A v2/v3 header around a raw signature. */
function header(type: number, version: number, algoId: number, keyid: string, sig: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h[0] = type; h[1] = version; h[2] = algoId;
  Buffer.from(keyid, 'hex').copy(h, 3);
  h.writeUInt16BE(sig.length, 7);
  return Buffer.concat([h, sig]);
}
function pkeySign(key: string, data: Buffer, rsa: boolean): Buffer {
  writeFileSync(f('tbs'), data);
  tool('openssl', ['pkeyutl', '-sign', '-inkey', f(`${key}.key`), '-in', f('tbs'), '-out', f('tbs.sig'), ...(rsa ? ['-pkeyopt', 'digest:sha256'] : [])]);
  return readFileSync(f('tbs.sig'));
}

test('sigv3 (openssl over H(ima_file_id)): verifies; the same bytes as v2 do not; a v2 signature relabelled v3 does not', () => {
  for (const [key, rsa] of [['rsa', true], ['p256', false]] as const) {
    const k = loadVerificationKey(readFileSync(f(`${key}.pub`)));
    const fileId = createHash('sha256').update(Buffer.concat([Buffer.from([3, 4]), digest])).digest();
    const raw = pkeySign(key, fileId, rsa);
    const v3 = header(3, 3, 4, k.keyids[0], raw);
    assert.ok(verifyImaSignature(v3, 'sha256', digest, keyIndex([k])).ok, `${key} v3`);
    assert.not.ok(verifyImaSignature(header(3, 2, 4, k.keyids[0], raw), 'sha256', digest, keyIndex([k])).ok, `${key} v3 bytes as v2`);
    const v2raw = pkeySign(key, digest, rsa);
    assert.ok(verifyImaSignature(header(3, 2, 4, k.keyids[0], v2raw), 'sha256', digest, keyIndex([k])).ok, `${key} v2`);
    assert.not.ok(verifyImaSignature(header(3, 3, 4, k.keyids[0], v2raw), 'sha256', digest, keyIndex([k])).ok, `${key} v2 bytes as v3`);
    // fs-verity: type 0x06 signs hash_type 6; only valid on an fs-verity digest (d-ngv2 "verity:")
    const verityRaw = pkeySign(key, createHash('sha256').update(Buffer.concat([Buffer.from([6, 4]), digest])).digest(), rsa);
    const verity = header(6, 3, 4, k.keyids[0], verityRaw);
    assert.ok(verifyImaSignature(verity, 'sha256', digest, keyIndex([k]), 'verity').ok, `${key} verity`);
    const confused = verifyImaSignature(verity, 'sha256', digest, keyIndex([k]), 'ima');
    assert.equal([confused.ok, !confused.ok && confused.code], [false, 'MALFORMED_SIGNATURE']);
    assert.not.ok(verifyImaSignature(v3, 'sha256', digest, keyIndex([k]), 'verity').ok);
  }
});

test('prehashed ECDSA: our verifier agrees with openssl pkeyutl on P-256/P-384 signatures, and refuses altered ones', () => {
  for (const key of ['p256', 'p384']) {
    const sig = pkeySign(key, digest, false);
    const jwk = createPublicKey(readFileSync(f(`${key}.pub`))).export({ format: 'jwk' });
    const c = CURVES[jwk.crv!];
    const [qx, qy] = [jwk.x!, jwk.y!].map((v) => BigInt('0x' + Buffer.from(v, 'base64url').toString('hex')));
    assert.ok(ecdsaVerifyDigest(c, qx, qy, digest, sig));
    assert.ok(ecdsaVerifyDigest(c, qx, qy, digest, sig, { native: false }), 'the BigInt path agrees');
    assert.not.ok(ecdsaVerifyDigest(c, qx, qy, otherDigest, sig));
    assert.not.ok(ecdsaVerifyDigest(c, qx, qy, otherDigest, sig, { native: false }));
    const rs = parseDerSig(sig)!;
    assert.ok(rs);
    // s → n - s is the other valid signature (ECDSA malleability): still valid; r, s out of range are not
    const enc = (r: bigint, s: bigint) => {
      const i = (v: bigint) => { let h = v.toString(16); if (h.length % 2) h = '0' + h; let b = Buffer.from(h, 'hex'); if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]); return Buffer.concat([Buffer.from([2, b.length]), b]); };
      const body = Buffer.concat([i(r), i(s)]);
      return Buffer.concat([Buffer.from(body.length < 128 ? [0x30, body.length] : [0x30, 0x81, body.length]), body]);
    };
    assert.ok(ecdsaVerifyDigest(c, qx, qy, digest, enc(rs[0], c.n - rs[1])));
    assert.not.ok(ecdsaVerifyDigest(c, qx, qy, digest, enc(rs[0], rs[1] + c.n)));
    assert.not.ok(ecdsaVerifyDigest(c, qx, qy, digest, enc(0n, rs[1])));
    assert.not.ok(ecdsaVerifyDigest(c, qx + 1n, qy, digest, sig), 'a point off the curve');
  }
});

test('parseImaSignature: header rules with byte offsets', () => {
  const good = evmSign('p256', 'file');
  const bad = (b: Buffer, re: RegExp) => assert.throws(() => parseImaSignature(b), (e: ImaSigError) => e.code === 'BAD_SIGNATURE' && re.test(e.message));
  bad(good.subarray(0, 5), /shorter than the 9-byte header/);
  bad(Buffer.concat([Buffer.from([4]), good.subarray(1)]), /type 0x04 is not a digital signature \(0x03, 0x05 or 0x06\) \(byte 0\)/);
  bad(Buffer.concat([Buffer.from([3, 1]), good.subarray(2)]), /version 1 is not 2 or 3 \(byte 1\)/);
  bad(good.subarray(0, good.length - 1), /sig_size \d+ but \d+ bytes follow the header \(byte 7\)/);
  bad(Buffer.concat([Buffer.from([6, 2]), good.subarray(2)]), /fs-verity signature \(type 0x06\) must be version 3/);
  assert.throws(() => parseImaSignature(Buffer.alloc(70_000, 3)), (e: ImaSigError) => e.code === 'TOO_LARGE');
  const unk = header(3, 2, 17, 'aabbccdd', Buffer.alloc(8, 1));
  assert.is(parseImaSignature(unk).hashAlgo, 'sm3');
  const r = verifyImaSignature(unk, 'sm3', digest, keys('p256.pub'));
  assert.equal([r.ok, !r.ok && r.code], [false, 'UNSUPPORTED_ALGO']);
});

test('keys: PEM/DER public keys and certificates load; private keys, DSA, Ed25519, short RSA are refused', () => {
  const pubPem = readFileSync(f('p256.pub'));
  const der = createPublicKey(pubPem).export({ type: 'spki', format: 'der' });
  assert.equal(loadVerificationKey(der).keyids, loadVerificationKey(pubPem).keyids);
  const certDer = tool('openssl', ['x509', '-in', f('rsa.crt'), '-outform', 'DER', '-out', f('rsa.der')]) !== undefined && readFileSync(f('rsa.der'));
  assert.is(loadVerificationKey(certDer as Buffer).cert?.subject, 'CN=bootkey test rsa');
  assert.is(tryLoadKey(readFileSync(f('rsa.key'))), undefined, 'a private key is not a verification key');
  assert.is(tryLoadKey(Buffer.from('hello')), undefined);
  tool('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', f('ed.key')]);
  tool('openssl', ['pkey', '-in', f('ed.key'), '-pubout', '-out', f('ed.pub')]);
  assert.throws(() => loadVerificationKey(readFileSync(f('ed.pub')), 'ed'), (e: ImaSigError) => e.code === 'UNSUPPORTED_KEY' && /ed: a ed25519 key/.test(e.message));
  tool('openssl', ['genrsa', '-out', f('short.key'), '1024']);
  tool('openssl', ['rsa', '-in', f('short.key'), '-pubout', '-out', f('short.pub')]);
  assert.throws(() => loadVerificationKey(readFileSync(f('short.pub'))), (e: ImaSigError) => /RSA key of 1024 bits/.test(e.message));
});

function cms(key: string, file: string, extra: string[], md = 'sha256'): Buffer {
  tool('openssl', ['cms', '-sign', '-binary', '-nocerts', '-outform', 'DER', '-md', md, '-signer', f(`${key}.crt`), '-inkey', f(`${key}.key`), '-in', f(file), '-out', f(`${file}.p7s`), ...extra]);
  return readFileSync(f(`${file}.p7s`));
}

test('modsig: openssl cms detached PKCS#7 (no attributes like sign-file, and with) verifies over d-modsig', () => {
  const certs = ['rsa.crt', 'p256.crt'].map((n) => loadVerificationKey(readFileSync(f(n)), n));
  for (const key of ['rsa', 'p256']) {
    for (const attrs of [['-noattr'], []]) {
      const p7 = cms(key, 'file', attrs);
      const r = verifyModsig(p7, 'sha256', digest, certs);
      assert.ok(r.ok, `${key} ${attrs}: ${r.ok ? '' : r.message}`);
      const wrong = verifyModsig(p7, 'sha256', otherDigest, certs);
      assert.equal([wrong.ok, !wrong.ok && wrong.code], [false, 'BAD_SIGNATURE'], `${key} ${attrs}`);
      const noKey = verifyModsig(p7, 'sha256', digest, [loadVerificationKey(readFileSync(f('other.crt')))]);
      assert.not.ok(noKey.ok);
      assert.equal([verifyModsig(p7, 'sha384', digest, certs).ok], [false]);
    }
  }
  // the signer named by issuer+serial, also when only the bare public key is in the policy
  assert.ok(verifyModsig(cms('rsa', 'file', ['-noattr']), 'sha256', digest, [loadVerificationKey(readFileSync(f('rsa.pub')))]).ok);
  const bad = verifyModsig(Buffer.from('3003020100', 'hex'), 'sha256', digest, certs);
  assert.equal([bad.ok, !bad.ok && bad.code], [false, 'MALFORMED_SIGNATURE']);
});

test('modsig, real: Debian\'s llc.ko signature verifies with the .builtin_trusted_keys certificate of the real IMA list', () => {
  const M = ROOT + 'test/data/ima/modsig/';
  const meta = JSON.parse(readFileSync(M + 'llc.ko.json', 'utf8'));
  const p7 = readFileSync(M + 'llc.ko.p7s');
  const list = parseImaList(readFileSync(ROOT + 'test/data/ima/qemu-debian/binary_runtime_measurements'));
  const keyEntry = list.entries[1];
  assert.is(keyEntry.path, '.builtin_trusted_keys');
  const k = loadVerificationKey(keyEntry.buf!);
  const dModsig = Buffer.from(meta.dModsigSha256, 'hex');
  assert.ok(verifyModsig(p7, 'sha256', dModsig, [k]).ok);
  assert.not.ok(verifyModsig(p7, 'sha256', Buffer.from(meta.sha256, 'hex'), [k]).ok, 'd-ng (the whole file) is not what is signed');
  // end to end: the key measured by the real list, listed in keyrings, is learned; a module entry after it passes by its signature alone
  const mod = entry({ index: 11, templateName: 'ima-modsig', path: meta.module, digest: Buffer.from(meta.sha256, 'hex'), sig: Buffer.alloc(0), modsigDigestAlgo: 'sha256', modsigDigest: dModsig, modsig: p7 });
  const keyring = { '.builtin_trusted_keys': [`sha256:${keyEntry.digest!.toString('hex')}`] };
  const r = checkRuntimePolicy(policy({ keyrings: keyring }), unverifiedImaEntries([keyEntry, mod]));
  assert.ok(r.ok, JSON.stringify(r.failures));
  assert.is(r.passed.signature, 1);
  const without = checkRuntimePolicy(policy(), unverifiedImaEntries([keyEntry, mod]));
  assert.equal(without.failures.map((f) => f.code), ['UNLISTED_KEYRING', 'BAD_SIGNATURE']);
});

test('modsig, real ECDSA: Debian 6.12\'s crc7.ko (the module loaded in the real sha384 capture) verifies with that list\'s builtin key', () => {
  const M = ROOT + 'test/data/ima/modsig/';
  const meta = JSON.parse(readFileSync(M + 'crc7.ko.json', 'utf8'));
  const p7 = readFileSync(M + 'crc7.ko.p7s');
  const list = parseImaList(readFileSync(ROOT + 'test/data/ima/qemu-debian-6.12-sha384/ascii_runtime_measurements'));
  const keyEntry = list.entries[1];
  const modEntry = list.entries.find((e) => e.path === '/mods/crc7.ko')!;
  assert.is(modEntry.digest!.toString('hex'), meta.sha384, 'the module is the one the real list measured');
  const k = loadVerificationKey(keyEntry.buf!);
  assert.is(k.type, 'ec');
  const dModsig = Buffer.from(meta.dModsigSha256, 'hex');
  const r = verifyModsig(p7, 'sha256', dModsig, [k]);
  assert.ok(r.ok, r.ok ? '' : r.message);
  const wrong = Buffer.from(dModsig); wrong[0] ^= 1;
  assert.not.ok(verifyModsig(p7, 'sha256', wrong, [k]).ok);
  // as an ima-modsig entry after the real key entry
  const mod = { ...modEntry, index: 20, templateName: 'ima-modsig', sig: Buffer.alloc(0), modsigDigestAlgo: 'sha256', modsigDigest: dModsig, modsig: p7 };
  const pass = checkRuntimePolicy(policy({ keyrings: { '.builtin_trusted_keys': [`sha384:${keyEntry.digest!.toString('hex')}`] } }), unverifiedImaEntries([keyEntry, mod]));
  assert.ok(pass.ok, JSON.stringify(pass.failures));
});

/** A binary ima-sig list (sha1 template hashes) of files with their .sig (if any), and a PCR file of its PCR 10 for evmctl. */
function binaryList(files: string[]): Buffer {
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const lp = (b: Buffer) => Buffer.concat([u32(b.length), b]);
  let pcr = Buffer.alloc(20);
  const parts = files.map((file) => {
    const d = createHash('sha256').update(readFileSync(f(file))).digest();
    let sig = Buffer.alloc(0);
    try { sig = readFileSync(f(`${file}.sig`)); } catch { /* unsigned */ }
    const data = Buffer.concat([lp(Buffer.concat([Buffer.from('sha256:\0'), d])), lp(Buffer.from(`${f(file)}\0`)), lp(sig)]);
    const th = createHash('sha1').update(data).digest();
    pcr = createHash('sha1').update(Buffer.concat([pcr, th])).digest();
    return Buffer.concat([u32(10), th, lp(Buffer.from('ima-sig')), lp(data)]);
  });
  const hex = (b: Buffer) => b.toString('hex').toUpperCase().match(/../g)!.join(' ');
  writeFileSync(f('pcrs-sha1'), Array.from({ length: 24 }, (_, i) => `PCR-${String(i).padStart(2, '0')}: ${hex(i === 10 ? pcr : Buffer.alloc(20))}\n`).join(''));
  return Buffer.concat(parts);
}

test('whole list: evmctl ima_measurement --verify-sig and checkRuntimePolicy agree entry by entry', () => {
  for (const [n, body] of [['l-good', 'good\n'], ['l-unknown', 'unknown key\n'], ['l-moved', 'moved\n'], ['l-unsigned', 'unsigned\n'], ['l-p384', 'p384\n']]) writeFileSync(f(n), body);
  evmSign('p256', 'l-good');
  evmSign('other', 'l-unknown');
  evmSign('p384', 'l-p384');
  writeFileSync(f('l-moved.sig'), readFileSync(f('l-good.sig'))); // a valid signature of another file
  const names = ['l-good', 'l-unknown', 'l-moved', 'l-unsigned', 'l-p384'];
  writeFileSync(f('list.bin'), binaryList(names));
  tool('openssl', ['x509', '-in', f('p256.crt'), '-outform', 'DER', '-out', f('p256.der')]);
  tool('openssl', ['x509', '-in', f('p384.crt'), '-outform', 'DER', '-out', f('p384.der')]);
  const out = tool('evmctl', ['-v', 'ima_measurement', '--verify-sig', '--key', `${f('p256.der')},${f('p384.der')}`, '--pcrs', `sha1,${f('pcrs-sha1')}`, f('list.bin')]);
  const evm = new Map<string, boolean>();
  for (const m of out.matchAll(/^(\S+): verification (is OK|failed)/gm)) evm.set(m[1], m[2] === 'is OK');
  assert.match(out, /sha1 PCR-10: succeed at entry 5/);
  const list = parseImaList(readFileSync(f('list.bin')));
  assert.is(list.entries.length, 5);
  const pol = policy({ verificationKeys: [readFileSync(f('p256.crt'), 'utf8'), readFileSync(f('p384.crt'), 'utf8')] });
  const r = checkRuntimePolicy(pol, unverifiedImaEntries(list.entries));
  const ours = new Map(list.entries.map((e) => [e.path!, !r.failures.some((x) => x.index === e.index)]));
  assert.equal([...evm.keys()].sort(), [f('l-good'), f('l-moved'), f('l-p384'), f('l-unknown')].sort(), out);
  for (const [path, ok] of evm) assert.is(ours.get(path), ok, `${path}: evmctl ${ok ? 'OK' : 'failed'}`);
  assert.equal(r.failures.map((x) => [x.path.slice(dir.length + 1), x.code]), [['l-unknown', 'BAD_SIGNATURE'], ['l-moved', 'BAD_SIGNATURE'], ['l-unsigned', 'UNLISTED_PATH']]);
  assert.match(r.failures[0].message, /no such key in the policy/);
  assert.match(r.failures[1].message, /does not verify/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
